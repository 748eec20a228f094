"""The promotion half of the lifecycle: the candidate judged against the champion (the gate is a blocking check),
the @champion alias moved, and the jobs that move it by hand (rollback) or on live evidence (challenger review)."""

import base64
import io
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetMaterialization,
    Config,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    Output,
    asset,
    job,
    op,
)
from pydantic import Field

from mlsys_assets.core.warehouse import replace_table, table_exists
from mlsys_assets.metadata import accounted, markdown_table
from mlsys_assets.naming import Names
from mlsys_assets.resources import MlflowStore, Warehouse

if TYPE_CHECKING:  # no `from __future__ import annotations` here: Dagster rejects a `context` annotation string
    import pandas as pd

    from mlsys_assets.declaration import System

GATE_CHECK = "candidate_passes_promotion_gate"


def _calibration_plot(tables: "dict[str, pd.DataFrame]") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    for role, table in tables.items():
        ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=role)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title("Calibration on the holdout")
    ax.legend()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _png_array(png: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def evaluation_assets(names: Names, load_training_set: Callable[[Warehouse], "pd.DataFrame"]) -> list:
    system = names.system
    label, metric = system.prediction.label, system.gate.metric
    evaluation_key = names.key("model_evaluation")

    @asset(
        key=evaluation_key,
        ins={"candidate_model": AssetIn(key=names.key("candidate_model"))},
        group_name=names.group("training"),
        kinds={"mlflow", "duckdb"},
        owners=names.owners,
        pool="warehouse",
        check_specs=[AssetCheckSpec(GATE_CHECK, asset=evaluation_key, blocking=True,
                                    description="The candidate beats the champion by the margin with no slice "
                                                "regressing (or, first, clears the floor); otherwise it is not "
                                                "promoted.")],
        description="Candidate and current champion scored on the same holdout: metrics, per-slice metrics and "
                    "calibration, and the promotion gate's decision. The candidate is registered as a new version "
                    "either way; a rejected one becomes @challenger.",
    )
    @accounted
    def model_evaluation(context: AssetExecutionContext, candidate_model: dict, warehouse: Warehouse,
                         mlflow_store: MlflowStore):
        import pandas as pd

        from mlsys_assets.core.evaluation import (
            GatePolicy,
            calibration_table,
            metrics,
            promotion_decision,
            slice_metrics,
        )
        from mlsys_assets.core.model import scores
        from mlsys_assets.core.registry import CHALLENGER, CHAMPION, ModelRef, record_history

        import mlflow.sklearn  # isort: skip

        registry = mlflow_store.registry(system)
        registry.activate()
        candidate = ModelRef(**candidate_model)
        holdout = load_training_set(warehouse).query("split == 'holdout'")
        y = holdout[label].to_numpy()
        champion_version = registry.alias_version(CHAMPION)
        models = {"candidate": mlflow.sklearn.load_model(candidate.model_uri)}
        if champion_version is not None:
            models["champion"] = registry.load(champion_version)
        measured, slices, calibration = {}, {}, {}
        for role, model in models.items():
            p = scores(system, model, holdout)
            measured[role] = metrics(system, y, p)
            slices[role] = slice_metrics(system, holdout, y, p)
            if system.prediction.task == "binary":
                calibration[role] = calibration_table(y, p)
        policy = GatePolicy.of(system)
        decision = promotion_decision(measured["candidate"], measured.get("champion"), slices["candidate"],
                                      slices.get("champion"), policy)
        version = registry.register(
            candidate, tags={"mlsys.decision": "approved" if decision.promote else "rejected",
                             "dagster.run_id": context.run.run_id},
            description=f"Candidate of the {system.name} system, judged by the promotion gate in Dagster run "
                        f"{context.run.run_id}: {decision.summary}.",
            model_description=f"{system.description} Registered by mlsys: every version is a candidate the "
                              f"promotion gate judged ({system.gate.metric}); @champion answers.")
        _publish_card(system, registry, candidate, version, decision.summary, measured, slices["candidate"],
                      context.run.run_id)
        evaluation = pd.concat([
            slices[role].assign(role=role, model_version=version if role == "candidate" else champion_version)
            for role in models] + [
            pd.DataFrame([{**measured[role], "slice": "overall", "value": "all", "role": role,
                           "model_version": version if role == "candidate" else champion_version}])
            for role in models], ignore_index=True).assign(candidate_run_id=candidate.run_id,
                                                            evaluated_run_id=context.run.run_id)
        with warehouse.get_connection(names.system) as con:
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
        plot = _calibration_plot(calibration) if calibration else None
        with mlflow.start_run(run_id=candidate.run_id):
            if "champion" in measured:
                mlflow.log_metrics({f"champion_{k}": v for k, v in measured["champion"].items()})
            mlflow.log_dict(json.loads(evaluation.to_json(orient="records")), "evaluation/slices.json")
            if plot is not None:
                mlflow.log_image(_png_array(plot), "evaluation/calibration.png")
            mlflow.set_tags({"mlsys.decision": "approved" if decision.promote else "rejected",
                             "mlsys.registered_version": version})
        overall = pd.DataFrame({role: m for role, m in measured.items()}).T.reset_index(names="role")
        shown = [c for c in ["role", "slice", "value", "rows", metric, "precision", "recall"] if c in evaluation]
        result = {"candidate": candidate.to_dict() | {"version": version}, "champion_version": champion_version,
                  "promote": decision.promote, "reasons": decision.reasons,
                  "candidate_value": decision.candidate_value, "champion_value": decision.champion_value}
        yield Output(result, metadata={
            "decision": decision.summary,
            "candidate_version": version,
            "champion_version": champion_version or "none",
            "metrics": markdown_table(overall.round(4)),
            "slices": markdown_table(evaluation.query("slice != 'overall'")[shown].round(4), max_rows=40),
            **({"calibration": MetadataValue.md(
                f"![calibration](data:image/png;base64,{base64.b64encode(plot).decode()})")} if plot else {}),
            "mlflow_run": MetadataValue.url(registry.run_url(candidate.experiment_id, candidate.run_id)),
            "model_version": MetadataValue.url(registry.version_url(version)),
        })
        yield AssetCheckResult(
            check_name=GATE_CHECK, asset_key=evaluation_key, passed=decision.promote,
            severity=AssetCheckSeverity.ERROR,
            metadata={"decision": decision.summary, "candidate_version": version,
                      "candidate_value": decision.candidate_value,
                      "champion_value": decision.champion_value if decision.champion_value is not None
                      else float("nan")})

    @asset(key=names.key("champion_model"), ins={"model_evaluation": AssetIn(
        key=evaluation_key)}, group_name=names.group("training"), kinds={"mlflow"}, owners=names.owners,
        pool="warehouse",
        description="The registered model's @champion alias, moved to the candidate that passed the gate (the "
                    "blocking check on model_evaluation keeps a rejected candidate from ever reaching this step).")
    @accounted
    def champion_model(context: AssetExecutionContext, model_evaluation: dict, warehouse: Warehouse,
                       mlflow_store: MlflowStore):
        from dagster import MaterializeResult

        from mlsys_assets.core.registry import CHALLENGER, CHAMPION, record_history

        registry = mlflow_store.registry(system)
        registry.activate()
        version = model_evaluation["candidate"]["version"]
        if not model_evaluation["promote"]:
            raise ValueError(f"version {version} failed the promotion gate: {model_evaluation['reasons']}")
        previous = registry.alias_version(CHAMPION)
        registry.set_alias(CHAMPION, version)
        if registry.alias_version(CHALLENGER) is not None:
            registry.delete_alias(CHALLENGER)
        with warehouse.get_connection(names.system) as con:
            record_history(con, model_name=registry.model_name, action="promote", candidate_version=version,
                           previous_champion=previous, champion_after=version,
                           reason="; ".join(model_evaluation["reasons"]), dagster_run_id=context.run.run_id,
                           primary_metric=metric, candidate_value=model_evaluation["candidate_value"],
                           champion_value=model_evaluation["champion_value"],
                           mlflow_run_id=model_evaluation["candidate"]["run_id"])
        return MaterializeResult(metadata={
            "champion_version": version, "previous_champion": previous or "none",
            "reason": "; ".join(model_evaluation["reasons"]),
            "model_version": MetadataValue.url(registry.version_url(version)),
            "mlflow_run_id": model_evaluation["candidate"]["run_id"],
        })

    return [model_evaluation, champion_model]


class RollbackConfig(Config):
    reason: str = "manual rollback"


class ChallengerReviewConfig(Config):
    min_days: int = Field(default=7, description="Labelled days of shadow scores the challenger needs.")
    last_days: int = Field(default=14, description="Most recent labelled days compared.")
    min_improvement: float = Field(default=0.002, description="Live value of the gate's metric by which the "
                                                              "challenger must beat the champion on the same rows.")


def lifecycle_jobs(names: Names) -> list[JobDefinition]:
    """Rollback and challenger review, as jobs of the system (they move an alias; they materialize nothing)."""
    system = names.system
    champion_key = names.key("champion_model")

    @op(name=f"{names.name}_rollback_champion_op",
        description="Move @champion back to the champion before it, and record why in promotion_history.")
    def rollback_op(context: OpExecutionContext, config: RollbackConfig, warehouse: Warehouse,
                    mlflow_store: MlflowStore) -> None:
        from mlsys_assets.core.registry import rollback

        registry = mlflow_store.registry(system)
        registry.activate()
        with warehouse.get_connection(names.system) as con:
            moved_from, moved_to = rollback(registry, con, config.reason, context.run.run_id)
        context.log.info(f"@champion rolled back from version {moved_from} to {moved_to}: {config.reason}")
        context.log_event(AssetMaterialization(asset_key=champion_key, metadata={
            "champion_version": moved_to, "previous_champion": moved_from, "reason": f"rollback: {config.reason}",
            "model_version": MetadataValue.url(registry.version_url(moved_to))}))

    @job(name=names.job("rollback_champion"),
         description="Roll @champion back to the previous champion (config: reason).")
    def rollback_champion():
        rollback_op()

    @op(name=f"{names.name}_review_challenger_op",
        description="Promote @challenger if, scored in shadow on the same live rows, it beat @champion once the "
                    "labels landed; records the decision either way.")
    def review_op(context: OpExecutionContext, config: ChallengerReviewConfig, warehouse: Warehouse,
                  mlflow_store: MlflowStore) -> None:
        from mlsys_assets.core.registry import promote_challenger

        registry = mlflow_store.registry(system)
        registry.activate()
        with warehouse.get_connection(names.system) as con:
            evidence, promoted = promote_challenger(system, registry, con, config.min_days, config.min_improvement,
                                                    config.last_days, context.run.run_id)
        context.log.info(("promoted" if promoted else "kept the champion:") +
                         f" challenger {evidence.challenger} {evidence.challenger_roc_auc:.4f} vs champion "
                         f"{evidence.champion} {evidence.champion_roc_auc:.4f} on {evidence.rows} live rows")
        if promoted:
            context.log_event(AssetMaterialization(asset_key=champion_key, metadata={
                "champion_version": evidence.challenger, "previous_champion": evidence.champion,
                "reason": "promoted on live evidence", "live_days": ", ".join(evidence.days),
                "live_roc_auc": evidence.challenger_roc_auc, "champion_live_roc_auc": evidence.champion_roc_auc,
                "model_version": MetadataValue.url(registry.version_url(evidence.challenger))}))

    @job(name=names.job("review_challenger"),
         description="The feedback loop: promote @challenger on live evidence from shadow scoring (config: "
                     "min_days, last_days, min_improvement).")
    def review_challenger():
        review_op()

    return [rollback_champion, review_challenger]


def _publish_card(system: "System", registry: object, candidate: object, version: str, summary: str,
                  measured: dict, slices: "pd.DataFrame", dagster_run_id: str) -> None:
    """The version's model card: its description in the registry, and `model_card.md` beside the candidate's run."""
    from mlsys_assets.core.modelcard import model_card

    run = registry.client.get_run(candidate.run_id)
    params, tags = run.data.params, run.data.tags
    training = {"partitions": tags.get("mlsys.partition_range", "?"),
                "window, holdout (partitions)": f"{params.get('window_days', '?')}, {params.get('holdout_days', '?')}",
                "training rows": f"{run.data.metrics.get('train_rows', float('nan')):.0f}",
                "model factory": params.get("factory", "?"),
                "parameters": ", ".join(f"{k}={v}" for k, v in sorted(params.items())
                                        if k not in ("factory", "window_days", "holdout_days")),
                **{f"dataset {i.dataset.name}": f"digest {i.dataset.digest}" for i in run.inputs.dataset_inputs}}
    links = {"Dagster run (the gate)": dagster_run_id,
             "MLflow run (the candidate)": registry.run_url(candidate.experiment_id, candidate.run_id)}
    card = model_card(system, version, summary, measured, slices, training, links)
    registry.client.update_model_version(registry.model_name, version, description=card)
    registry.client.log_text(candidate.run_id, card, "model_card.md")
