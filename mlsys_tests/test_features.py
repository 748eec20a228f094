"""One feature definition: the same raw row yields the same features whichever path computes them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys_assets.core import featurize
from mlsys_assets.core.landing import read_landing_file
from mlsys_assets.core.sources import columns_of, file_for
from mlsys_assets.systems.flights.features import FEATURE_COLUMNS, LABEL, REQUEST_COLUMNS, build_features
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, query, run_day

FLIGHTS = FLIGHTS_SYSTEM.source("flights")
WEATHER = FLIGHTS_SYSTEM.source("weather")


def features_of(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    """The features table's rows as the pipeline computes them: keys, features and the label."""
    return featurize.build_features(FLIGHTS_SYSTEM, flights, {"weather": weather})


def feature_matrix(features: pd.DataFrame) -> pd.DataFrame:
    return featurize.feature_matrix(FLIGHTS_SYSTEM, features)


@pytest.fixture
def day_rows(landed_days: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    flights = read_landing_file(file_for(landed_days, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0]), FLIGHTS).frame
    weather = read_landing_file(file_for(landed_days, FLIGHTS_SYSTEM, WEATHER, DAYS[0]), WEATHER).frame
    return flights, weather


def test_features_use_nothing_known_after_departure(day_rows) -> None:
    flights, weather = day_rows
    scrambled = flights.copy()
    rng = np.random.default_rng(0)
    for column in FLIGHTS_SYSTEM.prediction.outcome_columns:
        scrambled[column] = rng.permutation(scrambled[column].to_numpy())
    scrambled["tailnum"] = "N00000"
    pd.testing.assert_frame_equal(features_of(flights, weather)[list(FEATURE_COLUMNS)],
                                  features_of(scrambled, weather)[list(FEATURE_COLUMNS)])


def test_label_marks_late_cancelled_and_diverted_flights(day_rows) -> None:
    flights, weather = day_rows
    features = features_of(flights, weather)
    late = (flights["arr_delay"] > 15) | flights["arr_delay"].isna()
    assert features[LABEL].tolist() == late.astype(int).tolist()
    assert 0.05 < features[LABEL].mean() < 0.6
    request = flights[list(REQUEST_COLUMNS)]
    assert features_of(request, weather)[LABEL].isna().all()


def test_weather_is_the_origins_at_the_scheduled_hour(day_rows) -> None:
    flights, weather = day_rows
    features = features_of(flights, weather)
    row = flights.iloc[100]
    observed = weather[(weather["origin"] == row["origin"]) & (weather["hour"] == row["sched_dep_time"] // 100)]
    assert features.loc[100, "temp"] == observed["temp"].iloc[0]
    assert features["weather_missing"].mean() < 0.05
    no_weather = features_of(flights.head(3), weather.iloc[0:0])
    assert no_weather["weather_missing"].tolist() == [1.0, 1.0, 1.0]


def test_one_raw_row_gives_identical_features_in_the_table_and_alone(defs, instance, mlsys_home: Path,
                                                                    day_rows) -> None:
    assert run_day(defs, instance, DAYS[0]).success
    flights, weather = day_rows
    for position in (0, 250, len(flights) - 1):
        request = flights.iloc[[position]][list(REQUEST_COLUMNS)]  # as a client would send it: no outcomes
        alone = feature_matrix(features_of(request, weather))
        flight_id = features_of(request, weather)["flight_id"].iloc[0]
        columns = ", ".join(f'"{c}"' for c in FEATURE_COLUMNS)
        stored = pd.DataFrame(query(mlsys_home, f"SELECT {columns} FROM features WHERE flight_id = ?",
                                    [flight_id]), columns=list(FEATURE_COLUMNS))
        assert len(stored) == 1
        pd.testing.assert_frame_equal(feature_matrix(stored), alone)


# Real days with what the row-wise executor must get right: New Year's Day (a weather hour missing), the spring
# DST change (no 02:00 observation), the autumn one (repeated observation keys: the first one wins), and the last
# day of the year, which has no weather at all.
ROW_DAYS = ("2013-01-01", "2013-03-10", "2013-11-03", "2013-12-31")


@pytest.fixture(scope="module")
def shipped_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROW_DAYS of the shipped data, read through landing files as the pipeline reads them."""
    from mlsys_assets.systems.flights.data import read_default_source

    folder = tmp_path_factory.mktemp("shipped")
    frames = []
    for source in (FLIGHTS, WEATHER):
        table = read_default_source(source.name)
        day = table["year"] + "-" + table["month"].str.zfill(2) + "-" + table["day"].str.zfill(2)
        path = folder / f"{source.name}.csv"
        table[day.isin(ROW_DAYS)].to_csv(path, index=False, columns=list(columns_of(source).names),
                                         lineterminator="\n")
        frames.append(read_landing_file(path, source).frame)
    return frames[0], frames[1]


def _edge_rows(flights: pd.DataFrame) -> pd.DataFrame:
    """Real rows moved to clock times at every band edge and midnight, to 01:xx of the autumn DST day (where each
    origin has two observations), and to dates without weather (a leap day, the 366th day of a year, a Saturday
    and a Sunday)."""
    base = flights[list(REQUEST_COLUMNS)].head(1)
    rows = []
    for dep, arr in ((0, 0), (1, 2359), (59, 100), (559, 600), (600, 559), (1159, 1200), (1200, 1159), (1659, 1700),
                     (1700, 1659), (2359, 1), (2359, 0), (1230, 1230)):
        rows.append(base.assign(sched_dep_time=dep, sched_arr_time=arr))
    for origin in ("EWR", "JFK", "LGA"):
        rows.append(base.assign(year=2013, month=11, day=3, sched_dep_time=130, origin=origin))
    for year, month, day in ((2012, 2, 29), (2016, 12, 31), (2013, 6, 1), (2013, 6, 2), (2100, 12, 31)):
        rows.append(base.assign(year=year, month=month, day=day))
    return pd.concat(rows, ignore_index=True).astype(flights[list(REQUEST_COLUMNS)].dtypes.to_dict())


def test_row_features_equal_build_features_on_every_flight(shipped_days, tmp_path: Path) -> None:
    """The two executors of the feature definition: the same keys and features for every flight of ROW_DAYS and
    for clock-time and calendar edge cases, value for value (NaN where the other has NaN), with the weather looked
    up in the published files as the server does."""
    from mlsys_assets.core.online import lookup_path, publish_lookup
    from mlsys_assets.core.server.lookups import LookupStore
    from mlsys_assets.core.sources import columns_of
    from mlsys_assets.systems.flights.declaration import flights as system
    from mlsys_assets.systems.flights.features import KEY_COLUMNS, WEATHER_FEATURES, row

    flights, weather = shipped_days
    flights = flights[flights["parse_errors"].isna()]
    flights = pd.concat([flights[list(REQUEST_COLUMNS)], _edge_rows(flights)], ignore_index=True)
    for day in ROW_DAYS:
        observed = weather[(weather["year"] == int(day[:4])) & (weather["month"] == int(day[5:7]))
                           & (weather["day"] == int(day[8:]))]
        if len(observed):
            publish_lookup(lookup_path(system.name, "weather", day, tmp_path), observed,
                           columns_of(system.source("weather")).names)
    store = LookupStore(system, tmp_path)  # as the server reads the published files
    assert store.refresh() == len(list((tmp_path / system.name / "weather").glob("*.parquet"))) > 1

    expected = build_features(flights, weather)
    columns = [*KEY_COLUMNS, *FEATURE_COLUMNS]
    # Validated request rows, as the server holds them: Python ints and strings.
    requests = [{c: (v if isinstance(v, str) else int(v)) for c, v in zip(REQUEST_COLUMNS, values, strict=True)}
                for values in flights[list(REQUEST_COLUMNS)].itertuples(index=False)]
    got = [row(r, {"weather": store.index("weather")}) for r in requests]

    assert len(got) == len(expected) > 3000
    for column in columns:
        want = expected[column].tolist()
        have = [row[column] for row in got]
        mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(have, want, strict=True))
                      if not (a == b or (a != a and b != b)) or type(a) is not type(b)]
        assert not mismatches, (column, mismatches[:5])
    assert all(list(row) == columns for row in got)
    # What the comparison covered: missing weather (whole days and single hours), partly missing observations,
    # repeated observation keys, every hour band, and arrivals past midnight.
    missing = expected["weather_missing"] == 1.0
    new_year = expected["flight_date"] == date(2013, 12, 31)  # a DATE, as the warehouse stores it
    assert missing.sum() > len(expected[new_year]) > 0
    assert (~new_year & missing).any()
    assert (expected[list(WEATHER_FEATURES)].isna().any(axis=1) & ~missing).any()
    repeated = weather[weather.duplicated(["origin", "year", "month", "day", "hour"], keep=False)]
    assert ((flights["month"] == 11) & (flights["day"] == 3) & (flights["sched_dep_time"] // 100).isin(
        repeated["hour"])).sum() == 3
    assert set(expected["dep_hour_band"]) == {"night", "morning", "afternoon", "evening"}
    assert (expected["sched_arr_minute"] < expected["sched_dep_minute"]).any()


def test_the_engine_checks_the_declared_row_path_against_the_table_one(shipped_days) -> None:
    """`core.featurize.row_parity`, run by the features asset on every partition: the flights row path agrees on
    real rows (with the weather as the lookup source's rows); a row path that is wrong in one column is caught,
    naming the column."""
    import dataclasses

    from mlsys_assets.core.featurize import build_features, row_parity
    from mlsys_assets.systems.flights.features import row

    flights, weather = shipped_days
    flights = flights[flights["parse_errors"].isna()].reset_index(drop=True)
    context = {"weather": weather}
    table = build_features(FLIGHTS_SYSTEM, flights, context)
    compared, problems = row_parity(FLIGHTS_SYSTEM, flights, table, context)
    assert compared == 200 and problems == []

    def off_by_one(record, lookups):
        return {**row(record, lookups), "distance": float(record["distance"]) + 1}

    broken = dataclasses.replace(FLIGHTS_SYSTEM, features=dataclasses.replace(FLIGHTS_SYSTEM.features, row=off_by_one))
    compared, problems = row_parity(broken, flights, table, context)
    assert compared == 200 and len(problems) == 10 and all("'distance'" in p for p in problems)


def test_the_engine_checks_the_declared_row_checks_against_the_schema_rules(shipped_days) -> None:
    """`core.validation.row_check_parity`, run by the validated asset of every partition: the flights and weather
    twins of the rules across columns agree with the pandera rules on real rows and on rows made to break each
    rule; a twin that is wrong is caught, naming the rule and the row."""
    import dataclasses

    from mlsys_assets.core.validation import row_check_parity

    flights, weather = shipped_days
    broken = flights[flights["parse_errors"].isna()].head(6).copy().reset_index(drop=True)
    broken.loc[0, "sched_dep_time"] = 1275  # times_are_clock_times
    broken.loc[1, ["dep_time", "dep_delay"]] = [None, 5.0]  # cancelled_flights_have_no_times_or_delays
    broken.loc[2, ["arr_time", "arr_delay"]] = [None, 12.0]  # arrival_delay_needs_arrival_time
    broken.loc[3, "dep_delay"] = broken.loc[3, "dep_delay"] + 7  # dep_delay_equals_dep_time_minus_schedule
    broken.loc[4, "hour"] = (broken.loc[4, "hour"] + 1) % 24  # hour_and_minute_match_schedule
    rows = pd.concat([flights, broken], ignore_index=True)
    compared, problems = row_check_parity(rows, FLIGHTS)
    assert compared >= 300 and problems == []

    hot = weather[weather["parse_errors"].isna()].head(2).copy()
    hot["dewp"] = hot["temp"] + 10  # dew_point_not_above_temperature
    assert row_check_parity(pd.concat([weather, hot], ignore_index=True), WEATHER)[1] == []

    lenient = dataclasses.replace(WEATHER, row_checks={"dew_point_not_above_temperature": lambda row: True})
    compared, problems = row_check_parity(pd.concat([weather, hot], ignore_index=True), lenient)
    assert len(problems) == 2 and all(p.startswith("dew_point_not_above_temperature, row ") and
                                      "twin True, rule False" in p for p in problems)
