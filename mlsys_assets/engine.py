"""The engine: one declared system in, its whole Dagster graph out (assets, checks, jobs, sensors, schedules and
automation), every name namespaced by the system so several systems share one code location."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from mlsys_assets.automation import system_schedules, system_sensors
from mlsys_assets.declaration import System
from mlsys_assets.features import features_asset
from mlsys_assets.ingestion import ingestion_assets
from mlsys_assets.monitoring import monitoring_assets
from mlsys_assets.naming import Names
from mlsys_assets.predictions import predictions_asset
from mlsys_assets.promotion import lifecycle_jobs
from mlsys_assets.serving import serving_assets
from mlsys_assets.training import training_assets
from mlsys_assets.validation import validation_assets


def system_definitions(system: System) -> Definitions:
    """Everything the engine generates for one system, automation conditions attached (resources and executor are
    the code location's)."""
    names = Names(system)
    assets = [*ingestion_assets(names), *validation_assets(names), features_asset(names), *training_assets(names),
              predictions_asset(names), *monitoring_assets(names), *serving_assets(names)]
    lookups = [names.key(f"online_{source.name}") for source in system.lookups]
    groups = [names.group(stage) for stage in ("ingestion", "validation", "features", "predictions")]
    jobs = [
        define_asset_job(
            names.job("daily_pipeline"), selection=AssetSelection.groups(*groups) | AssetSelection.assets(*lookups),
            description="One partition of the feed: landing files -> raw -> validated (and quarantined) -> features "
                        "-> batch predictions, and the lookups published for serving."),
        define_asset_job(
            names.job("batch_scoring"), selection=AssetSelection.assets(names.key("batch_predictions")),
            description="Rescore partitions with the current champion (after a promotion or a rollback)."),
        define_asset_job(
            names.job("retraining"),
            selection=AssetSelection.groups(names.group("training")) | AssetSelection.assets(
                names.key("online_baseline")),
            description="Training set -> candidate -> evaluation against the champion -> promotion gate; the "
                        "baseline republished for serving."),
        *lifecycle_jobs(names),
    ]
    return Definitions(assets=assets, jobs=jobs, sensors=system_sensors(names), schedules=system_schedules(names))
