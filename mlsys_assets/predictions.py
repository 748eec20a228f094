"""Batch predictions: each partition's features scored by the champion, or by the baseline when there is none."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from mlsys_assets.automation import condition_for
from mlsys_assets.core.warehouse import (
    PartitionWrite,
    partition_param,
    partition_type,
    read_days,
    read_frame,
    replace_partitions,
    table_exists,
)
from mlsys_assets.declaration import System
from mlsys_assets.metadata import accounted, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.resources import MlflowStore, Warehouse


def load_baseline(system: System, warehouse: Warehouse, before_day: str):
    """The published baseline, else one fitted on the feature days before `before_day` (never the day itself)."""
    import pandas as pd

    from mlsys_assets.core.model import RateBaseline, fit_baseline

    with warehouse.get_connection(system) as con:
        if table_exists(con, "baseline_rates"):
            return RateBaseline.from_frame(read_frame(con, "SELECT * FROM baseline_rates"), system.model.baseline_by)
        if table_exists(con, "features"):
            history = read_frame(con, f"SELECT * FROM features WHERE partition_date < CAST(? AS "
                                      f"{partition_type(before_day)})", [partition_param(before_day)])
            return fit_baseline(system, history)
    return fit_baseline(system, pd.DataFrame(columns=[*system.model.baseline_by, system.prediction.label]))


def predictions_asset(names: Names) -> AssetsDefinition:
    system = names.system

    @asset(
        key=names.key("batch_predictions"),
        automation_condition=condition_for(names, "batch_predictions"),
        partitions_def=names.partitions,
        deps=[names.key("features")],
        group_name=names.group("predictions"),
        kinds={"duckdb", "mlflow", "scikit-learn"},
        owners=names.owners,
        pool="warehouse",
        metadata={"partition_expr": "partition_date", "table": names.table("batch_predictions")},
        description=f"Every `{system.prediction.entity}` row of the partition scored by the registered model's "
                    "@champion: score, predicted label, model name, version and MLflow run id on each row, so any "
                    "prediction traces back to its model and training data. Without a loadable champion the "
                    "baseline scores the partition, and every row says so; a @challenger is scored in shadow.",
    )
    @accounted
    def batch_predictions(context: AssetExecutionContext, warehouse: Warehouse, mlflow_store: MlflowStore
                          ) -> MaterializeResult:
        return _score_partition(context, names, warehouse, mlflow_store)

    return batch_predictions


def _score_partition(context: AssetExecutionContext, names: Names, warehouse: Warehouse, mlflow_store: MlflowStore
                     ) -> MaterializeResult:
    import pandas as pd

    from mlsys_assets.core.model import scores
    from mlsys_assets.core.registry import CHALLENGER, CHAMPION

    system = names.system
    key, time = system.features.id_column, system.features.time_column
    day = context.partition_key
    with warehouse.get_connection(names.system) as con:
        features = read_days(con, "features", [day], order_by=[key])
    registry = mlflow_store.registry(system)
    version, run_id, model, fallback_reason = None, None, None, None
    try:
        registry.activate()
        version = registry.alias_version(CHAMPION)
        if version is None:
            fallback_reason = f"registered model {registry.model_name!r} has no @champion"
        else:
            model = registry.load(version)
            run_id = registry.version_ref(version).run_id
    except Exception as exc:  # any failure to reach or load the champion falls back, and says why
        fallback_reason = f"champion could not be loaded: {type(exc).__name__}: {exc}"
        version, model = None, None
    if model is None:
        context.log.warning(f"scoring {day} with the baseline: {fallback_reason}")
        model = load_baseline(system, warehouse, day)

    def scored(model: object, model_version: str | None, model_run_id: str | None, role: str) -> pd.DataFrame:
        score = scores(system, model, features)
        task = {"probability": score, "predicted_label": (score >= system.prediction.threshold).astype("int64")} \
            if system.prediction.task == "binary" else {"prediction": score}
        return pd.DataFrame({
            key: features[key], time: features[time], **task,
            "model_name": registry.model_name if model_version else "baseline",
            "model_version": model_version or "baseline", "mlflow_run_id": model_run_id, "role": role,
            "is_fallback": model_version is None, "scored_by_run": context.run.run_id,
        })

    predictions = scored(model, version, run_id, "champion")
    frames, shadow = [predictions], "none"
    if version is not None:  # a @challenger is scored in shadow, so live performance can compare the two
        try:
            challenger = registry.alias_version(CHALLENGER)
            if challenger is not None and challenger != version:
                frames.append(scored(registry.load(challenger), challenger,
                                     registry.version_ref(challenger).run_id, "challenger"))
                shadow = challenger
        except Exception as exc:  # the shadow never stops the champion's predictions
            context.log.warning(f"challenger not scored on {day}: {type(exc).__name__}: {exc}")
            shadow = f"failed: {type(exc).__name__}"
    with warehouse.get_connection(names.system) as con:
        replace_partitions(con, [PartitionWrite("batch_predictions", pd.concat(frames, ignore_index=True), day)])
    score = predictions[system.score_column]
    positive = {"predicted_positive_rate": float(predictions["predicted_label"].mean()) if len(predictions) else 0.0} \
        if system.prediction.task == "binary" else {}
    return MaterializeResult(metadata={
        **table_metadata(predictions),
        "model_version": version or "baseline",
        "fallback": fallback_reason or "no",
        "challenger_version": shadow,
        f"mean_{system.score_column}": float(score.mean()) if len(score) else 0.0,
        **positive,
        **({"model": MetadataValue.url(registry.version_url(version))} if version else {}),
    })
