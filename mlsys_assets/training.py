"""Model lifecycle assets: training set -> candidate -> evaluation against the champion -> promotion gate."""

import warnings
from typing import TYPE_CHECKING

from dagster import (
    AssetExecutionContext,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    Output,
    asset,
)

from mlsys_assets.core.warehouse import partition_days, read_days, read_frame, replace_table, table_exists
from mlsys_assets.metadata import accounted, markdown_table, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.promotion import evaluation_assets
from mlsys_assets.resources import MlflowStore, Warehouse

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


def training_assets(names: Names) -> list:
    """training_set -> candidate_model -> model_evaluation (with the gate's blocking check) -> champion_model."""
    system = names.system
    label, key, time = system.prediction.label, system.features.id_column, system.features.time_column
    features_key = names.key("features")
    holdout_rule = f"the last {system.model.holdout} partitions"

    def load_training_set(warehouse: Warehouse) -> "pd.DataFrame":
        with warehouse.get_connection(names.system) as con:
            if not table_exists(con, "training_set"):
                raise ValueError(f"{names.table('training_set')} has not been materialized")
            return read_frame(con, f'SELECT * FROM training_set ORDER BY "{time}", "{key}"')

    @asset(
        key=names.key("training_set"),
        deps=[features_key],
        group_name=names.group("training"),
        kinds={"duckdb", "pandas"},
        owners=names.owners,
        pool="warehouse",
        description=f"The most recent {system.model.window} partitions of features, split by time ({holdout_rule} "
                    "are the holdout). Also publishes `baseline_rates`, the fallback model fitted on the train part.",
        metadata={"table": names.table("training_set")},
    )
    @accounted
    def training_set(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        from mlsys_assets.core.model import fit_baseline
        from mlsys_assets.core.training import dataset_digest, split_by_time, window_days

        with warehouse.get_connection(names.system) as con:
            days = window_days(partition_days(con, "features"), system.model.window)
            if len(days) < 2:
                raise ValueError(f"training needs at least 2 partitions of {names.table('features')}, found "
                                 f"{len(days)} in {warehouse.database}: materialize the daily pipeline first")
            features = read_days(con, "features", days, order_by=[key])
        frame = split_by_time(system, features.drop(columns=["partition_date"]), system.model.holdout)
        baseline = fit_baseline(system, frame[frame["split"] == "train"])
        with warehouse.get_connection(names.system) as con:
            replace_table(con, "training_set", frame)
            replace_table(con, "baseline_rates", baseline.to_frame())
        digest = dataset_digest(frame, key)
        by_split = frame.groupby("split").agg(rows=(label, "size"), label_mean=(label, "mean"),
                                              first_day=(time, "min"), last_day=(time, "max"))
        return MaterializeResult(
            data_version=DataVersion(digest[:16]),
            metadata={
                **table_metadata(frame),
                "days": len(days), "first_day": days[0], "last_day": days[-1],
                "source_partitions": MetadataValue.json({"asset": features_key.to_user_string(), "days": days}),
                "splits": markdown_table(by_split.reset_index()),
                "digest": digest,
            },
        )

    @asset(key=names.key("candidate_model"), deps=[names.key("training_set")], group_name=names.group("training"),
           kinds={"mlflow", "scikit-learn"}, owners=names.owners,
           description=f"The declared model ({system.model.factory.path}) fitted on the train part of training_set, "
                       "logged to MLflow with its parameters, holdout metrics, signature, input example and the "
                       "training data as a dataset input.")
    @accounted
    def candidate_model(context: AssetExecutionContext, warehouse: Warehouse, mlflow_store: MlflowStore
                        ) -> Output[dict]:
        from mlsys_assets.core.evaluation import metrics as task_metrics
        from mlsys_assets.core.featurize import feature_matrix
        from mlsys_assets.core.model import fit_pipeline, scores
        from mlsys_assets.core.registry import ModelRef, pip_requirements, trusted_types
        from mlsys_assets.core.training import dataset_digest, mlflow_dataset

        import mlflow.sklearn  # isort: skip  (after core.registry, which switches MLflow's telemetry off)
        from mlflow.models import infer_signature

        frame = load_training_set(warehouse)
        train, holdout = frame[frame["split"] == "train"], frame[frame["split"] == "holdout"]
        from mlsys_assets.core.model import effective_params

        params = effective_params(system)
        registry = mlflow_store.registry(system)
        experiment_id = registry.activate()
        first_day, last_day = frame[time].min(), frame[time].max()
        tags = run_tags(context, "candidate_model", **{"mlsys.system": names.name,
                                                       "mlsys.partition_range": f"{first_day}..{last_day}",
                                                       "mlsys.training_digest": dataset_digest(frame, key)})
        with mlflow.start_run(run_name=f"candidate {last_day}", tags=tags) as run:
            pipeline = fit_pipeline(system, train)
            metrics = task_metrics(system, holdout[label].to_numpy(), scores(system, pipeline, holdout))
            mlflow.log_params({**params, "factory": system.model.factory.path, "window_days": system.model.window,
                               "holdout_days": system.model.holdout,
                               "decision_threshold": system.prediction.threshold})
            mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()} | {"train_rows": float(len(train))})
            columns = [*system.features.columns, label, key, time]
            with warnings.catch_warnings():
                # a file path matches two MLflow source kinds (it picks the local one); the label and keys are
                # never missing, so MLflow's hint about integer columns is moot
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
                for name, part, ctx in (("train", train, "training"), ("holdout", holdout, "evaluation")):
                    logged = part[columns].reset_index(drop=True).astype({time: "str"})  # MLflow has no date type
                    dataset = mlflow_dataset(logged, name=f"training_set.{name}", targets=label,
                                             source=warehouse.database)
                    mlflow.log_input(dataset, context=ctx)
            example = feature_matrix(system, train.head(5)).reset_index(drop=True)  # the dtypes the model is given
            info = mlflow.sklearn.log_model(
                pipeline, name="model", signature=infer_signature(example, scores(system, pipeline, train.head(5))),
                input_example=example, pip_requirements=pip_requirements(),
                skops_trusted_types=trusted_types(pipeline))
        ref = ModelRef(run_id=run.info.run_id, model_uri=info.model_uri, experiment_id=experiment_id)
        return Output(ref.to_dict(), metadata={
            "mlflow_run_id": ref.run_id, "model_uri": ref.model_uri,
            "mlflow_run": MetadataValue.url(registry.run_url(experiment_id, ref.run_id)),
            "train_rows": len(train), "holdout_rows": len(holdout),
            **{f"holdout_{k}": float(v) for k, v in metrics.items() if k != "rows"},
            "params": MetadataValue.json(params),
        })

    return [training_set, candidate_model, *evaluation_assets(names, load_training_set)]
