"""Model lifecycle assets: training set -> candidate -> evaluation against the champion -> promotion gate."""

import base64
import io
import json
import warnings
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    Output,
    asset,
    job,
    op,
)
from pydantic import Field

from mlsys_assets.core.features import FEATURE_COLUMNS, LABEL
from mlsys_assets.core.warehouse import partition_days, read_days, read_frame, replace_table, table_exists
from mlsys_assets.ingestion import OWNERS
from mlsys_assets.metadata import accounted, markdown_table, table_metadata
from mlsys_assets.resources import MlflowStore, TrainingPolicy, Warehouse

if TYPE_CHECKING:  # no `from __future__ import annotations` here: Dagster rejects a `context` annotation string
    import pandas as pd

GATE_CHECK = "candidate_passes_promotion_gate"


def run_tags(context: AssetExecutionContext | OpExecutionContext, asset_name: str, **extra: str) -> dict[str, str]:
    """Tags that link an MLflow run back to the Dagster run, and carry why the run was launched."""
    tags = {"dagster.run_id": context.run.run_id, "dagster.asset_key": asset_name, "dagster.job": context.job_name}
    for key, value in context.run.tags.items():
        if key.startswith(("mlsys/", "dagster/sensor_name", "dagster/schedule_name")):
            tags[key.replace("/", ".")] = value
    return {**tags, **extra}


def _load_training_set(warehouse: Warehouse) -> "pd.DataFrame":
    with warehouse.get_connection() as con:
        if not table_exists(con, "training_set"):
            raise ValueError("training_set has not been materialized")
        return read_frame(con, "SELECT * FROM training_set ORDER BY flight_date, flight_id")


@asset(
    deps=["flight_features"],
    group_name="training",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    pool="warehouse",
)
@accounted
def training_set(context: AssetExecutionContext, warehouse: Warehouse, training: TrainingPolicy) -> MaterializeResult:
    """The most recent `window_days` days of flight_features, split by time: the last `holdout_days` days are
    the holdout. Also publishes `baseline_rates`, the fallback model fitted on the train part."""
    from mlsys_assets.core.model import fit_baseline
    from mlsys_assets.core.training import dataset_digest, split_by_time, window_days

    with warehouse.get_connection() as con:
        days = window_days(partition_days(con, "flight_features"), training.window_days)
        if len(days) < 2:
            raise ValueError(f"training needs at least 2 days of flight_features, found {len(days)} in "
                             f"{warehouse.database}: materialize the daily pipeline first")
        features = read_days(con, "flight_features", days, order_by=["flight_id"])
    frame = split_by_time(features.drop(columns=["partition_date"]), training.holdout_days)
    baseline = fit_baseline(frame[frame["split"] == "train"])
    with warehouse.get_connection() as con:
        replace_table(con, "training_set", frame)
        replace_table(con, "baseline_rates", baseline.to_frame())
    digest = dataset_digest(frame)
    by_split = frame.groupby("split").agg(rows=(LABEL, "size"), delayed_rate=(LABEL, "mean"),
                                          first_day=("flight_date", "min"), last_day=("flight_date", "max"))
    return MaterializeResult(
        data_version=DataVersion(digest[:16]),
        metadata={
            **table_metadata(frame),
            "days": len(days), "first_day": days[0], "last_day": days[-1],
            "source_partitions": MetadataValue.json({"asset": "flight_features", "days": days}),
            "splits": markdown_table(by_split.reset_index()),
            "digest": digest,
        },
    )


@asset(deps=["training_set"], group_name="training", kinds={"mlflow", "scikit-learn"}, owners=OWNERS)
@accounted
def candidate_model(context: AssetExecutionContext, warehouse: Warehouse, mlflow_store: MlflowStore,
                    training: TrainingPolicy) -> Output[dict]:
    """A scikit-learn Pipeline fitted on the train part of training_set, logged to MLflow with its parameters,
    holdout metrics, signature, input example and the training data as a dataset input."""
    from mlsys_assets.core.evaluation import classification_metrics
    from mlsys_assets.core.features import feature_matrix
    from mlsys_assets.core.model import delay_probability, fit_pipeline
    from mlsys_assets.core.registry import ModelRef, pip_requirements, trusted_types
    from mlsys_assets.core.training import dataset_digest, mlflow_dataset

    import mlflow.sklearn  # isort: skip  (after core.registry, which switches MLflow's telemetry off)
    from mlflow.models import infer_signature

    frame = _load_training_set(warehouse)
    train, holdout = frame[frame["split"] == "train"], frame[frame["split"] == "holdout"]
    params = training.model_params()
    registry = mlflow_store.registry()
    experiment_id = registry.activate()
    first_day, last_day = frame["flight_date"].min(), frame["flight_date"].max()
    tags = run_tags(context, "candidate_model", **{"mlsys.partition_range": f"{first_day}..{last_day}",
                                                   "mlsys.training_digest": dataset_digest(frame)})
    with mlflow.start_run(run_name=f"candidate {last_day}", tags=tags) as run:
        pipeline = fit_pipeline(train, train[LABEL], params)
        metrics = classification_metrics(holdout[LABEL].to_numpy(), delay_probability(pipeline, holdout),
                                         training.decision_threshold)
        mlflow.log_params({**vars(params), "window_days": training.window_days,
                           "holdout_days": training.holdout_days, "decision_threshold": training.decision_threshold})
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()} | {"train_rows": float(len(train))})
        columns = [*FEATURE_COLUMNS, LABEL, "flight_id", "flight_date"]
        with warnings.catch_warnings():
            # a file path matches two MLflow source kinds (it picks the local one); the label and keys are integers
            # and never missing, so MLflow's hint about integer columns is moot
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
            for name, part, ctx in (("train", train, "training"), ("holdout", holdout, "evaluation")):
                dataset = mlflow_dataset(part[columns].reset_index(drop=True), name=f"training_set.{name}",
                                         targets=LABEL, source=warehouse.database)
                mlflow.log_input(dataset, context=ctx)
        example = feature_matrix(train.head(5)).reset_index(drop=True)  # the dtypes the model is given
        info = mlflow.sklearn.log_model(
            pipeline, name="model", signature=infer_signature(example, pipeline.predict_proba(example)[:, 1]),
            input_example=example, pip_requirements=pip_requirements(), skops_trusted_types=trusted_types(pipeline))
    ref = ModelRef(run_id=run.info.run_id, model_uri=info.model_uri, experiment_id=experiment_id)
    return Output(ref.to_dict(), metadata={
        "mlflow_run_id": ref.run_id, "model_uri": ref.model_uri,
        "mlflow_run": MetadataValue.url(registry.run_url(experiment_id, ref.run_id)),
        "train_rows": len(train), "holdout_rows": len(holdout),
        **{f"holdout_{k}": float(v) for k, v in metrics.items() if k != "rows"},
        "params": MetadataValue.json(vars(params)),
    })


def _calibration_plot(tables: "dict[str, pd.DataFrame]") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    for role, table in tables.items():
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=role)
    ax.set_xlabel("mean predicted P(delayed)")
    ax.set_ylabel("observed delay rate")
    ax.set_title("Calibration on the holdout")
    ax.legend()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


@asset(
    group_name="training",
    kinds={"mlflow", "duckdb"},
    owners=OWNERS,
    pool="warehouse",
    check_specs=[AssetCheckSpec(GATE_CHECK, asset="model_evaluation", blocking=True,
                                description="The candidate beats the champion by the margin with no slice "
                                            "regressing (or, first, clears the floor); otherwise it is not promoted.")],
)
@accounted
def model_evaluation(context: AssetExecutionContext, candidate_model: dict, warehouse: Warehouse,
                     mlflow_store: MlflowStore, training: TrainingPolicy):
    """Candidate and current champion scored on the same holdout: metrics, per-slice metrics and calibration,
    and the promotion gate's decision. The candidate is registered as a new version either way; a rejected
    one becomes @challenger."""
    import pandas as pd

    from mlsys_assets.core.evaluation import (
        calibration_table,
        classification_metrics,
        promotion_decision,
        slice_metrics,
    )
    from mlsys_assets.core.model import delay_probability
    from mlsys_assets.core.registry import CHALLENGER, CHAMPION, ModelRef, record_history

    import mlflow.sklearn  # isort: skip

    registry = mlflow_store.registry()
    registry.activate()
    candidate = ModelRef(**candidate_model)
    holdout = _load_training_set(warehouse).query("split == 'holdout'")
    y = holdout[LABEL].to_numpy()
    champion_version = registry.alias_version(CHAMPION)
    models = {"candidate": mlflow.sklearn.load_model(candidate.model_uri)}
    if champion_version is not None:
        models["champion"] = registry.load(champion_version)
    metrics, slices, calibration = {}, {}, {}
    for role, model in models.items():
        p = delay_probability(model, holdout)
        metrics[role] = classification_metrics(y, p, training.decision_threshold)
        slices[role] = slice_metrics(holdout, y, p, training.decision_threshold)
        calibration[role] = calibration_table(y, p)
    policy = training.gate_policy()
    decision = promotion_decision(metrics["candidate"], metrics.get("champion"), slices["candidate"],
                                  slices.get("champion"), policy)
    version = registry.register(candidate, tags={"mlsys.decision": "approved" if decision.promote else "rejected",
                                                 "dagster.run_id": context.run.run_id})
    evaluation = pd.concat([
        slices[role].assign(role=role, model_version=version if role == "candidate" else champion_version)
        for role in models] + [
        pd.DataFrame([{**metrics[role], "slice": "overall", "value": "all", "role": role,
                       "model_version": version if role == "candidate" else champion_version}]) for role in models],
        ignore_index=True).assign(candidate_run_id=candidate.run_id, evaluated_run_id=context.run.run_id)
    with warehouse.get_connection() as con:
        if table_exists(con, "model_evaluations"):
            con.execute("DELETE FROM model_evaluations WHERE candidate_run_id = ?", [candidate.run_id])
            con.register("_evaluation", evaluation)
            con.execute("INSERT INTO model_evaluations BY NAME SELECT * FROM _evaluation")
        else:
            replace_table(con, "model_evaluations", evaluation)
        if not decision.promote:
            registry.set_alias(CHALLENGER, version)
            record_history(con, model_name=registry.model_name, action="reject", candidate_version=version,
                           previous_champion=champion_version, champion_after=champion_version,
                           reason=decision.summary, dagster_run_id=context.run.run_id,
                           primary_metric=policy.primary_metric, candidate_value=decision.candidate_value,
                           champion_value=decision.champion_value, mlflow_run_id=candidate.run_id,
                           details={"regressed_slices": decision.regressed_slices})
    plot = _calibration_plot(calibration)
    with mlflow.start_run(run_id=candidate.run_id):
        if "champion" in metrics:
            mlflow.log_metrics({f"champion_{k}": v for k, v in metrics["champion"].items()})
        mlflow.log_dict(json.loads(evaluation.to_json(orient="records")), "evaluation/slices.json")
        mlflow.log_image(_png_array(plot), "evaluation/calibration.png")
        mlflow.set_tags({"mlsys.decision": "approved" if decision.promote else "rejected",
                         "mlsys.registered_version": version})
    overall = pd.DataFrame({role: m for role, m in metrics.items()}).T.reset_index(names="role")
    result = {"candidate": candidate.to_dict() | {"version": version}, "champion_version": champion_version,
              "promote": decision.promote, "reasons": decision.reasons,
              "candidate_value": decision.candidate_value, "champion_value": decision.champion_value}
    yield Output(result, metadata={
        "decision": decision.summary,
        "candidate_version": version,
        "champion_version": champion_version or "none",
        "metrics": markdown_table(overall.round(4)),
        "slices": markdown_table(evaluation.query("slice != 'overall'")[
            ["role", "slice", "value", "rows", "roc_auc", "precision", "recall"]].round(4), max_rows=40),
        "calibration": MetadataValue.md(
            f"![calibration](data:image/png;base64,{base64.b64encode(plot).decode()})"),
        "mlflow_run": MetadataValue.url(registry.run_url(candidate.experiment_id, candidate.run_id)),
        "model_version": MetadataValue.url(registry.version_url(version)),
    })
    yield AssetCheckResult(
        check_name=GATE_CHECK, passed=decision.promote, severity=AssetCheckSeverity.ERROR,
        metadata={"decision": decision.summary, "candidate_version": version,
                  "candidate_value": decision.candidate_value,
                  "champion_value": decision.champion_value if decision.champion_value is not None else float("nan")})


def _png_array(png: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@asset(group_name="training", kinds={"mlflow"}, owners=OWNERS, pool="warehouse")
@accounted
def champion_model(context: AssetExecutionContext, model_evaluation: dict, warehouse: Warehouse,
                   mlflow_store: MlflowStore, training: TrainingPolicy) -> MaterializeResult:
    """The registered model's @champion alias, moved to the candidate that passed the gate (the blocking
    check on model_evaluation keeps a rejected candidate from ever reaching this step)."""
    from mlsys_assets.core.registry import CHALLENGER, CHAMPION, record_history

    registry = mlflow_store.registry()
    registry.activate()
    version = model_evaluation["candidate"]["version"]
    if not model_evaluation["promote"]:
        raise ValueError(f"version {version} failed the promotion gate: {model_evaluation['reasons']}")
    previous = registry.alias_version(CHAMPION)
    registry.set_alias(CHAMPION, version)
    if registry.alias_version(CHALLENGER) is not None:
        registry.delete_alias(CHALLENGER)
    with warehouse.get_connection() as con:
        record_history(con, model_name=registry.model_name, action="promote", candidate_version=version,
                       previous_champion=previous, champion_after=version,
                       reason="; ".join(model_evaluation["reasons"]), dagster_run_id=context.run.run_id,
                       primary_metric=training.primary_metric, candidate_value=model_evaluation["candidate_value"],
                       champion_value=model_evaluation["champion_value"],
                       mlflow_run_id=model_evaluation["candidate"]["run_id"])
    return MaterializeResult(metadata={
        "champion_version": version, "previous_champion": previous or "none",
        "reason": "; ".join(model_evaluation["reasons"]),
        "model_version": MetadataValue.url(registry.version_url(version)),
        "mlflow_run_id": model_evaluation["candidate"]["run_id"],
    })


class RollbackConfig(Config):
    reason: str = "manual rollback"


@op(description="Move @champion back to the champion before it, and record why in promotion_history.")
def rollback_champion_op(context: OpExecutionContext, config: RollbackConfig, warehouse: Warehouse,
                         mlflow_store: MlflowStore) -> None:
    from dagster import AssetMaterialization

    from mlsys_assets.core.registry import rollback

    registry = mlflow_store.registry()
    registry.activate()
    with warehouse.get_connection() as con:
        moved_from, moved_to = rollback(registry, con, config.reason, context.run.run_id)
    context.log.info(f"@champion rolled back from version {moved_from} to {moved_to}: {config.reason}")
    context.log_event(AssetMaterialization(asset_key="champion_model", metadata={
        "champion_version": moved_to, "previous_champion": moved_from, "reason": f"rollback: {config.reason}",
        "model_version": MetadataValue.url(registry.version_url(moved_to))}))


@job(description="Roll @champion back to the previous champion (config: reason).")
def rollback_champion():
    rollback_champion_op()


class ChallengerReviewConfig(Config):
    min_days: int = Field(default=7, description="Labelled days of shadow scores the challenger needs.")
    last_days: int = Field(default=14, description="Most recent labelled days compared.")
    min_improvement: float = Field(default=0.002, description="Live ROC AUC by which the challenger must beat "
                                                              "the champion on the same flights.")


@op(description="Promote @challenger if, scored in shadow on the same live flights, it beat @champion once the "
                "labels landed; records the decision either way.")
def review_challenger_op(context: OpExecutionContext, config: ChallengerReviewConfig, warehouse: Warehouse,
                         mlflow_store: MlflowStore) -> None:
    from dagster import AssetMaterialization

    from mlsys_assets.core.registry import promote_challenger

    registry = mlflow_store.registry()
    registry.activate()
    with warehouse.get_connection() as con:
        evidence, promoted = promote_challenger(registry, con, config.min_days, config.min_improvement,
                                                config.last_days, context.run.run_id)
    context.log.info(("promoted" if promoted else "kept the champion:") +
                     f" challenger {evidence.challenger} {evidence.challenger_roc_auc:.4f} vs champion "
                     f"{evidence.champion} {evidence.champion_roc_auc:.4f} on {evidence.rows} live flights")
    if promoted:
        context.log_event(AssetMaterialization(asset_key="champion_model", metadata={
            "champion_version": evidence.challenger, "previous_champion": evidence.champion,
            "reason": "promoted on live evidence", "live_days": ", ".join(evidence.days),
            "live_roc_auc": evidence.challenger_roc_auc, "champion_live_roc_auc": evidence.champion_roc_auc,
            "model_version": MetadataValue.url(registry.version_url(evidence.challenger))}))


@job(description="The feedback loop: promote @challenger on live evidence from shadow scoring (config: min_days, "
                 "last_days, min_improvement).")
def review_challenger():
    review_challenger_op()
