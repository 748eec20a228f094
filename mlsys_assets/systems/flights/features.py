"""The flights system's one feature definition, shared by training, batch scoring and online serving.

The features read only what is known before departure: the schedule, the route and the weather
observed at the origin at the start of the scheduled hour. Outcome columns (actual times, delays) are
used for the label alone, and only when present, so a serving request without them yields the same
features as the batch row it mirrors.

The definition has two executors, kept side by side here and sharing their constants and formulas
(`HOUR_BANDS`, `minute_of_day`, `block_minutes`, `WEATHER_KEY`):
- `features` (`build_features`), with pandas, for tables: training, batch scoring and large server requests;
- `row` (`row_features`), with plain Python, for one validated request row: the server's fast path for small
  requests, where pandas' per-call overhead would cost more than the whole computation.
The engine checks them equal on rows of every partition (the features asset's `row_path_equals_table_path`
check), and mlsys_tests/test_features.py on every flight of several real days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where it is used: the code location reads the column lists below
    import pandas as pd

DELAY_THRESHOLD_MINUTES = 15

CATEGORICAL_FEATURES: tuple[str, ...] = ("carrier", "origin", "dest", "dep_hour_band")
WEATHER_FEATURES: tuple[str, ...] = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip",
                                     "pressure", "visib")
NUMERIC_FEATURES: tuple[str, ...] = (
    "month", "day_of_week", "day_of_year", "is_weekend", "sched_dep_minute", "sched_arr_minute",
    "scheduled_block_minutes", "distance", *WEATHER_FEATURES, "weather_missing",
)
FEATURE_COLUMNS: tuple[str, ...] = CATEGORICAL_FEATURES + NUMERIC_FEATURES
KEY_COLUMNS: tuple[str, ...] = ("flight_id", "flight_date")
LABEL = "is_delayed"

# What a request must carry: the schedule of a flight, as in a landing file, without outcomes.
REQUEST_COLUMNS: tuple[str, ...] = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier",
                                    "flight", "origin", "dest", "distance")
WEATHER_KEY: tuple[str, ...] = ("origin", "year", "month", "day", "hour")

HOUR_BANDS = ((0, "night"), (6, "morning"), (12, "afternoon"), (17, "evening"))


def hour_band(hour: pd.Series) -> pd.Series:
    """night [0, 6), morning [6, 12), afternoon [12, 17), evening [17, 24)."""
    import pandas as pd

    edges = [start for start, _ in HOUR_BANDS] + [24]
    labels = [name for _, name in HOUR_BANDS]
    return pd.cut(hour, bins=edges, right=False, labels=labels).astype("str")


def hour_band_of(hour: int) -> str:
    """`hour_band` for one hour (0-23; validated schedules have no other)."""
    if not 0 <= hour < 24:
        raise ValueError(f"hour {hour} is not in 0-23")
    return next(name for start, name in reversed(HOUR_BANDS) if hour >= start)


def flight_ids(flights: pd.DataFrame) -> pd.Series:
    """A readable key, unique per scheduled flight: `2013-01-01-UA1545-EWR-0515`."""
    return (_dates(flights).dt.strftime("%Y-%m-%d") + "-" + flights["carrier"].astype(str)
            + flights["flight"].astype("int64").astype(str) + "-" + flights["origin"].astype(str) + "-"
            + flights["sched_dep_time"].astype("int64").map("{:04d}".format))


def _dates(flights: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(pd.DataFrame({"year": flights["year"].astype("int64"),
                                        "month": flights["month"].astype("int64"),
                                        "day": flights["day"].astype("int64")}))


def minute_of_day(hhmm: Any) -> Any:
    """Minutes since midnight of an HHMM clock time, as float64: a Series gives a Series, a number a float."""
    hhmm = hhmm.astype("float64") if hasattr(hhmm, "astype") else float(hhmm)
    return (hhmm // 100) * 60 + hhmm % 100


def block_minutes(dep_minute: Any, arr_minute: Any) -> Any:
    """Scheduled minutes from departure to arrival (an arrival past midnight wraps), Series or float alike."""
    return (arr_minute - dep_minute) % 1440


def label(flights: pd.DataFrame) -> pd.Series:
    """1 if the flight arrived more than 15 minutes late, was cancelled or diverted; missing without outcomes."""
    import pandas as pd

    if "arr_delay" not in flights or "dep_time" not in flights:
        return pd.Series(pd.NA, index=flights.index, dtype="Int64")
    arrived = flights["arr_delay"].notna()
    late = flights["arr_delay"] > DELAY_THRESHOLD_MINUTES
    return (late | ~arrived).astype("Int64")


def features(flights: pd.DataFrame, context: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The declared feature definition: `build_features` with the validated weather as context."""
    return build_features(flights, context["weather"])


def row(record: Mapping[str, Any], lookups: Mapping[str, Mapping[tuple, Mapping[str, Any]]]) -> dict[str, Any]:
    """The declared row-wise definition: `row_features`, the weather looked up by the flight's `WEATHER_KEY` among
    the lookup source's rows (`lookups["weather"]`: key -> the observation as a mapping)."""
    key = weather_key(record)
    observed = lookups["weather"].get(key)
    found = {} if observed is None else {key: tuple(observed.get(column) for column in WEATHER_FEATURES)}
    return row_features(record, found)


def build_features(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    """Feature rows for flights: keys and features in `FEATURE_COLUMNS` order (the engine adds the label).

    `flights` needs `REQUEST_COLUMNS` (and `hour`, derived from the schedule when absent); `weather`
    holds validated hourly observations, of which the one at the origin and scheduled hour is used.
    """
    import pandas as pd

    flights = flights.reset_index(drop=True)
    dates = _dates(flights)
    hour = (flights["sched_dep_time"].astype("int64") // 100)
    dep_minute = minute_of_day(flights["sched_dep_time"])
    arr_minute = minute_of_day(flights["sched_arr_time"])
    out = pd.DataFrame({
        "flight_id": flight_ids(flights),
        "flight_date": dates.dt.date,
        "carrier": flights["carrier"].astype("str"),
        "origin": flights["origin"].astype("str"),
        "dest": flights["dest"].astype("str"),
        "dep_hour_band": hour_band(hour),
        "month": dates.dt.month.astype("int64"),
        "day_of_week": dates.dt.day_of_week.astype("int64"),
        "day_of_year": dates.dt.day_of_year.astype("int64"),
        "is_weekend": (dates.dt.day_of_week >= 5).astype("int64"),
        "sched_dep_minute": dep_minute,
        "sched_arr_minute": arr_minute,
        "scheduled_block_minutes": block_minutes(dep_minute, arr_minute),
        "distance": flights["distance"].astype("float64"),
    })
    keys = pd.DataFrame({"origin": out["origin"], "year": dates.dt.year.astype("int64"),
                         "month": dates.dt.month.astype("int64"), "day": dates.dt.day.astype("int64"),
                         "hour": hour.astype("int64")})
    observed = weather.loc[:, [*WEATHER_KEY, *WEATHER_FEATURES]].copy()
    for column in WEATHER_KEY[1:]:
        observed[column] = observed[column].astype("int64")
    observed["origin"] = observed["origin"].astype("str")
    observed = observed.drop_duplicates(subset=list(WEATHER_KEY), keep="first")
    joined = keys.merge(observed, on=list(WEATHER_KEY), how="left", validate="many_to_one")
    for column in WEATHER_FEATURES:
        out[column] = joined[column].astype("float64").to_numpy()
    out["weather_missing"] = joined[list(WEATHER_FEATURES)].isna().all(axis=1).astype("float64").to_numpy()
    return out[[*KEY_COLUMNS, *FEATURE_COLUMNS]]


def weather_key(row: Mapping[str, Any]) -> tuple[str, int, int, int, int]:
    """The `WEATHER_KEY` of a request row: its origin, date and scheduled hour, as `build_features` joins on."""
    return row["origin"], row["year"], row["month"], row["day"], row["sched_dep_time"] // 100


def row_features(row: Mapping[str, Any], weather: Mapping[tuple, Sequence[float | None]]) -> dict[str, Any]:
    """`build_features` for one validated request row, in plain Python: keys and `FEATURE_COLUMNS`.

    `row` holds `REQUEST_COLUMNS` as Python ints and strings (as the server validates them); `weather` maps
    a `WEATHER_KEY` to the observation's `WEATHER_FEATURES` (None or NaN when missing), holding only the
    first observation of a key, as `build_features` keeps. Values are the ones `build_features` gives:
    strings for the categorical features, a date, integers for the calendar and floats (NaN when missing) for the
    other numeric ones.
    """
    day = date(row["year"], row["month"], row["day"])
    sched_dep_time = row["sched_dep_time"]
    dep_minute = minute_of_day(sched_dep_time)
    arr_minute = minute_of_day(row["sched_arr_time"])
    weekday = day.weekday()
    flight_date = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
    features: dict[str, Any] = {
        "flight_id": f"{flight_date}-{row['carrier']}{int(row['flight'])}-{row['origin']}-{int(sched_dep_time):04d}",
        "flight_date": day,
        "carrier": str(row["carrier"]),
        "origin": str(row["origin"]),
        "dest": str(row["dest"]),
        "dep_hour_band": hour_band_of(int(sched_dep_time) // 100),
        "month": day.month,
        "day_of_week": weekday,
        "day_of_year": day.timetuple().tm_yday,
        "is_weekend": int(weekday >= 5),
        "sched_dep_minute": dep_minute,
        "sched_arr_minute": arr_minute,
        "scheduled_block_minutes": block_minutes(dep_minute, arr_minute),
        "distance": float(row["distance"]),
    }
    observed = weather.get(weather_key(row))
    nan = float("nan")
    values = [nan] * len(WEATHER_FEATURES) if observed is None else [nan if v is None else float(v) for v in observed]
    features.update(zip(WEATHER_FEATURES, values, strict=True))
    features["weather_missing"] = float(all(v != v for v in values))  # NaN is the only value unequal to itself
    return features



