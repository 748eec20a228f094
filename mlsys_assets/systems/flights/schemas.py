"""The flights system's validation rules, as pandera schemas. Imported only where validation runs (pandera costs
~1 s): the declaration names them by dotted path.

Element rules are field checks; rules across columns are row-wise dataframe checks whose names say
what must hold, because those names become the quarantine reasons a person reads.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from mlsys_assets.systems.flights.data import known_airports, known_carriers

ORIGIN_AIRPORTS = ("EWR", "JFK", "LGA")
FLIGHT_KEY = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]
WEATHER_KEY = ["origin", "year", "month", "day", "hour"]


def _clock_minutes(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


def _valid_clock(hhmm: pd.Series, allow_2400: bool) -> pd.Series:
    hours, minutes = hhmm // 100, hhmm % 100
    ok = (hhmm >= 0) & (minutes < 60) & ((hours < 24) | (allow_2400 & (hhmm == 2400)))
    return ok | hhmm.isna()


class FlightSchema(pa.DataFrameModel):
    """A scheduled flight and, if it flew, what happened. Times are local clock times HHMM."""

    year: Series[pd.Int64Dtype] = pa.Field(ge=2000, le=2100)
    month: Series[pd.Int64Dtype] = pa.Field(ge=1, le=12)
    day: Series[pd.Int64Dtype] = pa.Field(ge=1, le=31)
    dep_time: Series[float] = pa.Field(nullable=True, ge=1, le=2400)
    sched_dep_time: Series[pd.Int64Dtype] = pa.Field(ge=0, le=2359)
    dep_delay: Series[float] = pa.Field(nullable=True, ge=-180, le=2880)
    arr_time: Series[float] = pa.Field(nullable=True, ge=1, le=2400)
    sched_arr_time: Series[pd.Int64Dtype] = pa.Field(ge=0, le=2359)
    arr_delay: Series[float] = pa.Field(nullable=True, ge=-180, le=2880)
    carrier: Series[str] = pa.Field(isin=sorted(known_carriers()))
    flight: Series[pd.Int64Dtype] = pa.Field(ge=1, le=9999)
    tailnum: Series[str] = pa.Field(nullable=True, str_matches=r"^[A-Z0-9]{2,6}$")
    origin: Series[str] = pa.Field(isin=list(ORIGIN_AIRPORTS))
    dest: Series[str] = pa.Field(isin=sorted(known_airports()))
    air_time: Series[float] = pa.Field(nullable=True, gt=0, le=900)
    distance: Series[pd.Int64Dtype] = pa.Field(gt=0, le=6000)
    hour: Series[pd.Int64Dtype] = pa.Field(ge=0, le=23)
    minute: Series[pd.Int64Dtype] = pa.Field(ge=0, le=59)
    time_hour: Series[pd.Timestamp] = pa.Field(description="The scheduled hour, in UTC.")

    class Config:
        strict = False
        coerce = False

    @pa.dataframe_check(name="times_are_clock_times", element_wise=False)
    @classmethod
    def times_are_clock_times(cls, df: pd.DataFrame) -> pd.Series:
        return (_valid_clock(df["sched_dep_time"], False) & _valid_clock(df["sched_arr_time"], False)
                & _valid_clock(df["dep_time"], True) & _valid_clock(df["arr_time"], True)).fillna(False)

    @pa.dataframe_check(name="cancelled_flights_have_no_times_or_delays")
    @classmethod
    def cancelled_have_no_outcome(cls, df: pd.DataFrame) -> pd.Series:
        cancelled = df["dep_time"].isna()
        outcome = df[["dep_delay", "arr_time", "arr_delay", "air_time"]].notna().any(axis=1)
        return ~(cancelled & outcome) & (df["dep_time"].isna() == df["dep_delay"].isna())

    @pa.dataframe_check(name="arrival_delay_needs_arrival_time")
    @classmethod
    def arrival_delay_needs_arrival(cls, df: pd.DataFrame) -> pd.Series:
        return df["arr_delay"].isna() | df["arr_time"].notna()

    @pa.dataframe_check(name="dep_delay_equals_dep_time_minus_schedule")
    @classmethod
    def delay_matches_times(cls, df: pd.DataFrame) -> pd.Series:
        gap = _clock_minutes(df["dep_time"]) - _clock_minutes(df["sched_dep_time"].astype("float64"))
        return (df["dep_time"].isna() | ((gap - df["dep_delay"]) % 1440 == 0)).fillna(False)

    @pa.dataframe_check(name="hour_and_minute_match_schedule")
    @classmethod
    def hour_minute_match(cls, df: pd.DataFrame) -> pd.Series:
        return ((df["hour"] == df["sched_dep_time"] // 100)
                & (df["minute"] == df["sched_dep_time"] % 100)).fillna(False).astype(bool)


class WeatherSchema(pa.DataFrameModel):
    """An hourly observation at an origin airport (local time; Fahrenheit, mph, inches, millibars, miles)."""

    origin: Series[str] = pa.Field(isin=list(ORIGIN_AIRPORTS))
    year: Series[pd.Int64Dtype] = pa.Field(ge=2000, le=2100)
    month: Series[pd.Int64Dtype] = pa.Field(ge=1, le=12)
    day: Series[pd.Int64Dtype] = pa.Field(ge=1, le=31)
    hour: Series[pd.Int64Dtype] = pa.Field(ge=0, le=23)
    temp: Series[float] = pa.Field(nullable=True, ge=-60, le=130)
    dewp: Series[float] = pa.Field(nullable=True, ge=-80, le=100)
    humid: Series[float] = pa.Field(nullable=True, ge=0, le=100)
    wind_dir: Series[float] = pa.Field(nullable=True, ge=0, le=360)
    wind_speed: Series[float] = pa.Field(nullable=True, ge=0, le=150)
    wind_gust: Series[float] = pa.Field(nullable=True, ge=0, le=200)
    precip: Series[float] = pa.Field(nullable=True, ge=0, le=10)
    pressure: Series[float] = pa.Field(nullable=True, ge=900, le=1100)
    visib: Series[float] = pa.Field(nullable=True, ge=0, le=100)
    time_hour: Series[pd.Timestamp] = pa.Field(description="The observed hour, in UTC.")

    class Config:
        strict = False
        coerce = False

    @pa.dataframe_check(name="dew_point_not_above_temperature")
    @classmethod
    def dew_point_below_temp(cls, df: pd.DataFrame) -> pd.Series:
        return (df["dewp"].isna() | df["temp"].isna() | (df["dewp"] <= df["temp"] + 0.5)).astype(bool)


def local_day(rows: pd.DataFrame) -> pd.Series:
    """The local calendar day of a flight or an observation (its partition): `time_hour` is in UTC."""
    return pd.to_datetime(pd.DataFrame({"year": rows["year"], "month": rows["month"], "day": rows["day"]}),
                          errors="coerce")


# The rules across columns, row by row in plain Python: the server's twins of the checks above (declared as the
# sources' `row_checks`; the engine holds each equal to its check on every partition). Missing values are None.

def _clock_ok(hhmm: float | None, allow_2400: bool) -> bool:
    if hhmm is None or hhmm != hhmm:
        return True
    hours, minutes = hhmm // 100, hhmm % 100
    return hhmm >= 0 and minutes < 60 and (hours < 24 or (allow_2400 and hhmm == 2400))


def _missing(value: object) -> bool:
    return value is None or value != value  # NaN is the only value unequal to itself


def times_are_clock_times_row(row: dict) -> bool:
    return (not _missing(row["sched_dep_time"]) and not _missing(row["sched_arr_time"])
            and _clock_ok(row["sched_dep_time"], False) and _clock_ok(row["sched_arr_time"], False)
            and _clock_ok(row["dep_time"], True) and _clock_ok(row["arr_time"], True))


def cancelled_have_no_outcome_row(row: dict) -> bool:
    cancelled = _missing(row["dep_time"])
    outcome = any(not _missing(row[c]) for c in ("dep_delay", "arr_time", "arr_delay", "air_time"))
    return not (cancelled and outcome) and cancelled == _missing(row["dep_delay"])


def arrival_delay_needs_arrival_row(row: dict) -> bool:
    return _missing(row["arr_delay"]) or not _missing(row["arr_time"])


def delay_matches_times_row(row: dict) -> bool:
    if _missing(row["dep_time"]):
        return True
    if _missing(row["dep_delay"]) or _missing(row["sched_dep_time"]):
        return False
    gap = (row["dep_time"] // 100) * 60 + row["dep_time"] % 100 - ((row["sched_dep_time"] // 100) * 60
                                                                   + row["sched_dep_time"] % 100)
    return (gap - row["dep_delay"]) % 1440 == 0


def hour_minute_match_row(row: dict) -> bool:
    if _missing(row["hour"]) or _missing(row["minute"]) or _missing(row["sched_dep_time"]):
        return False
    return row["hour"] == row["sched_dep_time"] // 100 and row["minute"] == row["sched_dep_time"] % 100


def dew_point_below_temp_row(row: dict) -> bool:
    return _missing(row["dewp"]) or _missing(row["temp"]) or row["dewp"] <= row["temp"] + 0.5
