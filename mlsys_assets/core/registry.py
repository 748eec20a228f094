"""MLflow tracking and the model registry: logging candidates, aliases, loading, and the alias history.

MLflow keeps only where an alias points now; `promotion_history` in the warehouse keeps every move
(promotion, rejection, rollback) with the numbers behind it. Imported only where a model is handled.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports from an offline system

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlsys_assets.declaration import System

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class ModelRef:
    """Where a logged model lives: enough to load it and to link to it."""

    run_id: str
    model_uri: str
    experiment_id: str
    version: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    artifact_root: str
    experiment: str
    model_name: str
    ui_url: str

    def activate(self) -> str:
        """Point MLflow's process-wide client at this store; returns the experiment id."""
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        found = mlflow.get_experiment_by_name(self.experiment)
        if found is None:
            experiment_id = mlflow.create_experiment(self.experiment,
                                                     artifact_location=str(Path(self.artifact_root) / self.experiment))
            self._retire_default_experiment()
        else:
            experiment_id = found.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def _retire_default_experiment(self) -> None:
        """MLflow creates a "Default" experiment in every new store, its artifacts in `./mlruns/0` of whatever
        directory the process happened to start in; mlsys logs only to its systems' experiments, so an empty Default
        is deleted (soft: MLflow keeps it, hidden) rather than left for someone to log into by mistake."""
        client = self.client
        active = {e.experiment_id for e in client.search_experiments()}
        if "0" in active and not client.search_runs(["0"], max_results=1):
            client.delete_experiment("0")

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def version_url(self, version: str) -> str:
        return f"{self.ui_url}/#/models/{self.model_name}/versions/{version}"

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points at, or None when the model or the alias does not exist."""
        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def version_ref(self, version: str) -> ModelRef:
        found = self.client.get_model_version(self.model_name, version)
        run = self.client.get_run(found.run_id)
        return ModelRef(run_id=found.run_id, model_uri=f"models:/{self.model_name}/{version}",
                        experiment_id=run.info.experiment_id, version=str(version))

    def register(self, ref: ModelRef, tags: dict[str, str], description: str = "",
                 model_description: str = "") -> str:
        """A new version of the registered model from a logged candidate; `description` is the version's (what the
        MLflow UI shows on its page), `model_description` the registered model's, set when it has none yet."""
        found = self.client.search_logged_models(
            experiment_ids=[ref.experiment_id], filter_string=f"source_run_id = '{ref.run_id}'")
        source = f"models:/{found[0].model_id}" if found else ref.model_uri
        with contextlib.redirect_stderr(io.StringIO()) as said:  # MLflow prints its progress to stderr
            version = mlflow.register_model(source, self.model_name, tags=tags)
        logging.getLogger(__name__).info(said.getvalue().strip())
        if description:
            self.client.update_model_version(self.model_name, version.version, description=description)
        if model_description and not self.client.get_registered_model(self.model_name).description:
            self.client.update_registered_model(self.model_name, description=model_description)
        return str(version.version)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, version)

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.model_name, alias)

    def load(self, version: str) -> object:
        """The scikit-learn pipeline of a registered version."""
        import mlflow.sklearn

        return mlflow.sklearn.load_model(f"models:/{self.model_name}/{version}")


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's own inference costs seconds per logged model."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "pandas", "numpy", "scipy", "skops")]


def trusted_types(pipeline: object) -> list[str]:
    """The types skops must be told to trust: scikit-learn's own (HistGradientBoosting's predictors) and the
    `functools.partial` its loss objects hold; anything else is refused rather than trusted blindly."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    foreign = [t for t in untrusted if not t.startswith("sklearn.") and t != "functools.partial"]
    if foreign:
        raise ValueError(f"refusing to trust non-scikit-learn types in the model: {foreign}")
    return untrusted


HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS promotion_history (
    decided_at TIMESTAMP, model_name VARCHAR, action VARCHAR, candidate_version VARCHAR,
    previous_champion VARCHAR, champion_after VARCHAR, primary_metric VARCHAR, candidate_value DOUBLE,
    champion_value DOUBLE, reason VARCHAR, dagster_run_id VARCHAR, mlflow_run_id VARCHAR, details VARCHAR)
"""


def record_history(con: duckdb.DuckDBPyConnection, *, model_name: str, action: str, candidate_version: str | None,
                   previous_champion: str | None, champion_after: str | None, reason: str,
                   dagster_run_id: str, primary_metric: str | None = None, candidate_value: float | None = None,
                   champion_value: float | None = None, mlflow_run_id: str | None = None,
                   details: dict | None = None) -> None:
    """Append one alias move (or refusal to move) to `promotion_history`; a move of @champion (a promotion or a
    rollback) is also an alert, so it reaches the webhook (a refusal already fails its run: a run_failure alert)."""
    con.execute(HISTORY_DDL)
    con.execute(
        "INSERT INTO promotion_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [datetime.now(UTC).replace(tzinfo=None), model_name, action, candidate_version, previous_champion,
         champion_after, primary_metric, candidate_value, champion_value, reason, dagster_run_id, mlflow_run_id,
         json.dumps(details or {}, default=str)])
    if action in ("promote", "rollback") and champion_after != previous_champion:
        from mlsys_assets.core.alerts import record_alert

        record_alert(action, f"{model_name}@champion: {previous_champion or 'none'} -> {champion_after}", reason,
                     where_to_look=f"Dagster UI: /runs/{dagster_run_id}", severity="info", run_id=dagster_run_id)


def read_history(con: duckdb.DuckDBPyConnection, model_name: str) -> pd.DataFrame:
    con.execute(HISTORY_DDL)
    return con.sql("SELECT * FROM promotion_history WHERE model_name = ? ORDER BY decided_at",
                   params=[model_name]).to_arrow_table().to_pandas()


def previous_champion(history: pd.DataFrame, current: str | None) -> str | None:
    """The champion before `current`: where the latest promotion onto it came from (rollbacks walk back)."""
    moves = history[(history["action"] == "promote") & (history["champion_after"] == current)]
    if moves.empty:
        return None
    return moves["previous_champion"].iloc[-1]


def rollback(registry: Registry, con: duckdb.DuckDBPyConnection, reason: str, dagster_run_id: str) -> tuple[str, str]:
    """Move @champion back to the champion before it; returns (from version, to version)."""
    current = registry.alias_version(CHAMPION)
    if current is None:
        raise ValueError(f"registered model {registry.model_name!r} has no @champion to roll back")
    history = read_history(con, registry.model_name)
    target = previous_champion(history, current)
    if target is None:
        raise ValueError(f"no previous champion of {registry.model_name!r} before version {current} in "
                         "promotion_history")
    registry.set_alias(CHAMPION, target)
    record_history(con, model_name=registry.model_name, action="rollback", candidate_version=target,
                   previous_champion=current, champion_after=target, reason=reason, dagster_run_id=dagster_run_id)
    return current, target


@dataclass(frozen=True)
class LiveEvidence:
    """Champion and challenger judged on the gate's metric on the same labelled rows of the days both scored
    (shadow mode). The `*_roc_auc` fields hold the gate's metric (ROC AUC for a binary system)."""

    champion: str
    challenger: str
    days: list[str]
    rows: int
    champion_roc_auc: float
    challenger_roc_auc: float
    higher_is_better: bool = True

    @property
    def improvement(self) -> float:
        gain = self.challenger_roc_auc - self.champion_roc_auc
        return gain if self.higher_is_better else -gain


def live_evidence(system: System, con: duckdb.DuckDBPyConnection, champion: str, challenger: str,
                  last_days: int) -> LiveEvidence:
    """The last `last_days` labelled days on which both versions scored every row, from `batch_predictions`
    (roles champion and challenger) joined to the labels in `features`."""
    from mlsys_assets.core.evaluation import metrics

    key, label, score = system.features.id_column, system.prediction.label, system.score_column
    frame = con.execute(f"""
        WITH both_scored AS (
            SELECT c.partition_date, c."{key}", c."{score}" AS champion, s."{score}" AS challenger
            FROM batch_predictions c JOIN batch_predictions s USING (partition_date, "{key}")
            WHERE c.role = 'champion' AND c.model_version = ? AND s.role = 'challenger' AND s.model_version = ?),
        days AS (SELECT DISTINCT b.partition_date FROM both_scored b
                 JOIN features f USING (partition_date, "{key}")
                 -- labels land a day late: a day counts once a later day's features exist
                 WHERE b.partition_date < (SELECT max(partition_date) FROM features)
                 ORDER BY 1 DESC LIMIT ?)
        SELECT b.partition_date, b.champion, b.challenger, f."{label}" AS label
        FROM both_scored b JOIN features f USING (partition_date, "{key}")
        WHERE b.partition_date IN (SELECT partition_date FROM days)""", [champion, challenger, last_days]).df()
    days = sorted({str(d)[:10] for d in frame["partition_date"]})
    labels, metric = frame["label"].to_numpy(dtype=float), system.gate.metric
    if len(frame) == 0:
        return LiveEvidence(champion, challenger, days, 0, float("nan"), float("nan"), system.higher_is_better)
    return LiveEvidence(champion, challenger, days, len(frame),
                        metrics(system, labels, frame["champion"].to_numpy())[metric],
                        metrics(system, labels, frame["challenger"].to_numpy())[metric], system.higher_is_better)


def promote_challenger(system: System, registry: Registry, con: duckdb.DuckDBPyConnection, min_days: int,
                       min_improvement: float, last_days: int, dagster_run_id: str) -> tuple[LiveEvidence, bool]:
    """Make @challenger the champion if, on the same live flights, it beat the champion by `min_improvement`
    ROC AUC over at least `min_days` labelled days. Either way the decision and its numbers go to history."""
    champion, challenger = registry.alias_version(CHAMPION), registry.alias_version(CHALLENGER)
    if champion is None or challenger is None:
        raise ValueError(f"registered model {registry.model_name!r} needs both @champion and @challenger "
                         f"(has champion {champion}, challenger {challenger})")
    evidence = live_evidence(system, con, champion, challenger, last_days)
    numbers = (f"live {system.gate.metric} {evidence.challenger_roc_auc:.4f} vs champion "
               f"{evidence.champion_roc_auc:.4f} on "
               f"{evidence.rows} rows of {len(evidence.days)} days")
    promote = len(evidence.days) >= min_days and bool(evidence.improvement >= min_improvement)
    if len(evidence.days) < min_days:
        reason = f"keep: {numbers}; {min_days} labelled days of shadow scores needed"
    elif not promote:
        reason = f"keep: {numbers}: improvement {evidence.improvement:+.4f} < required {min_improvement}"
    else:
        reason = f"promote on live evidence: {numbers}: improvement {evidence.improvement:+.4f}"
        registry.set_alias(CHAMPION, challenger)
        registry.delete_alias(CHALLENGER)
    record_history(con, model_name=registry.model_name, action="promote_live" if promote else "keep_live",
                   candidate_version=challenger, previous_champion=champion,
                   champion_after=challenger if promote else champion, reason=reason, dagster_run_id=dagster_run_id,
                   primary_metric=f"live_{system.gate.metric}", candidate_value=evidence.challenger_roc_auc,
                   champion_value=evidence.champion_roc_auc,
                   details={"days": evidence.days, "rows": evidence.rows})
    return evidence, promote
