"""The code location: every stage's assets, checks, jobs and resources, assembled in one place."""

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from mlsys_assets.features import flight_features
from mlsys_assets.ingestion import raw_flights, raw_weather
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.resources import LandingZone, QualityPolicy, Warehouse
from mlsys_assets.validation import validate_flights, validate_weather

daily_pipeline = define_asset_job(
    "daily_pipeline",
    selection=AssetSelection.groups("ingestion", "validation", "features"),
    partitions_def=daily_partitions,
    description="One day of the feed: landing files -> raw -> validated (and quarantined) -> features.",
)



def build_defs() -> Definitions:
    """The definitions, with resources read from the environment as it is now (tests build their own)."""
    return Definitions(
        assets=[raw_flights, raw_weather, validate_flights, validate_weather, flight_features],
        jobs=[daily_pipeline],
        resources={
            "warehouse": Warehouse.from_env(),
            "landing": LandingZone.from_env(),
            "quality": QualityPolicy.from_env(),
        },
        executor=in_process_executor,
    )


defs = build_defs()
