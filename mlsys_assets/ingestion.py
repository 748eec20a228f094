"""Raw assets: each partition's landing file of each declared source, loaded as it came into DuckDB."""

import hashlib

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from mlsys_assets.core.landing import LandingFileError, read_landing_file
from mlsys_assets.core.warehouse import PartitionWrite, replace_partitions
from mlsys_assets.declaration import Source
from mlsys_assets.metadata import accounted, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.resources import LandingZone, Warehouse


def raw_asset(names: Names, source: Source) -> AssetsDefinition:
    @asset(
        key=names.key(f"raw_{source.name}"),
        partitions_def=names.partitions,
        group_name=names.group("ingestion"),
        kinds={"duckdb", source.format},
        owners=names.owners,
        pool="warehouse",
        description=(f"The partition's {source.name} landing file (`landing/{names.name}/{source.name}/<partition>."
                     f"{source.format}`) as delivered: typed columns, the file and line each row came from, values "
                     "that did not parse kept with the problem. Rematerializing a partition replaces exactly it. "
                     f"{source.description}"),
        metadata={"partition_expr": "partition_date", "table": names.table(f"raw_{source.name}")},
    )
    @accounted
    def _raw(context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone) -> MaterializeResult:
        day = context.partition_key
        path = landing.file_for(names.system, source, day)
        try:
            landed = read_landing_file(path, source)
        except LandingFileError as exc:
            raise Failure(description=f"Landing file rejected: {exc}",
                          metadata={"file": MetadataValue.path(exc.path), "problem": exc.problem}) from exc
        from datetime import UTC, datetime

        frame = landed.frame.assign(ingested_at=datetime.now(UTC).replace(tzinfo=None),
                                    ingested_by_run=context.run.run_id)
        with warehouse.get_connection(names.system) as con:
            replace_partitions(con, [PartitionWrite(f"raw_{source.name}", frame, day)])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if landed.extra_columns:
            context.log.warning(f"{path}: extra columns kept in extra_fields: {landed.extra_columns}")
        return MaterializeResult(
            data_version=DataVersion(digest[:16]),
            metadata={
                **table_metadata(frame.drop(columns=["ingested_at", "ingested_by_run"])),
                "file": MetadataValue.path(str(path)),
                "file_sha256": digest,
                "rows_with_unparsed_values": landed.parse_error_rows,
                "extra_columns": ", ".join(landed.extra_columns) or "none",
            },
        )

    return _raw


def ingestion_assets(names: Names) -> list[AssetsDefinition]:
    return [raw_asset(names, source) for source in names.system.sources]
