"""Real Dagster runs of the daily pipeline into a temporary MLSYS_HOME (DuckDB file, SQLite instance)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dagster import AssetKey

from mlsys_assets.core.sources import file_for
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, query, run_day

FLIGHTS = FLIGHTS_SYSTEM.source("flights")

TABLES = ("raw_flights", "validated_flights", "quarantined_flights", "raw_weather", "validated_weather",
          "quarantined_weather", "features")


def counts(home: Path, day: str) -> dict[str, int]:
    return {t: query(home, f"SELECT count(*) FROM {t} WHERE partition_date = ?", [day])[0][0] for t in TABLES}


def check_results(instance, asset: str, check: str) -> list[bool]:
    from dagster import AssetCheckKey

    records = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(AssetKey(["flights", asset]), check), limit=10)
    return [r.status.value == "SUCCEEDED" for r in records if r.status.value != "PLANNED"]


def test_days_flow_through_and_a_rerun_changes_nothing(defs, instance, mlsys_home: Path) -> None:
    first = run_day(defs, instance, DAYS[1])
    assert first.success
    before = counts(mlsys_home, DAYS[1])
    landed = len(file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, FLIGHTS, DAYS[1]).read_text().splitlines()) - 1
    assert before["raw_flights"] == landed
    assert before["raw_flights"] == before["validated_flights"] + before["quarantined_flights"]
    assert before["features"] == before["validated_flights"]
    assert before["quarantined_weather"] == 1  # the 1048 mph wind reading of 2013-02-12

    again = run_day(defs, instance, DAYS[1])
    assert again.success
    assert counts(mlsys_home, DAYS[1]) == before
    assert query(mlsys_home, "SELECT count(DISTINCT flight_id) = count(*) FROM features")[0][0]

    materialization = instance.get_latest_materialization_event(
        AssetKey(["flights", "validated_flights"])).asset_materialization
    assert materialization.partition == DAYS[1]
    assert materialization.metadata["dagster/row_count"].value == before["validated_flights"]
    assert check_results(instance, "validated_flights", "no_rows_lost") == [True, True]
    assert check_results(instance, "features", "row_path_equals_table_path") == [True, True]  # the engine ran it


def test_a_corrupt_file_fails_its_day_only(defs, instance, mlsys_home: Path) -> None:
    bad = file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, FLIGHTS, DAYS[0])
    bad.write_bytes(bad.read_bytes()[:-25])

    failed = run_day(defs, instance, DAYS[0])
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert str(bad) in message and "truncated" in message
    assert not query(mlsys_home, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'flights' "
                           "AND table_name = 'validated_flights'")[0][0]

    assert run_day(defs, instance, DAYS[1]).success
    assert counts(mlsys_home, DAYS[1])["features"] > 0


def test_bad_rows_are_quarantined_with_reasons_and_counts_conserved(defs, instance, mlsys_home: Path) -> None:
    path = file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, FLIGHTS, DAYS[0])
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, "carrier"] = "ZZ"
    frame.loc[1, "dep_delay"] = "late"
    frame = pd.concat([frame, frame.iloc[[2]]], ignore_index=True)
    frame.to_csv(path, index=False)

    assert run_day(defs, instance, DAYS[0]).success
    got = counts(mlsys_home, DAYS[0])
    assert got["raw_flights"] == len(frame)
    assert got["quarantined_flights"] == 3
    assert got["validated_flights"] == len(frame) - 3
    reasons = dict(query(mlsys_home, "SELECT source_row, reason FROM quarantined_flights ORDER BY source_row"))
    assert "carrier failed isin" in reasons[2]
    assert reasons[3] == "dep_delay='late': not a number"
    assert "unique_key" in query(mlsys_home, "SELECT failed_checks FROM quarantined_flights WHERE source_row = ?",
                                 [len(frame) + 1])[0][0]
    assert check_results(instance, "validated_flights", "no_rows_lost") == [True]


def test_schema_change_missing_column_fails_extra_column_is_kept(defs, instance, mlsys_home: Path) -> None:
    path = file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, FLIGHTS, DAYS[0])
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(columns=["tailnum"]).to_csv(path, index=False)
    failed = run_day(defs, instance, DAYS[0])
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert "missing columns ['tailnum']" in failure.event_specific_data.error.to_string()

    frame.assign(gate="B12").to_csv(path, index=False)
    assert run_day(defs, instance, DAYS[0]).success
    assert query(mlsys_home, "SELECT DISTINCT extra_fields FROM raw_flights") == [('{"gate": "B12"}',)]
    assert counts(mlsys_home, DAYS[0])["validated_flights"] == len(frame)


def test_every_materialization_records_its_cost_beside_its_own_metadata(defs, instance, mlsys_home: Path) -> None:
    result = run_day(defs, instance, DAYS[0])
    assert result.success
    materialized = {e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
                    for e in result.get_asset_materialization_events()}
    assert set(materialized) >= {"flights/raw_flights", "flights/validated_flights", "flights/quarantined_flights",
                                 "flights/features", "flights/batch_predictions", "flights/online_weather"}
    for asset, metadata in materialized.items():
        assert metadata["cost/seconds"].value > 0, asset
        assert 50 < metadata["cost/peak_rss_mb"].value < 8000, asset
        assert "dagster/row_count" in metadata, asset  # its own metadata is kept
    # validation is one step for two assets, so both carry that step's cost
    assert (materialized["flights/validated_flights"]["cost/seconds"]
            == materialized["flights/quarantined_flights"]["cost/seconds"])


def test_the_embedded_instance_writes_dagsters_own_files_without_an_fsync_per_event(
        defs, instance, mlsys_home: Path) -> None:
    from dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log import (
        ConsolidatedSqliteEventLogStorage,
    )
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    from mlsys_assets.instance_storage import EmbeddedEventLogStorage, EmbeddedRunStorage, EmbeddedScheduleStorage

    assert isinstance(instance.run_storage, EmbeddedRunStorage)
    assert isinstance(instance.event_log_storage, EmbeddedEventLogStorage)
    assert isinstance(instance.schedule_storage, EmbeddedScheduleStorage)
    result = run_day(defs, instance, DAYS[0])
    assert result.success
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        with storage.index_connection() if isinstance(storage, EmbeddedEventLogStorage) else storage.connect() \
                as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    history = str(mlsys_home / "dagster" / "history")
    theirs = ConsolidatedSqliteEventLogStorage(history)  # Dagster's own classes read the same files
    assert len(theirs.get_records_for_run(result.run_id, limit=10_000).records) == len(
        instance.event_log_storage.get_records_for_run(result.run_id, limit=10_000).records) > 20
    assert SqliteRunStorage.from_local(history).get_run_records()[0].dagster_run.is_success
