"""Serving assets: what the server reads (each lookup source's rows and the baseline rates, published as files,
because the server may never open the single-process DuckDB warehouse), and what it served (its prediction log,
ingested)."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from mlsys_assets.automation import condition_for
from mlsys_assets.core.warehouse import PartitionWrite, read_days, read_frame, replace_partitions, table_exists
from mlsys_assets.declaration import Source
from mlsys_assets.metadata import accounted, markdown_table, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.resources import Warehouse


def lookup_asset(names: Names, source: Source) -> AssetsDefinition:
    @asset(
        key=names.key(f"online_{source.name}"),
        automation_condition=condition_for(names, f"online_{source.name}"),
        partitions_def=names.partitions,
        deps=[names.key(f"validated_{source.name}")],
        group_name=names.group("serving"),
        kinds={"duckdb", "parquet"},
        owners=names.owners,
        pool="warehouse",
        description=f"The partition's validated {source.name} rows, published to `<MLSYS_ONLINE_DIR>/{names.name}/"
                    f"{source.name}/<partition>.parquet` (written atomically) for the server to look up by "
                    f"{', '.join(source.lookup_key)} exactly as the features join them in batch.",
    )
    @accounted
    def _lookup(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        import pandas as pd

        from mlsys_assets.core.online import lookup_path, publish_lookup
        from mlsys_assets.core.sources import columns_of

        day = context.partition_key
        with warehouse.get_connection(names.system) as con:
            rows = read_days(con, f"validated_{source.name}", [day], order_by=["source_row"])
        columns = columns_of(source).names
        if rows.empty:
            rows = pd.DataFrame(columns=list(columns))
        path = publish_lookup(lookup_path(names.name, source.name, day), rows, columns)
        published = pd.read_parquet(path)
        return MaterializeResult(metadata={**table_metadata(published), "path": MetadataValue.path(str(path))})

    return _lookup


def serving_assets(names: Names) -> list[AssetsDefinition]:
    """One published lookup per lookup source, the published baseline, and the served predictions."""
    system = names.system

    @asset(key=names.key("online_baseline"), deps=[names.key("training_set")], group_name=names.group("serving"),
           automation_condition=condition_for(names, "online_baseline"),
           kinds={"duckdb", "parquet"}, owners=names.owners, pool="warehouse")
    @accounted
    def online_baseline(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        """The baseline's rates (table `baseline_rates`, fitted by training_set), published for the server's
        fallback. Until training has run there is nothing to publish, and the server falls back to a constant."""
        from mlsys_assets.core.online import publish_baseline

        with warehouse.get_connection(names.system) as con:
            rates = read_frame(con, "SELECT * FROM baseline_rates") if table_exists(con, "baseline_rates") else None
        if rates is None:
            context.log.warning("no baseline_rates table yet (materialize training_set): nothing published")
            return MaterializeResult(metadata={"published": False})
        path = publish_baseline(rates, names.name)
        return MaterializeResult(metadata={
            **table_metadata(rates),
            "published": True,
            "path": MetadataValue.path(str(path)),
            "global_rate": float(rates["global_rate"].iloc[0]) if len(rates) else float("nan"),
        })

    @asset(
        key=names.key("served_predictions"),
        partitions_def=names.partitions,
        group_name=names.group("serving"),
        kinds={"duckdb", "json"},
        owners=names.owners,
        pool="warehouse",
        metadata={"partition_expr": "partition_date", "table": names.table("served_predictions")},
    )
    @accounted
    def served_predictions(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        """Every prediction `mlsys serve` answered (and shadow-scored) for the partition's entities, from its JSON-lines
        log (`<MLSYS_PREDICTION_LOG_DIR>/<system>/<partition>/*.jsonl`): request, features, score, model version,
        role, latency. Rematerializing a partition replaces it with what the log holds now."""
        from mlsys_assets.core.online import prediction_log_dir
        from mlsys_assets.core.server.predictionlog import read_prediction_log

        day = context.partition_key
        spec = system.features
        folder = prediction_log_dir() / names.name
        frame, read = read_prediction_log(day, folder, spec.categorical, spec.numeric, spec.id_column,
                                          system.score_column)
        with warehouse.get_connection(names.system) as con:
            replace_partitions(con, [PartitionWrite("served_predictions", frame, day)])
        if read["bad_lines"]:
            context.log.warning(f"{read['bad_lines']} log lines for {day} were not whole records and were skipped")
        champion = frame[frame["role"] == "champion"]
        models = frame.groupby(["role", "model_version"]).size().rename("rows").reset_index()
        return MaterializeResult(metadata={
            **table_metadata(frame.drop(columns=["request"])),
            "log_dir": MetadataValue.path(str(folder / day)),
            "files": read["files"],
            "bad_lines": read["bad_lines"],
            "models": markdown_table(models),
            "requests": int(frame["request_id"].nunique()),
            "fallback_rate": float(champion["is_fallback"].mean()) if len(champion) else 0.0,
            "p50_latency_ms": float(champion["latency_ms"].median()) if len(champion) else float("nan"),
            "p99_latency_ms": float(champion["latency_ms"].quantile(0.99)) if len(champion) else float("nan"),
        })

    return [*(lookup_asset(names, source) for source in system.lookups), online_baseline, served_predictions]
