"""The features asset: a system's one feature definition applied to each validated partition of its entities,
with the lookup sources' rows of the same partition as context, and the label."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    asset,
)

from mlsys_assets.automation import condition_for
from mlsys_assets.core.warehouse import PartitionWrite, read_days, replace_partitions
from mlsys_assets.metadata import accounted, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.resources import Warehouse

ROW_PARITY_CHECK = "row_path_equals_table_path"


def features_asset(names: Names) -> AssetsDefinition:
    system = names.system
    entity, label = system.prediction.entity, system.prediction.label
    key = names.key("features")
    checks = [AssetCheckSpec(ROW_PARITY_CHECK, asset=key, partitions_def=names.partitions,
                             description=f"The declared row-wise executor ({system.features.row.path}) gives what "
                                         "the table one gives, on rows of the partition: what the server's fast path "
                                         "answers is what batch scoring stores.")] if system.features.row else []

    @asset(
        key=names.key("features"),
        automation_condition=condition_for(names, "features"),
        partitions_def=names.partitions,
        deps=[names.key(f"validated_{source.name}") for source in system.sources],
        group_name=names.group("features"),
        kinds={"duckdb", "pandas"},
        owners=names.owners,
        pool="warehouse",
        metadata={"partition_expr": "partition_date", "table": names.table("features")},
        check_specs=checks,
        description=f"Features of each validated `{entity}` row of the partition ({len(system.features.columns)} "
                    f"columns, from `{system.features.build.path}`) and its label `{label}`; the same definition "
                    "serves training, batch scoring and the online server.",
    )
    @accounted
    def _features(context: AssetExecutionContext, warehouse: Warehouse):
        from mlsys_assets.core.featurize import build_features, row_parity

        day = context.partition_key
        with warehouse.get_connection(names.system) as con:
            rows = read_days(con, f"validated_{entity}", [day], order_by=["source_row"])
            context_rows = {source.name: read_days(con, f"validated_{source.name}", [day], order_by=["source_row"])
                            for source in system.lookups}
        features = build_features(system, rows, context_rows)
        with warehouse.get_connection(names.system) as con:
            replace_partitions(con, [PartitionWrite("features", features, day)])
        labelled = features[label].dropna()
        yield MaterializeResult(metadata={
            **table_metadata(features),
            "label_mean": float(labelled.astype(float).mean()) if len(labelled) else float("nan"),
            "labelled_rows": len(labelled),
        })
        if checks:
            compared, problems = row_parity(system, rows, features, context_rows)
            yield AssetCheckResult(check_name=ROW_PARITY_CHECK, asset_key=key, passed=not problems,
                                   severity=AssetCheckSeverity.ERROR,
                                   metadata={"rows_compared": compared, "disagreements": "; ".join(problems) or "none"})

    return _features
