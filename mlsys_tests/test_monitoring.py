"""Monitoring: plain functions on hand-made data whose answer is known, then real Dagster materializations of the
monitoring assets against a temporary MLSYS_HOME (late labels, challenger rows, drift checks, the report)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey

from mlsys_assets.core.drift import build_reference
from mlsys_assets.core.monitoring import (
    CostPolicy,
    DriftPolicy,
    StoredReference,
    build_stored_reference,
    confusion_counts,
    expected_cost,
    feature_drift_table,
    label_day,
    live_performance_table,
    load_reference,
    mark_current,
    performance_verdict,
    save_reference,
    window_days,
)
from mlsys_assets.core.report import ReportData, render_report
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, query, run_day

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
# The tests' small training: settings (read when the definitions are built) and model parameters (declaration code).
# The training window is two days, so the reference is one day: against it the next ordinary day differs in 3 of
# 18 columns (humidity, dew point, visibility), which the default bar (0.15) calls drift; the tests use 0.2.
SMALL = {"MLSYS_FLIGHTS_WINDOW": "2", "MLSYS_FLIGHTS_HOLDOUT": "1", "MLSYS_FLIGHTS_SLICE_MIN_ROWS": "100",
         "MLSYS_FLIGHTS_FLOOR": "0.5", "MLSYS_FLIGHTS_DRIFTED_SHARE": "0.2"}
SMALL_PARAMS = {"max_iter": 40}
COSTS = CostPolicy(threshold=0.35, cost_missed_delay=50.0, cost_false_alarm=10.0)
CALENDAR_FEATURES = ("month", "day_of_week", "day_of_year", "is_weekend")


# --- plain functions ----------------------------------------------------------------------------------------------

def test_expected_cost_prices_the_confusion_counts() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.35])  # 0.35 is at the threshold: predicted delayed
    counts = confusion_counts(y, p, 0.35)
    assert counts == {"tp": 1, "fp": 2, "fn": 2, "tn": 1}
    assert expected_cost(counts, cost_missed_delay=50.0, cost_false_alarm=10.0) == 2 * 50.0 + 2 * 10.0


def _scored(day: str, flights: int, role: str, version: str, flip: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = (np.arange(flights) % 3 == 0).astype(int)
    p = np.clip(labels * 0.5 + rng.uniform(0, 0.5, flights), 0, 1)
    return pd.DataFrame({"partition_date": day, "entity_id": [f"{day}-{i}" for i in range(flights)],
                         "probability": 1 - p if flip else p, "model_version": version, "role": role,
                         "source": "batch", "label": labels})


def test_live_performance_waits_for_labels_and_scores_every_model_on_the_same_flights() -> None:
    days = ["2013-02-10", "2013-02-11"]
    scored = pd.concat([_scored(d, 30, "champion", "1") for d in days]
                       + [_scored(days[1], 30, "challenger", "2", flip=True)], ignore_index=True)
    predictions = scored.drop(columns="label")
    labels = scored[["partition_date", "entity_id", "label"]].drop_duplicates()

    assert live_performance_table(predictions, labels, days[1], [days[0]], 7, COSTS).empty  # labels not in yet

    table = live_performance_table(predictions, labels, days[1], days, 7, COSTS).set_index(["role", "span"])
    assert set(table.index) == {("champion", "day"), ("champion", "rolling_7d"), ("challenger", "day"),
                                ("challenger", "rolling_7d")}
    assert table.loc[("champion", "day"), "rows"] == table.loc[("challenger", "day"), "rows"] == 30
    assert table.loc[("champion", "rolling_7d"), "rows"] == 60 and table.loc[("champion", "rolling_7d"), "days"] == 2
    assert table.loc[("champion", "day"), "roc_auc"] == 1.0 and table.loc[("challenger", "day"), "roc_auc"] == 0.0
    for row in table.itertuples():
        assert row.tp + row.fp + row.fn + row.tn == row.rows
        assert row.expected_cost == 50.0 * row.fn + 10.0 * row.fp
    assert table.loc[("challenger", "day"), "expected_cost"] > table.loc[("champion", "day"), "expected_cost"]


def test_label_and_window_days() -> None:
    assert label_day("2013-02-28", 1) == "2013-03-01"
    assert window_days("2013-03-02", 3) == ["2013-02-28", "2013-03-01", "2013-03-02"]


def test_performance_verdict_errors_below_the_floor_and_warns_on_a_drop_from_the_holdout() -> None:
    assert performance_verdict(0.55, 0.70, floor=0.6, max_drop=0.05).severity == "ERROR"
    warned = performance_verdict(0.62, 0.70, floor=0.6, max_drop=0.05)
    assert (warned.passed, warned.severity) == (False, "WARN")
    assert performance_verdict(0.66, 0.70, floor=0.6, max_drop=0.05).passed
    assert performance_verdict(0.66, None, floor=0.6, max_drop=0.05).passed
    assert performance_verdict(float("nan"), 0.70, floor=0.6, max_drop=0.05).passed  # one class: no evidence


def _days_of_weather(days: int, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """Weather-like data: each day its own level (day-to-day sd 1, within-day sd 0.2), as hourly readings are."""
    rng = np.random.default_rng(1)
    level = rng.normal(0, 1, days).repeat(rows)
    return pd.DataFrame({"temp": level + rng.normal(0, 0.2, days * rows) + shift,
                         "distance": rng.normal(1000, 300, days * rows),
                         "month": np.full(days * rows, 1.0)})


def test_day_level_columns_are_judged_by_their_shift_and_calendar_columns_not_at_all() -> None:
    reference = StoredReference("1", build_reference(_days_of_weather(30, 100), ["temp", "distance", "month"], []))
    policy = DriftPolicy(ignored=CALENDAR_FEATURES, day_level=("temp",))
    cold_day = _days_of_weather(30, 100).iloc[:100].assign(temp=lambda f: f["temp"] - f["temp"].mean() - 1.5,
                                                           month=2.0)
    table = feature_drift_table(cold_day, reference, policy)
    assert "month" not in set(table["column_name"])  # one value a day: always "drifted", so not judged
    verdict = table[table["test"] == "verdict"].set_index("column_name")["drifted"]
    assert not verdict["temp"] and not verdict["distance"]
    default = feature_drift_table(cold_day, reference, DriftPolicy(ignored=CALENDAR_FEATURES, day_level=()))
    assert default.query("test == 'verdict' and column_name == 'temp'")["drifted"].item()  # the default rule fires
    hot = feature_drift_table(cold_day.assign(temp=cold_day["temp"] + 6), reference, policy)
    assert hot.query("test == 'verdict' and column_name == 'temp'")["drifted"].item()


def test_a_reference_is_stored_once_per_version_and_one_is_current() -> None:
    con = duckdb.connect()
    features = build_reference(_days_of_weather(2, 50), ["temp"], [])
    save_reference(con, StoredReference("1", features, holdout_metrics={"roc_auc": 0.7, "log_loss": float("nan")},
                                        train_rows=100), pd.Timestamp("2013-02-01"))
    save_reference(con, StoredReference("2", features, train_rows=100), pd.Timestamp("2013-02-02"))
    assert load_reference(con).model_version == "2"
    mark_current(con, "1")
    current = load_reference(con)
    assert current.model_version == "1" and current.holdout_metrics["roc_auc"] == 0.7
    assert np.isnan(current.holdout_metrics["log_loss"])
    assert current.features["temp"].to_dict() == features["temp"].to_dict()
    assert load_reference(con, "3") is None


def test_the_reference_holds_features_and_with_a_model_its_holdout_scores_and_metrics() -> None:
    from mlsys_assets.core.model import fit_baseline
    from mlsys_assets.systems.flights.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({c: rng.normal(size=200) for c in NUMERIC_FEATURES}
                         | {c: rng.choice(["a", "b"], 200) for c in CATEGORICAL_FEATURES}
                         | {"flight_id": [str(i) for i in range(200)], "is_delayed": np.arange(200) % 2,
                            "split": ["train"] * 150 + ["holdout"] * 50})
    alone = build_stored_reference(FLIGHTS_SYSTEM, frame, "none")
    assert set(alone.features) == set(FEATURE_COLUMNS) and alone.score is None and alone.holdout_metrics is None
    assert (alone.train_rows, alone.holdout_rows) == (150, 50)
    model = fit_baseline(FLIGHTS_SYSTEM, frame[frame["split"] == "train"])
    scored = build_stored_reference(FLIGHTS_SYSTEM, frame, "1", model)
    assert scored.score is not None and scored.holdout_metrics["rows"] == 50


def test_the_policy_defaults_match_the_core_ones() -> None:
    from mlsys_assets.systems.flights.features import WEATHER_FEATURES

    assert FLIGHTS_SYSTEM.monitoring.ignore == CALENDAR_FEATURES
    assert DriftPolicy.of(FLIGHTS_SYSTEM) == DriftPolicy(ignored=CALENDAR_FEATURES, day_level=WEATHER_FEATURES)


def test_a_report_without_data_still_renders() -> None:
    empty = ReportData(*(pd.DataFrame() for _ in range(3)),
                       quarantine=pd.DataFrame(), versions=pd.DataFrame(columns=["partition_date", "role",
                                                                                 "model_version", "rows"]))
    page = render_report(empty, "now")
    assert page.count("data:image/png;base64,") == 6 and "no labels yet" in page


# --- Dagster materializations -------------------------------------------------------------------------------------

@pytest.fixture
def defs(mlsys_home: Path):
    """The definitions with the tests' small settings (SMALL) and model parameters (SMALL_PARAMS)."""
    from mlsys_assets import definitions

    with pytest.MonkeyPatch.context() as patch:
        for name, value in SMALL.items():
            patch.setenv(name, value)
        patch.setenv("MLSYS_FLIGHTS_PARAMS", json.dumps(SMALL_PARAMS))
        return definitions.build_defs()


def flights_key(name: str) -> AssetKey:
    return AssetKey(["flights", name])


def materialize_asset(defs, instance, asset: str, day: str | None = None):
    """Materialize one asset of the definitions (the others and the upstream assets are not run)."""
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[flights_key(asset)], partition_key=day, instance=instance, run_config=QUIET,
        raise_on_error=False)


def materialize_monitoring(defs, instance, asset: str, day: str | None = None):
    """Materialize one monitoring asset (the others and the upstream assets are not run)."""
    result = materialize_asset(defs, instance, asset, day)
    assert result.success
    return result


def materialized(result, asset: str):
    """The metadata of the asset's materialization in the run."""
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == flights_key(asset)]
    return event.materialization.metadata


def check(result, name: str):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def performance(home: Path, day: str) -> pd.DataFrame:
    rows = query(home, "SELECT source, role, model_version, span, rows, roc_auc, tp, fp, fn, tn, expected_cost "
                       "FROM live_performance WHERE partition_date = ? ORDER BY ALL", [day])
    return pd.DataFrame(rows, columns=["source", "role", "model_version", "span", "rows", "roc_auc", "tp", "fp",
                                       "fn", "tn", "expected_cost"])


def write(home: Path, *statements: tuple[str, list]) -> None:
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    try:
        con.execute("USE flights")
        for sql, params in statements:
            con.execute(sql, params)
    finally:
        con.close()


@pytest.mark.slow
def test_a_day_gets_its_performance_rows_only_once_its_labels_land(defs, instance, mlsys_home: Path) -> None:
    assert run_day(defs, instance, DAYS[0]).success
    waiting = materialize_monitoring(defs, instance, "live_performance", DAYS[0])
    assert performance(mlsys_home, DAYS[0]).empty
    assert check(waiting, "performance_above_floor").passed
    assert "no labels yet" in check(waiting, "performance_above_floor").metadata["status"].value

    assert run_day(defs, instance, DAYS[1]).success  # DAYS[1]'s features land: DAYS[0]'s labels are in
    write(mlsys_home,  # a challenger that knows the answers, and a few served (online) predictions
          ("INSERT INTO batch_predictions BY NAME SELECT b.* REPLACE (CASE WHEN f.is_delayed = 1 THEN 0.8 ELSE 0.2 "
           "END AS probability, '2' AS model_version, 'challenger' AS role) FROM batch_predictions b "
           "JOIN features f USING (flight_id) WHERE b.partition_date = ?", [DAYS[0]]),
          ("CREATE TABLE served_predictions AS SELECT flight_id, probability, model_version, role "
           "FROM batch_predictions WHERE partition_date = ? AND role = 'champion' LIMIT 200", [DAYS[0]]))
    landed = materialize_monitoring(defs, instance, "live_performance", DAYS[0])
    table = performance(mlsys_home, DAYS[0])
    flights = query(mlsys_home, "SELECT count(*) FROM features WHERE partition_date = ?", [DAYS[0]])[0][0]
    day = table[table["span"] == "day"].set_index(["source", "role"])
    assert set(day.index) == {("batch", "champion"), ("batch", "challenger"), ("served", "champion")}
    assert day.loc[("batch", "champion"), "rows"] == day.loc[("batch", "challenger"), "rows"] == flights
    assert day.loc[("served", "champion"), "rows"] == 200
    assert set(table["span"]) == {"day", "rolling_7d"}
    assert (table["expected_cost"] == 50.0 * table["fn"] + 10.0 * table["fp"]).all()
    challenger = day.loc[("batch", "challenger")]
    assert (challenger["roc_auc"], challenger["fp"], challenger["fn"], challenger["expected_cost"]) == (1.0, 0, 0, 0)
    champion = day.loc[("batch", "champion")]  # the baseline fitted on no history: one rate for every flight
    assert champion["model_version"] == "baseline" and champion["roc_auc"] == 0.5 and champion["expected_cost"] > 0
    judged = check(landed, "performance_above_floor")
    assert not judged.passed and judged.severity.value == "ERROR"
    assert judged.metadata["model_version"].value == "baseline" and judged.metadata["live_roc_auc"].value == 0.5

    materialize_monitoring(defs, instance, "live_performance", DAYS[1])
    assert performance(mlsys_home, DAYS[1]).empty  # the next day's features have not landed


@pytest.mark.slow
def test_drift_reference_checks_and_report_with_a_champion(defs, instance, mlsys_home: Path) -> None:
    for day in DAYS:
        assert run_day(defs, instance, day).success
    assert defs.resolve_job_def("flights_retraining").execute_in_process(instance=instance, run_config=QUIET).success
    for day in DAYS:  # rescored by champion version 1 (they were scored by the baseline before training)
        assert materialize_asset(defs, instance, "batch_predictions", day).success

    built = materialize_monitoring(defs, instance, "drift_reference")
    metadata = materialized(built, "drift_reference")
    assert metadata["model_version"].value == "1" and metadata["reference"].value == "built from training_set"
    assert metadata["training_set_matches_champion"].value is True
    again = materialize_monitoring(defs, instance, "drift_reference")
    assert materialized(again, "drift_reference")["reference"].value.startswith("reused")
    kinds = dict(query(mlsys_home, "SELECT kind, count(*) FROM drift_references WHERE model_version = '1' GROUP BY 1"))
    assert kinds == {"numeric": 18, "categorical": 4, "score": 1, "holdout_metrics": 1}

    for day in DAYS:
        ordinary = materialize_monitoring(defs, instance, "feature_drift", day)
        assert check(ordinary, "features_within_drift_threshold").passed
    scores = materialize_monitoring(defs, instance, "prediction_drift", DAYS[1])
    assert materialized(scores, "prediction_drift")["dagster/row_count"].value == 6
    judged = materialize_monitoring(defs, instance, "live_performance", DAYS[0])
    verdict = check(judged, "performance_above_floor")
    assert verdict.metadata["model_version"].value == "1" and verdict.metadata["holdout_roc_auc"].value > 0.5

    moved = {"temp": "temp + 40", "dewp": "dewp + 40", "pressure": "pressure + 60", "wind_speed": "wind_speed + 40",
             "distance": "distance * 3", "scheduled_block_minutes": "scheduled_block_minutes * 3"}  # 6 of 18
    write(mlsys_home, ("UPDATE features SET " + ", ".join(f"{c} = {v}" for c, v in moved.items())
                       + " WHERE partition_date = ?", [DAYS[1]]))
    shifted = check(materialize_monitoring(defs, instance, "feature_drift", DAYS[1]), "features_within_drift_threshold")
    assert not shifted.passed and shifted.severity.value == "ERROR"
    assert set(moved) <= set(shifted.metadata["drifted_columns"].value.split(", "))
    assert shifted.metadata["day"].value == DAYS[1] and shifted.metadata["drifted_share"].value > 0.3

    report = materialize_monitoring(defs, instance, "monitoring_report")
    facts = materialized(report, "monitoring_report")
    path = Path(facts["path"].value)
    assert path == mlsys_home / "reports" / "flights_monitoring_report.html"
    assert (mlsys_home / "reports" / f"flights_monitoring_report_{DAYS[1]}.html").read_text() == path.read_text()
    page = path.read_text()
    assert page.count("<img ") == page.count("src='data:image/png;base64,") == 6
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", page)
    assert f"drifted days</td>\n      <td>{DAYS[1]}" in page
    assert facts["champion_version"].value == "1" and facts["days_monitored"].value == 2
