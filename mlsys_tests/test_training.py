"""The model lifecycle against a real MLflow store and DuckDB file in a temporary MLSYS_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey

from mlsys_assets.core.alerts import read_alerts
from mlsys_assets.core.evaluation import GatePolicy, promotion_decision
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, query, run_day

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
# A small training: the settings (read when the definitions are built) and the model's parameters (declaration code)
SMALL = {"MLSYS_FLIGHTS_WINDOW": "2", "MLSYS_FLIGHTS_HOLDOUT": "1", "MLSYS_FLIGHTS_SLICE_MIN_ROWS": "100",
         "MLSYS_FLIGHTS_FLOOR": "0.5"}
SMALL_PARAMS = {"max_iter": 40}


def flights_key(name: str) -> AssetKey:
    return AssetKey(["flights", name])


def build_defs_with(settings: dict[str, str], **params: object):
    """`build_defs()` with these MLSYS_FLIGHTS_* settings and model parameters (MLSYS_FLIGHTS_PARAMS) in the
    environment; the environment is restored afterwards."""
    from mlsys_assets import definitions

    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        patch.setenv("MLSYS_FLIGHTS_PARAMS", json.dumps(params))
        return definitions.build_defs()


def retrain(instance, settings: dict[str, str] | None = None, **params: object):
    defs = build_defs_with({**SMALL, **(settings or {})}, **{**SMALL_PARAMS, **params})
    return defs.resolve_job_def("flights_retraining").execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET)


def history(home: Path) -> pd.DataFrame:
    rows = query(home, "SELECT action, candidate_version, previous_champion, champion_after, reason "
                       "FROM promotion_history ORDER BY decided_at")
    return pd.DataFrame(rows, columns=["action", "candidate", "previous", "after", "reason"])


@pytest.fixture
def two_days(defs, instance, mlsys_home: Path) -> Path:
    for day in DAYS:
        assert run_day(defs, instance, day).success
    return mlsys_home


def registry(home: Path):
    from mlsys_assets.resources import MlflowStore

    found = MlflowStore.from_env().registry(FLIGHTS_SYSTEM)
    found.activate()
    return found


@pytest.mark.slow
def test_train_register_promote_then_identical_retrain_is_rejected(defs, instance, two_days: Path) -> None:
    predictions = query(two_days, "SELECT DISTINCT model_version, is_fallback FROM batch_predictions")
    assert predictions == [("baseline", True)]  # no champion yet: the baseline scored the days

    first = retrain(instance)
    assert first.success
    reg = registry(two_days)
    assert reg.alias_version("champion") == "1"
    assert history(two_days)[["action", "candidate", "after"]].values.tolist() == [["promote", "1", "1"]]

    materialization = instance.get_latest_materialization_event(flights_key("candidate_model")).asset_materialization
    run_id = materialization.metadata["mlflow_run_id"].value
    run = reg.client.get_run(run_id)
    assert run.data.tags["dagster.run_id"] == first.run_id
    assert run.data.tags["mlsys.partition_range"] == f"{DAYS[0]}..{DAYS[1]}"
    assert run.data.params["max_iter"] == "40" and run.data.params["random_state"] == "42"
    digests = {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}
    assert set(digests) == {"training_set.train", "training_set.holdout"} and all(digests.values())
    assert reg.client.get_model_version("flight_delay", "1").run_id == run_id

    second = retrain(instance)
    assert not second.success  # the blocking gate check stops the run before champion_model
    planned = {e.step_key for e in second.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert "flights__champion_model" not in planned
    assert reg.alias_version("champion") == "1"
    assert reg.alias_version("challenger") == "2"
    last = history(two_days).iloc[-1]
    assert (last["action"], last["candidate"], last["after"]) == ("reject", "2", "1")
    assert "improvement +0.0000 < required 0.0020" in last["reason"]
    # the MLflow UI shows why each version exists, and what the registered model is
    assert "reject: roc_auc" in reg.client.get_model_version("flight_delay", "2").description
    card = reg.client.get_model_version("flight_delay", "1").description
    assert card.startswith("# flight_delay version 1\n\n**Decision:** promote: first model: roc_auc ")
    for part in ("## Intended use", "Departures from New York", f"- partitions: {DAYS[0]}..{DAYS[1]}",
                 "dataset training_set.train: digest ", "| roc_auc | ", "## Not judged",
                 "Predicted positive at probability >= 0.35; a missed positive costs 50.0",
                 "- Dagster run (the gate): "):
        assert part in card, part
    with open(reg.client.download_artifacts(run_id, "model_card.md")) as stored:
        assert stored.read() == card  # the same card beside the candidate's run
    assert reg.client.get_registered_model("flight_delay").description.startswith("Departures from New York")

    metrics = [reg.client.get_run(r).data.metrics for r in
               (run_id, reg.client.get_model_version("flight_delay", "2").run_id)]
    for name in ("holdout_roc_auc", "holdout_log_loss", "holdout_brier", "holdout_average_precision"):
        assert metrics[0][name] == metrics[1][name]  # same data and config -> same model and metrics

    assert run_day(defs, instance, DAYS[1]).success
    scored = query(two_days, "SELECT DISTINCT role, model_name, model_version, mlflow_run_id, is_fallback "
                             "FROM batch_predictions WHERE partition_date = ? ORDER BY role", [DAYS[1]])
    challenger_run = reg.client.get_model_version("flight_delay", "2").run_id
    assert scored == [("challenger", "flight_delay", "2", challenger_run, False),  # scored in shadow
                      ("champion", "flight_delay", "1", run_id, False)]
    per_role = query(two_days, "SELECT role, count(*) FROM batch_predictions WHERE partition_date = ? "
                               "GROUP BY role ORDER BY role", [DAYS[1]])
    assert per_role[0][1] == per_role[1][1] > 0  # every flight scored by both


@pytest.mark.slow
def test_a_better_candidate_is_promoted_and_rollback_restores_the_previous(defs, instance, two_days: Path) -> None:
    assert retrain(instance, max_iter=1, learning_rate=0.01).success
    assert retrain(instance, {"MLSYS_FLIGHTS_TOLERANCE": "1.0"}, max_iter=60).success
    reg = registry(two_days)
    assert reg.alias_version("champion") == "2"
    assert history(two_days)["action"].tolist() == ["promote", "promote"]

    result = defs.resolve_job_def("flights_rollback_champion").execute_in_process(
        instance=instance, run_config={"ops": {"flights_rollback_champion_op": {"config": {"reason": "bad live AUC"}}}})
    assert result.success
    assert reg.alias_version("champion") == "1"
    last = history(two_days).iloc[-1]
    assert (last["action"], last["previous"], last["after"], last["reason"]) == ("rollback", "2", "1", "bad live AUC")
    champion = instance.get_latest_materialization_event(flights_key("champion_model")).asset_materialization
    assert champion.metadata["champion_version"].value == "1"

    moves = read_alerts().query("kind in ('promote', 'rollback')")
    assert list(zip(moves["kind"], moves["subject"], moves["severity"], strict=True)) == [
        ("promote", "flight_delay@champion: none -> 1", "info"), ("promote", "flight_delay@champion: 1 -> 2", "info"),
        ("rollback", "flight_delay@champion: 2 -> 1", "info")]
    assert moves["message"].iloc[-1] == "bad live AUC"

    again = defs.resolve_job_def("flights_rollback_champion").execute_in_process(
        instance=instance, raise_on_error=False)
    assert not again.success  # version 1 was the first champion: nothing before it
    assert reg.alias_version("champion") == "1"


SLICES = pd.DataFrame({"slice": ["carrier", "carrier"], "value": ["UA", "9E"], "rows": [500, 50],
                       "roc_auc": [0.70, 0.70]})


def test_gate_first_model_needs_the_floor() -> None:
    policy = GatePolicy(absolute_floor=0.65)
    assert promotion_decision({"roc_auc": 0.66}, None, SLICES, None, policy).promote
    refused = promotion_decision({"roc_auc": 0.64}, None, SLICES, None, policy)
    assert not refused.promote and "misses the floor" in refused.summary


def test_gate_refuses_a_regressing_slice_with_enough_rows() -> None:
    policy = GatePolicy(min_improvement=0.002, slice_tolerance=0.02, slice_min_rows=100)
    champion = SLICES.assign(roc_auc=[0.75, 0.90])
    decision = promotion_decision({"roc_auc": 0.80}, {"roc_auc": 0.70}, SLICES, champion, policy)
    assert not decision.promote
    assert decision.regressed_slices == ["carrier=UA"]  # 9E regressed more but has too few rows to judge
    assert promotion_decision({"roc_auc": 0.80}, {"roc_auc": 0.70}, SLICES, SLICES, policy).promote


@pytest.mark.slow
def test_a_challenger_is_promoted_on_live_evidence_once_enough_labelled_days_show_it_wins(
        defs, instance, two_days: Path) -> None:
    assert retrain(instance, max_iter=1, learning_rate=0.01).success  # a weak champion, version 1
    # refused by the gate: the challenger
    assert not retrain(instance, {"MLSYS_FLIGHTS_MIN_IMPROVEMENT": "1.0"}, max_iter=60).success
    reg = registry(two_days)
    assert (reg.alias_version("champion"), reg.alias_version("challenger")) == ("1", "2")
    for day in DAYS:  # rescored: the champion answers, the challenger is scored in shadow
        assert run_day(defs, instance, day).success

    def review(**config):
        return defs.resolve_job_def("flights_review_challenger").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"flights_review_challenger_op": {"config": config}}, **QUIET})

    assert review(min_days=2).success  # only DAYS[0] is labelled (DAYS[1]'s labels land with the next day)
    kept = history(two_days).iloc[-1]
    assert (kept["action"], kept["after"]) == ("keep_live", "1") and "2 labelled days" in kept["reason"]
    assert reg.alias_version("champion") == "1"

    assert review(min_days=1).success
    promoted = history(two_days).iloc[-1]
    assert (promoted["action"], promoted["candidate"], promoted["previous"], promoted["after"]) == (
        "promote_live", "2", "1", "2")
    values = query(two_days, "SELECT candidate_value, champion_value FROM promotion_history "
                             "WHERE action = 'promote_live'")[0]
    assert values[0] > values[1] + 0.002
    assert (reg.alias_version("champion"), reg.alias_version("challenger")) == ("2", None)
    champion = instance.get_latest_materialization_event(flights_key("champion_model")).asset_materialization
    assert champion.metadata["champion_version"].value == "2"
    assert not review(min_days=1).success  # no challenger left to review


def test_the_logged_dataset_schema_is_the_one_mlflow_infers_value_by_value() -> None:
    import warnings

    import mlflow

    from mlsys_assets.core.training import mlflow_dataset

    rows = 3000
    frame = pd.DataFrame({
        "flight_id": [f"2013-02-11-UA{i}" for i in range(rows)],
        "carrier": ["UA", "AA", None, "B6"] * (rows // 4),
        "distance": [100.0, 200.0, 300.0, 400.0] * (rows // 4),
        "wind_gust": [float("nan"), 1.0, 2.0, 3.0] * (rows // 4),
        "is_delayed": pd.array([0, 1, 1, 0] * (rows // 4), dtype="Int64"),
    })
    frame.loc[2500, "distance"] = float("nan")  # missing only after the sample the types come from
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = mlflow_dataset(frame, name="x", targets="is_delayed", source="/tmp/warehouse.duckdb")
        theirs = mlflow.data.from_pandas(frame, name="x", targets="is_delayed", source="/tmp/warehouse.duckdb")
        assert ours.schema.to_dict() == theirs.schema.to_dict()
    required = {spec.name: spec.required for spec in ours.schema.inputs}
    assert required == {"flight_id": True, "carrier": False, "distance": False, "wind_gust": False,
                        "is_delayed": True}
    assert ours.digest == theirs.digest
