"""The code location: every stage's assets, checks, jobs and resources, assembled in one place."""

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from mlsys_assets.features import flight_features
from mlsys_assets.ingestion import raw_flights, raw_weather
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.predictions import batch_predictions
from mlsys_assets.resources import LandingZone, MlflowStore, QualityPolicy, TrainingPolicy, Warehouse
from mlsys_assets.training import (
    candidate_model,
    champion_model,
    model_evaluation,
    rollback_champion,
    training_set,
)
from mlsys_assets.validation import validate_flights, validate_weather

daily_pipeline = define_asset_job(
    "daily_pipeline",
    selection=AssetSelection.groups("ingestion", "validation", "features", "predictions"),
    partitions_def=daily_partitions,
    description="One day of the feed: landing files -> raw -> validated (and quarantined) -> features -> "
                "batch predictions.",
)
batch_scoring = define_asset_job(
    "batch_scoring",
    selection=AssetSelection.assets("batch_predictions"),
    partitions_def=daily_partitions,
    description="Rescore days with the current champion (after a promotion or a rollback).",
)
retraining = define_asset_job(
    "retraining",
    selection=AssetSelection.groups("training"),
    description="Training set -> candidate -> evaluation against the champion -> promotion gate.",
)



def build_defs() -> Definitions:
    """The definitions, with resources read from the environment as it is now (tests build their own)."""
    return Definitions(
        assets=[raw_flights, raw_weather, validate_flights, validate_weather, flight_features, training_set,
                candidate_model, model_evaluation, champion_model, batch_predictions],
        jobs=[daily_pipeline, batch_scoring, retraining, rollback_champion],
        resources={
            "warehouse": Warehouse.from_env(),
            "landing": LandingZone.from_env(),
            "quality": QualityPolicy.from_env(),
            "mlflow_store": MlflowStore.from_env(),
            "training": TrainingPolicy.from_env(),
        },
        executor=in_process_executor,
    )


defs = build_defs()
