"""The traffic system's default data: the UCI "Metro Interstate Traffic Volume" file (CC BY 4.0), shipped gzipped in
this folder (405 KB), byte for byte as the repository publishes it: 48,204 hourly rows of westbound I-94 traffic
counted by MnDOT's station 301 between Minneapolis and St Paul, 2012-10-02 to 2018-09-30, with the hour's weather.

It is real, and real data is untidy: an hour with two weather conditions is delivered twice (16% of rows), ten
hours in 2014 have a temperature of 0 K, one July hour has 9,831 mm of rain, and the counts stop for 307 days
between August 2014 and June 2015. The feed replays it as it is; the schema decides what passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FILE = Path(__file__).parent / "data" / "metro_interstate_traffic_volume.csv.gz"


@cache
def shipped() -> pd.DataFrame:
    """The whole file, every value as text (as a landing file carries it)."""
    import pandas as pd

    return pd.read_csv(FILE, keep_default_na=False, dtype=str)


def default_partitions(sources: Sequence[str], days: Sequence[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """source -> day -> rows, for the days asked (a day without rows gets an empty frame with the header)."""
    table = shipped()
    groups = dict(tuple(table.groupby(table["date_time"].str[:10], sort=False)))
    empty = table.iloc[0:0]
    return {name: {day: groups.get(day, empty) for day in days} for name in sources}
