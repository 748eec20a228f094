"""Validated and quarantined tables: every raw row lands in exactly one of them, with reasons for the latter."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    AssetsDefinition,
    MaterializeResult,
    multi_asset,
)

from mlsys_assets.automation import condition_for
from mlsys_assets.core.warehouse import PartitionWrite, count_rows, read_days, replace_partitions
from mlsys_assets.declaration import Source
from mlsys_assets.metadata import accounted, markdown_table, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.resources import QualityPolicy, Warehouse


def validation_asset(names: Names, source: Source) -> AssetsDefinition:
    raw, valid, quarantine = f"raw_{source.name}", f"validated_{source.name}", f"quarantined_{source.name}"
    valid_key = names.key(valid)
    partitions = names.partitions

    @multi_asset(
        name=f"{names.name}__validate_{source.name}",
        outs={
            valid: AssetOut(
                key=valid_key, automation_condition=condition_for(names, valid),
                description=f"{source.name.capitalize()} rows that pass every rule of the pandera schema.",
                kinds={"duckdb", "pandera"}, owners=names.owners, metadata={"partition_expr": "partition_date"}),
            quarantine: AssetOut(
                key=names.key(quarantine), automation_condition=condition_for(names, quarantine),
                description=(f"{source.name.capitalize()} rows that broke a rule, kept whole with the checks, "
                             "columns and values that failed and a readable reason."),
                kinds={"duckdb", "pandera"}, owners=names.owners, metadata={"partition_expr": "partition_date"}),
        },
        deps=[names.key(raw)],
        partitions_def=partitions,
        group_name=names.group("validation"),
        pool="warehouse",
        check_specs=[
            AssetCheckSpec("no_rows_lost", asset=valid_key, blocking=True, partitions_def=partitions,
                           description=f"Every row of {raw} for the partition is in {valid} or {quarantine}."),
            AssetCheckSpec("quarantine_rate_below_threshold", asset=valid_key, partitions_def=partitions,
                           description="The share of the partition's rows quarantined stays under "
                                       + (f"{source.max_quarantine_rate:.0%}, the feed's declared limit."
                                          if source.max_quarantine_rate is not None else "the policy's limit.")),
            *([AssetCheckSpec("row_checks_equal_schema_rules", asset=valid_key, partitions_def=partitions,
                              description="The declared row twins of the rules across columns (the server's fast "
                                          "form) give each rule's verdict on every row it fails and a sample of the "
                                          "others.")] if source.row_checks else []),
        ],
    )
    @accounted
    def _validate(context: AssetExecutionContext, warehouse: Warehouse, quality: QualityPolicy):
        from mlsys_assets.core.validation import row_check_parity, validate_rows

        day = context.partition_key
        with warehouse.get_connection(names.system) as con:
            rows = read_days(con, raw, [day], order_by=["source_row"]).drop(columns=["partition_date"])
        result = validate_rows(rows.drop(columns=["ingested_at", "ingested_by_run"], errors="ignore"), names.system,
                               source, day)
        with warehouse.get_connection(names.system) as con:
            replace_partitions(con, [PartitionWrite(valid, result.valid, day),
                                     PartitionWrite(quarantine, result.quarantined, day)])
            counts = {table: count_rows(con, table, day) for table in (raw, valid, quarantine)}
        reasons = result.reason_counts()
        rate = counts[quarantine] / counts[raw] if counts[raw] else 0.0
        limit = quality.max_quarantine_rate if source.max_quarantine_rate is None else source.max_quarantine_rate
        yield MaterializeResult(asset_key=valid_key, metadata={
            **table_metadata(result.valid), "quarantined_rows": counts[quarantine], "quarantine_rate": rate})
        yield MaterializeResult(asset_key=names.key(quarantine), metadata={
            **table_metadata(result.quarantined[["source_row", "reason"]] if len(result.quarantined)
                             else result.quarantined),
            "reasons": markdown_table(reasons, max_rows=20), "quarantine_rate": rate})
        yield AssetCheckResult(
            check_name="no_rows_lost", asset_key=valid_key,
            passed=counts[raw] == counts[valid] + counts[quarantine],
            metadata={"raw_rows": counts[raw], "validated_rows": counts[valid],
                      "quarantined_rows": counts[quarantine]})
        yield AssetCheckResult(
            check_name="quarantine_rate_below_threshold", asset_key=valid_key,
            passed=rate <= limit, severity=AssetCheckSeverity.WARN,
            metadata={"quarantine_rate": rate, "threshold": limit,
                      "threshold_from": "the policy" if source.max_quarantine_rate is None else "the declaration",
                      "top_reasons": markdown_table(reasons, max_rows=5)})
        if source.row_checks:
            compared, problems = row_check_parity(rows.drop(columns=["ingested_at", "ingested_by_run"],
                                                            errors="ignore"), source)
            yield AssetCheckResult(
                check_name="row_checks_equal_schema_rules", asset_key=valid_key, passed=not problems,
                metadata={"rows_compared": compared, "disagreements": "\n".join(problems) or "none"})

    return _validate


def validation_assets(names: Names) -> list[AssetsDefinition]:
    return [validation_asset(names, source) for source in names.system.sources]
