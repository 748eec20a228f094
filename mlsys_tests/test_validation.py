"""Validation rules on real rows: valid rows pass, broken rows are quarantined with readable reasons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlsys_assets.core.landing import read_landing_file
from mlsys_assets.core.sources import file_for
from mlsys_assets.core.validation import validate_rows
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM

FLIGHTS = FLIGHTS_SYSTEM.source("flights")
WEATHER = FLIGHTS_SYSTEM.source("weather")


@pytest.fixture
def flights(landed_days: Path) -> pd.DataFrame:
    return read_landing_file(file_for(landed_days, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0]), FLIGHTS).frame


def test_a_real_day_passes_whole(flights: pd.DataFrame) -> None:
    result = validate_rows(flights, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0])
    assert len(result.valid) == len(flights)
    assert result.quarantined.empty


def test_real_bad_weather_reading_is_quarantined(landed_days: Path) -> None:
    weather = read_landing_file(file_for(landed_days, FLIGHTS_SYSTEM, WEATHER, DAYS[1]), WEATHER).frame
    result = validate_rows(weather, FLIGHTS_SYSTEM, WEATHER, DAYS[1])
    assert len(result.quarantined) == 1
    row = result.quarantined.iloc[0]
    assert row["wind_speed"] > 1000
    assert row["failed_columns"] == "wind_speed"
    assert "wind_speed failed less_than_or_equal_to(150)" in row["reason"]


BREAKS = {
    "unknown carrier": ({"carrier": "ZZ"}, "isin(allowed values)", "carrier"),
    "unknown destination": ({"dest": "XXX"}, "isin(allowed values)", "dest"),
    "not a clock time": ({"sched_arr_time": 1375}, "times_are_clock_times", "sched_arr_time"),
    "cancelled with a delay": ({"dep_time": None, "dep_delay": None, "arr_delay": 12.0},
                               "cancelled_flights_have_no_times_or_delays", "arr_delay"),
    "delay contradicts times": ({"dep_delay": 7.0}, "dep_delay_equals_dep_time_minus_schedule", "dep_delay"),
    "negative distance": ({"distance": -5}, "greater_than(0)", "distance"),
    # the partition check names what placed the row: the declared partition_by (the flights' local_day function)
    "another day": ({"day": 12}, f"belongs_to_partition({DAYS[0]})", FLIGHTS.partition_by.path),
    "null origin": ({"origin": None}, "not_nullable", "origin"),
}


@pytest.mark.parametrize("case", list(BREAKS), ids=list(BREAKS))
def test_broken_row_is_quarantined_with_its_reason(flights: pd.DataFrame, case: str) -> None:
    changes, check, column = BREAKS[case]
    broken = flights.copy()
    flown = broken.index[broken["dep_time"].notna()][3]
    for name, value in changes.items():
        broken[name] = broken[name].astype(object) if value is None else broken[name]
        broken.loc[flown, name] = value
    broken = broken.astype({c: flights[c].dtype for c in flights.columns})
    result = validate_rows(broken, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0])
    assert len(result.valid) + len(result.quarantined) == len(flights)
    assert len(result.quarantined) == 1, result.quarantined["reason"].tolist()
    row = result.quarantined.iloc[0]
    assert row["source_row"] == flights.loc[flown, "source_row"]
    assert check in row["failed_checks"].split("; ")
    assert column in row["failed_columns"]
    assert row["reason"]


def test_duplicates_keep_the_first_and_quarantine_the_rest(flights: pd.DataFrame) -> None:
    doubled = pd.concat([flights, flights.iloc[[5, 5]]], ignore_index=True)
    result = validate_rows(doubled, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0])
    assert len(result.valid) == len(flights)
    assert len(result.quarantined) == 2
    assert set(result.quarantined["failed_checks"]) == {"unique_key"}
    assert "carrier=" in result.quarantined["reason"].iloc[0]


def test_unparsed_values_are_quarantined_with_the_parse_problem(flights: pd.DataFrame) -> None:
    broken = flights.copy()
    broken.loc[0, "parse_errors"] = "dep_delay='soon': not a number"
    broken.loc[0, "dep_delay"] = None
    result = validate_rows(broken, FLIGHTS_SYSTEM, FLIGHTS, DAYS[0])
    assert result.quarantined["reason"].tolist()[0].startswith("dep_delay='soon': not a number")
    counts = result.reason_counts()
    assert counts.loc[counts["check"] == "parseable", "rows"].sum() == 1
