"""Batch predictions: each day's features scored by the champion, or by the baseline when there is none."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from mlsys_assets.core.warehouse import PartitionWrite, read_days, read_frame, replace_partitions, table_exists
from mlsys_assets.ingestion import OWNERS
from mlsys_assets.metadata import accounted, table_metadata
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.resources import MlflowStore, TrainingPolicy, Warehouse


def load_baseline(warehouse: Warehouse, before_day: str):
    """The published baseline, else one fitted on the feature days before `before_day` (never the day itself)."""
    import pandas as pd

    from mlsys_assets.core.model import RateBaseline, fit_baseline

    with warehouse.get_connection() as con:
        if table_exists(con, "baseline_rates"):
            return RateBaseline.from_frame(read_frame(con, "SELECT * FROM baseline_rates"))
        if table_exists(con, "flight_features"):
            history = read_frame(con, "SELECT * FROM flight_features WHERE partition_date < CAST(? AS DATE)",
                                 [before_day])
            return fit_baseline(history)
    return fit_baseline(pd.DataFrame(columns=["carrier", "dep_hour_band", "is_delayed"]))


@asset(
    partitions_def=daily_partitions,
    deps=["flight_features"],
    group_name="predictions",
    kinds={"duckdb", "mlflow", "scikit-learn"},
    owners=OWNERS,
    pool="warehouse",
    metadata={"partition_expr": "partition_date"},
)
@accounted
def batch_predictions(context: AssetExecutionContext, warehouse: Warehouse, mlflow_store: MlflowStore,
                      training: TrainingPolicy) -> MaterializeResult:
    """Every flight of the day scored by the registered model's @champion: probability, predicted label,
    model name, version and MLflow run id on each row, so any prediction traces back to its model and
    training data. Without a loadable champion the baseline scores the day, and every row says so."""
    import pandas as pd

    from mlsys_assets.core.model import delay_probability
    from mlsys_assets.core.registry import CHALLENGER, CHAMPION

    day = context.partition_key
    with warehouse.get_connection() as con:
        features = read_days(con, "flight_features", [day], order_by=["flight_id"])
    registry = mlflow_store.registry()
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
        model = load_baseline(warehouse, day)

    def scored(model: object, model_version: str | None, model_run_id: str | None, role: str) -> pd.DataFrame:
        probability = delay_probability(model, features)
        return pd.DataFrame({
            "flight_id": features["flight_id"], "flight_date": features["flight_date"],
            "probability": probability,
            "predicted_label": (probability >= training.decision_threshold).astype("int64"),
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
    with warehouse.get_connection() as con:
        replace_partitions(con, [PartitionWrite("batch_predictions", pd.concat(frames, ignore_index=True), day)])
    probability = predictions["probability"]
    return MaterializeResult(metadata={
        **table_metadata(predictions),
        "model_version": version or "baseline",
        "fallback": fallback_reason or "no",
        "challenger_version": shadow,
        "mean_probability": float(probability.mean()) if len(probability) else 0.0,
        "predicted_delayed_rate": float(predictions["predicted_label"].mean()) if len(predictions) else 0.0,
        **({"model": MetadataValue.url(registry.version_url(version))} if version else {}),
    })
