"""The traffic system's one feature definition: what the hour is (time of day, weekday, holiday) and its weather.

Two executors of the same definition, side by side: `features` (pandas, for tables) and `row` (plain Python, for
one request row: the server's fast path); the engine holds them equal on every partition. Holidays are the US
federal calendar (pandas'), computed once: the feed marks a holiday on its first hour only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

CATEGORICAL = ("weather_main",)
NUMERIC = ("hour", "day_of_week", "is_weekend", "is_holiday", "temp_c", "rain_mm", "snow_mm", "clouds")
KELVIN = 273.15


@cache
def holidays() -> frozenset[date]:
    from pandas.tseries.holiday import USFederalHolidayCalendar

    return frozenset(d.date() for d in USFederalHolidayCalendar().holidays("2010-01-01", "2030-12-31"))


def features(rows: pd.DataFrame, context: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per hour, in order: its id and date, and the features."""
    import pandas as pd

    at = pd.to_datetime(rows["date_time"])
    day = at.dt.date
    return pd.DataFrame({
        "reading_id": at.dt.strftime("%Y-%m-%dT%H"),
        "reading_date": day,
        "weather_main": rows["weather_main"].astype("str"),
        "hour": at.dt.hour.astype("float64"),
        "day_of_week": at.dt.weekday.astype("float64"),
        "is_weekend": (at.dt.weekday >= 5).astype("float64"),
        "is_holiday": day.isin(holidays()).astype("float64"),
        "temp_c": rows["temp"].astype("float64") - KELVIN,
        "rain_mm": rows["rain_1h"].astype("float64"),
        "snow_mm": rows["snow_1h"].astype("float64"),
        "clouds": rows["clouds_all"].astype("float64"),
    })


def row(record: Mapping[str, Any], lookups: Mapping[str, Any]) -> dict[str, Any]:
    """`features` for one validated request row (`date_time` a datetime, numbers as Python numbers)."""
    at = record["date_time"]
    day = date(at.year, at.month, at.day)
    weekday = at.weekday()
    return {
        "reading_id": f"{day.isoformat()}T{at.hour:02d}",
        "reading_date": day,
        "weather_main": str(record["weather_main"]),
        "hour": float(at.hour),
        "day_of_week": float(weekday),
        "is_weekend": float(weekday >= 5),
        "is_holiday": float(day in holidays()),
        "temp_c": float(record["temp"]) - KELVIN,
        "rain_mm": float(record["rain_1h"]),
        "snow_mm": float(record["snow_1h"]),
        "clouds": float(record["clouds_all"]),
    }
