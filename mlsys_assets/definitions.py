"""The code location: every stage's assets, checks, jobs and resources, assembled in one place."""

from dagster import AssetSelection, AutomationCondition, Definitions, define_asset_job

from mlsys_assets.automation import (
    alerts,
    automate,
    automation_sensor,
    check_failure_alert_sensor,
    daily_monitoring_schedule,
    landing_files_sensor,
    retraining_sensor,
    run_failure_alert_sensor,
    weekly_retraining_schedule,
    when_all_upstream_days_exist,
    when_upstream_day_updates,
)
from mlsys_assets.deployment import executor_from_env
from mlsys_assets.features import flight_features
from mlsys_assets.ingestion import raw_flights, raw_weather
from mlsys_assets.monitoring import monitoring_assets
from mlsys_assets.predictions import batch_predictions
from mlsys_assets.resources import (
    AutomationPolicy,
    LandingZone,
    MlflowStore,
    MonitoringPolicy,
    QualityPolicy,
    TrainingPolicy,
    Warehouse,
)
from mlsys_assets.serving import online_baseline, online_weather, served_predictions
from mlsys_assets.training import (
    candidate_model,
    champion_model,
    model_evaluation,
    review_challenger,
    rollback_champion,
    training_set,
)
from mlsys_assets.validation import validate_flights, validate_weather

daily_pipeline = define_asset_job(
    "daily_pipeline",
    selection=AssetSelection.groups("ingestion", "validation", "features", "predictions")
    | AssetSelection.assets("online_weather"),
    description="One day of the feed: landing files -> raw -> validated (and quarantined) -> features -> "
                "batch predictions, and the day's weather published for serving.",
)
batch_scoring = define_asset_job(
    "batch_scoring",
    selection=AssetSelection.assets("batch_predictions"),
    description="Rescore days with the current champion (after a promotion or a rollback).",
)
retraining = define_asset_job(
    "retraining",
    selection=AssetSelection.groups("training") | AssetSelection.assets("online_baseline"),
    description="Training set -> candidate -> evaluation against the champion -> promotion gate; the baseline "
                "rates republished for serving.",
)


def build_defs() -> Definitions:
    """The definitions, with resources read from the environment as it is now (tests build their own)."""
    defs = Definitions(
        assets=[raw_flights, raw_weather, validate_flights, validate_weather, flight_features, training_set,
                candidate_model, model_evaluation, champion_model, batch_predictions, *monitoring_assets,
                online_weather, online_baseline, served_predictions, alerts],
        jobs=[daily_pipeline, batch_scoring, retraining, rollback_champion, review_challenger],
        sensors=[landing_files_sensor, automation_sensor, retraining_sensor, run_failure_alert_sensor,
                 check_failure_alert_sensor],
        schedules=[daily_monitoring_schedule, weekly_retraining_schedule],
        resources={
            "warehouse": Warehouse.from_env(),
            "landing": LandingZone.from_env(),
            "quality": QualityPolicy.from_env(),
            "mlflow_store": MlflowStore.from_env(),
            "training": TrainingPolicy.from_env(),
            "automation": AutomationPolicy.from_env(),
            "monitoring": MonitoringPolicy.from_env(),
        },
        executor=executor_from_env(),  # MLSYS_EXECUTOR: in_process, multiprocess or k8s; the assets stay the same
    )
    daily = when_upstream_day_updates()
    # a new drift reference (a new champion) must not recompute a year of drift: only new days are judged by it
    judged = when_upstream_day_updates(ignore=["drift_reference"])
    follows_champion = AutomationCondition.eager()
    return automate(defs, {
        **{name: daily for name in ("validated_flights", "quarantined_flights", "validated_weather",
                                    "quarantined_weather", "flight_features", "batch_predictions",
                                    "online_weather")},
        **{name: judged for name in ("feature_drift", "prediction_drift")},
        "live_performance": when_all_upstream_days_exist(ignore=["drift_reference"]),
        "drift_reference": follows_champion,
        "online_baseline": follows_champion,
    })


defs = build_defs()
