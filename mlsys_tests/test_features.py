"""One feature definition: the same raw row yields the same features whichever path computes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys_assets.core.features import FEATURE_COLUMNS, LABEL, REQUEST_COLUMNS, build_features, feature_matrix
from mlsys_assets.core.landing import read_landing_file
from mlsys_assets.core.sources import FLIGHT_OUTCOME_COLUMNS, FLIGHTS, WEATHER
from mlsys_tests.conftest import DAYS, query, run_day


@pytest.fixture
def day_rows(landed_days: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    flights = read_landing_file(FLIGHTS.file_for(landed_days, DAYS[0]), FLIGHTS).frame
    weather = read_landing_file(WEATHER.file_for(landed_days, DAYS[0]), WEATHER).frame
    return flights, weather


def test_features_use_nothing_known_after_departure(day_rows) -> None:
    flights, weather = day_rows
    scrambled = flights.copy()
    rng = np.random.default_rng(0)
    for column in FLIGHT_OUTCOME_COLUMNS:
        scrambled[column] = rng.permutation(scrambled[column].to_numpy())
    scrambled["tailnum"] = "N00000"
    pd.testing.assert_frame_equal(build_features(flights, weather)[list(FEATURE_COLUMNS)],
                                  build_features(scrambled, weather)[list(FEATURE_COLUMNS)])


def test_label_marks_late_cancelled_and_diverted_flights(day_rows) -> None:
    flights, weather = day_rows
    features = build_features(flights, weather)
    late = (flights["arr_delay"] > 15) | flights["arr_delay"].isna()
    assert features[LABEL].tolist() == late.astype(int).tolist()
    assert 0.05 < features[LABEL].mean() < 0.6
    request = flights[list(REQUEST_COLUMNS)]
    assert build_features(request, weather)[LABEL].isna().all()


def test_weather_is_the_origins_at_the_scheduled_hour(day_rows) -> None:
    flights, weather = day_rows
    features = build_features(flights, weather)
    row = flights.iloc[100]
    observed = weather[(weather["origin"] == row["origin"]) & (weather["hour"] == row["sched_dep_time"] // 100)]
    assert features.loc[100, "temp"] == observed["temp"].iloc[0]
    assert features["weather_missing"].mean() < 0.05
    no_weather = build_features(flights.head(3), weather.iloc[0:0])
    assert no_weather["weather_missing"].tolist() == [1.0, 1.0, 1.0]


def test_one_raw_row_gives_identical_features_in_the_table_and_alone(defs, instance, mlsys_home: Path,
                                                                    day_rows) -> None:
    assert run_day(defs, instance, DAYS[0]).success
    flights, weather = day_rows
    for position in (0, 250, len(flights) - 1):
        request = flights.iloc[[position]][list(REQUEST_COLUMNS)]  # as a client would send it: no outcomes
        alone = feature_matrix(build_features(request, weather))
        flight_id = build_features(request, weather)["flight_id"].iloc[0]
        columns = ", ".join(f'"{c}"' for c in FEATURE_COLUMNS)
        stored = pd.DataFrame(query(mlsys_home, f"SELECT {columns} FROM flight_features WHERE flight_id = ?",
                                    [flight_id]), columns=list(FEATURE_COLUMNS))
        assert len(stored) == 1
        pd.testing.assert_frame_equal(feature_matrix(stored), alone)
