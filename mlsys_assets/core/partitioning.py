"""Partition keys of the three grains, as Dagster writes them, without Dagster.

- hourly: `2013-01-01-05:00` (the hour's start), daily: `2013-01-01`, weekly: `2013-01-07` (the Monday it starts).
`mlsys_assets.partitions` builds Dagster's partitions definitions with the same keys; a test holds them equal.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {"hourly": "%Y-%m-%d-%H:%M", "daily": "%Y-%m-%d", "weekly": "%Y-%m-%d"}
STEPS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}


def key_start(grain: str, key: str) -> datetime:
    """When the partition starts."""
    return datetime.strptime(key, FORMATS[grain])


def key_of(grain: str, moment: datetime) -> str:
    """The key of the partition holding a moment."""
    if grain == "hourly":
        moment = moment.replace(minute=0, second=0, microsecond=0)
    else:
        moment = datetime(moment.year, moment.month, moment.day)
        if grain == "weekly":
            moment -= timedelta(days=moment.weekday())
    return moment.strftime(FORMATS[grain])


def keys_of(grain: str, moments: pd.Series) -> pd.Series:
    """`key_of` for a column of timestamps (NaT gives None)."""
    floored = moments.dt.floor("h") if grain == "hourly" else moments.dt.normalize()
    if grain == "weekly":
        floored = floored - floored.dt.weekday.astype("timedelta64[D]") if len(floored) else floored
    return floored.dt.strftime(FORMATS[grain]).where(floored.notna(), None)


def is_key(grain: str, key: str) -> bool:
    try:
        return key_of(grain, key_start(grain, key)) == key
    except ValueError:
        return False


def first_key(grain: str, start: str) -> str:
    """The first partition on or after the start date (a week starts on a Monday)."""
    moment = datetime.fromisoformat(start)
    if grain == "weekly" and moment.weekday():
        moment += timedelta(days=7 - moment.weekday())
    return key_of(grain, moment)


def last_key(grain: str, end: str) -> str:
    """The last partition that starts on the end date or before it."""
    moment = datetime.fromisoformat(end)
    if grain == "hourly":
        moment += timedelta(hours=23)
    return key_of(grain, moment)


def keys_between(grain: str, start: str, end: str) -> list[str]:
    """Every key whose partition starts within the dates `start`..`end` (inclusive)."""
    if date.fromisoformat(end[:10]) < date.fromisoformat(start[:10]):
        raise ValueError(f"end {end} is before start {start}")
    moment, last = key_start(grain, first_key(grain, start)), key_start(grain, last_key(grain, end))
    keys = []
    while moment <= last:
        keys.append(moment.strftime(FORMATS[grain]))
        moment += STEPS[grain]
    return keys


def key_in_range(grain: str, key: str, start: str, end: str) -> bool:
    return key_start(grain, first_key(grain, start)) <= key_start(grain, key) <= key_start(grain, last_key(grain, end))


def shift(grain: str, key: str, partitions: int) -> str:
    """The key `partitions` partitions later (earlier when negative)."""
    return (key_start(grain, key) + partitions * STEPS[grain]).strftime(FORMATS[grain])
