"""Feature assets: the shared feature definition applied to each validated day."""

from dagster import AssetExecutionContext, MaterializeResult, asset

from mlsys_assets.core.features import LABEL, build_features
from mlsys_assets.core.warehouse import PartitionWrite, read_days, replace_partitions
from mlsys_assets.ingestion import OWNERS
from mlsys_assets.metadata import accounted, table_metadata
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.resources import Warehouse


@asset(
    partitions_def=daily_partitions,
    deps=["validated_flights", "validated_weather"],
    group_name="features",
    kinds={"duckdb", "pandas"},
    owners=OWNERS,
    pool="warehouse",
    metadata={"partition_expr": "partition_date"},
)
@accounted
def flight_features(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    """Pre-departure features of each validated flight of the day, with the weather at its origin and
    scheduled hour, and the label `is_delayed` (arrived over 15 minutes late, cancelled or diverted).
    The same `core.features.build_features` serves training, batch scoring and the online server."""
    day = context.partition_key
    with warehouse.get_connection() as con:
        flights = read_days(con, "validated_flights", [day], order_by=["source_row"])
        weather = read_days(con, "validated_weather", [day], order_by=["source_row"])
    features = build_features(flights, weather)
    with warehouse.get_connection() as con:
        replace_partitions(con, [PartitionWrite("flight_features", features, day)])
    return MaterializeResult(metadata={
        **table_metadata(features),
        "delayed_rate": float(features[LABEL].mean()) if len(features) else 0.0,
        "weather_missing_rate": float(features["weather_missing"].mean()) if len(features) else 0.0,
    })
