"""Raw assets: each day's landing file, loaded as it came into DuckDB (one partition per day)."""

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
from mlsys_assets.core.sources import FLIGHTS, WEATHER, Source
from mlsys_assets.core.warehouse import PartitionWrite, replace_partitions
from mlsys_assets.metadata import accounted, table_metadata
from mlsys_assets.partitions import daily_partitions
from mlsys_assets.resources import LandingZone, Warehouse

OWNERS = ["team:ml-platform"]


def raw_asset(source: Source) -> AssetsDefinition:
    @asset(
        name=f"raw_{source.name}",
        partitions_def=daily_partitions,
        group_name="ingestion",
        kinds={"duckdb", "csv"},
        owners=OWNERS,
        pool="warehouse",
        description=(f"The day's {source.name} landing file (`landing/{source.name}/<day>.csv`) as delivered: typed "
                     "columns, the file and line each row came from, values that did not parse kept with the "
                     "problem. Rematerializing a day replaces exactly that day."),
        metadata={"partition_expr": "partition_date", "table": f"raw_{source.name}"},
    )
    @accounted
    def _raw(context: AssetExecutionContext, warehouse: Warehouse, landing: LandingZone) -> MaterializeResult:
        day = context.partition_key
        path = landing.file_for(source, day)
        try:
            landed = read_landing_file(path, source)
        except LandingFileError as exc:
            raise Failure(description=f"Landing file rejected: {exc}",
                          metadata={"file": MetadataValue.path(exc.path), "problem": exc.problem}) from exc
        frame = landed.frame.assign(ingested_at=context.run.run_id)
        with warehouse.get_connection() as con:
            replace_partitions(con, [PartitionWrite(f"raw_{source.name}", frame, day)])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if landed.extra_columns:
            context.log.warning(f"{path}: extra columns kept in extra_fields: {landed.extra_columns}")
        return MaterializeResult(
            data_version=DataVersion(digest[:16]),
            metadata={
                **table_metadata(frame.drop(columns=["ingested_at"])),
                "file": MetadataValue.path(str(path)),
                "file_sha256": digest,
                "rows_with_unparsed_values": landed.parse_error_rows,
                "extra_columns": ", ".join(landed.extra_columns) or "none",
            },
        )

    return _raw


raw_flights = raw_asset(FLIGHTS)
raw_weather = raw_asset(WEATHER)
