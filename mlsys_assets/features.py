"""The features asset: a system's one feature definition applied to each validated partition of its entities,
with the lookup sources' rows of the same partition as context, and the label."""

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, asset

from mlsys_assets.automation import condition_for
from mlsys_assets.core.warehouse import PartitionWrite, read_days, replace_partitions
from mlsys_assets.metadata import accounted, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.resources import Warehouse


def features_asset(names: Names) -> AssetsDefinition:
    system = names.system
    entity, label = system.prediction.entity, system.prediction.label

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
        description=f"Features of each validated `{entity}` row of the partition ({len(system.features.columns)} "
                    f"columns, from `{system.features.build.path}`) and its label `{label}`; the same definition "
                    "serves training, batch scoring and the online server.",
    )
    @accounted
    def _features(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
        from mlsys_assets.core.featurize import build_features

        day = context.partition_key
        with warehouse.get_connection(names.system) as con:
            rows = read_days(con, f"validated_{entity}", [day], order_by=["source_row"])
            context_rows = {source.name: read_days(con, f"validated_{source.name}", [day], order_by=["source_row"])
                            for source in system.lookups}
        features = build_features(system, rows, context_rows)
        with warehouse.get_connection(names.system) as con:
            replace_partitions(con, [PartitionWrite("features", features, day)])
        labelled = features[label].dropna()
        return MaterializeResult(metadata={
            **table_metadata(features),
            "label_mean": float(labelled.astype(float).mean()) if len(labelled) else float("nan"),
            "labelled_rows": len(labelled),
        })

    return _features
