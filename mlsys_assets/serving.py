"""Serving assets: what `mlsys serve` reads (weather and baseline rates published as files, because the server
may never open the single-process DuckDB warehouse), and what it served (its prediction log, ingested)."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from mlsys_assets.core.warehouse import PartitionWrite, read_days, read_frame, replace_partitions, table_exists
from mlsys_assets.ingestion import OWNERS
from mlsys_assets.metadata import accounted, markdown_table, table_metadata
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.resources import Warehouse


@asset(
    partitions_def=daily_partitions,
    deps=["validated_weather"],
    group_name="serving",
    kinds={"duckdb", "parquet"},
    owners=OWNERS,
    pool="warehouse",
)
@accounted
def online_weather(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    """The day's validated weather, published to `<MLSYS_ONLINE_DIR>/weather/<day>.parquet` (written atomically)
    for the server to join to requests exactly as `flight_features` joins it in batch."""
    import pandas as pd

    from mlsys_assets.core.online import publish_weather, weather_frame

    day = context.partition_key
    with warehouse.get_connection() as con:
        weather = read_days(con, "validated_weather", [day], order_by=["source_row"])
    if weather.empty:
        weather = weather_frame([], [])
    path = publish_weather(day, weather)
    published = pd.read_parquet(path)
    return MaterializeResult(metadata={
        **table_metadata(published),
        "path": MetadataValue.path(str(path)),
        "origins": ", ".join(sorted(published["origin"].unique())) or "none",
    })


@asset(deps=["training_set"], group_name="serving", kinds={"duckdb", "parquet"}, owners=OWNERS, pool="warehouse")
@accounted
def online_baseline(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    """The baseline's rates (table `baseline_rates`, fitted by training_set), published for the server's fallback.
    Until training has run there is nothing to publish, and the server falls back to a constant rate."""
    from mlsys_assets.core.online import publish_baseline

    with warehouse.get_connection() as con:
        rates = read_frame(con, "SELECT * FROM baseline_rates") if table_exists(con, "baseline_rates") else None
    if rates is None:
        context.log.warning("no baseline_rates table yet (materialize training_set): nothing published")
        return MaterializeResult(metadata={"published": False})
    path = publish_baseline(rates)
    return MaterializeResult(metadata={
        **table_metadata(rates),
        "published": True,
        "path": MetadataValue.path(str(path)),
        "global_rate": float(rates["global_rate"].iloc[0]) if len(rates) else float("nan"),
    })


@asset(
    partitions_def=daily_partitions,
    group_name="serving",
    kinds={"duckdb", "json"},
    owners=OWNERS,
    pool="warehouse",
    metadata={"partition_expr": "partition_date"},
)
@accounted
def served_predictions(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    """Every prediction `mlsys serve` answered (and shadow-scored) for flights of the day, from its JSON-lines log
    (`<MLSYS_PREDICTION_LOG_DIR>/<day>/*.jsonl`): request, features, probability, model version, role, latency.
    Rematerializing a day replaces it with what the log holds now."""
    from mlsys_assets.core.online import prediction_log_dir, read_prediction_log

    day = context.partition_key
    frame, read = read_prediction_log(day)
    with warehouse.get_connection() as con:
        replace_partitions(con, [PartitionWrite("served_predictions", frame, day)])
    if read["bad_lines"]:
        context.log.warning(f"{read['bad_lines']} log lines for {day} were not whole JSON and were skipped")
    champion = frame[frame["role"] == "champion"]
    models = frame.groupby(["role", "model_version"]).size().rename("rows").reset_index()
    return MaterializeResult(metadata={
        **table_metadata(frame.drop(columns=["request"])),
        "log_dir": MetadataValue.path(str(prediction_log_dir() / day)),
        "files": read["files"],
        "bad_lines": read["bad_lines"],
        "models": markdown_table(models),
        "requests": int(frame["request_id"].nunique()),
        "fallback_rate": float(champion["is_fallback"].mean()) if len(champion) else 0.0,
        "p50_latency_ms": float(champion["latency_ms"].median()) if len(champion) else float("nan"),
        "p99_latency_ms": float(champion["latency_ms"].quantile(0.99)) if len(champion) else float("nan"),
    })
