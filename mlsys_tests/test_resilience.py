"""Crashes and concurrency against the real files: a run killed mid-write leaves each table's partition whole
(old or new), the next run succeeds with nothing duplicated, and runs in separate processes share the
single-writer DuckDB file without failing on its lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlsys_assets.core.sources import file_for
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, run_day

# An on-demand run of one day, as from the launchpad, through the in-process daemon (which, on start, recovers
# the runs of processes that died: they would hold the `warehouse` pool's slot for ever).
RUN_DAY = """
import sys
from dagster import DagsterInstance
from mlsys_assets.definitions import build_defs
from mlsys_assets.replay import InProcessDaemon
with DagsterInstance.get() as instance:
    daemon = InProcessDaemon(build_defs(), instance)
    daemon.start()
    print("ready", flush=True)
    result = daemon.run_job("flights_daily_pipeline", sys.argv[1])
print("success" if result.success else "failure", flush=True)
sys.exit(0 if result.success else 1)
"""
KEYS = {"raw_flights": "source_row", "validated_flights": "source_row", "quarantined_flights": "source_row",
        "features": "flight_id", "batch_predictions": "(flight_id, role)"}


def start_day(day: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN_DAY, day], stdout=subprocess.PIPE, stderr=log.open("wb"),
                            text=True, env=os.environ.copy())


def counts(home: Path, day: str) -> dict[str, tuple[int, int]]:
    """(rows, distinct flights) per table for the day, through a read-write connection (replays any WAL)."""
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"))
    try:
        return {table: con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM flights.{table} "
                                   "WHERE partition_date = ?", [day]).fetchone() for table, key in KEYS.items()}
    finally:
        con.close()


def keep_rows(path: Path, rows: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: rows + 1]))


@pytest.mark.slow
def test_a_run_killed_mid_write_leaves_whole_partitions_and_the_next_run_succeeds(
        defs, instance, mlsys_home: Path, tmp_path: Path) -> None:
    day = DAYS[0]
    assert run_day(defs, instance, day).success
    old = counts(mlsys_home, day)
    landed = file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, FLIGHTS_SYSTEM.source("flights"), day)
    keep_rows(landed, 300)  # the redelivered day: 300 flights
    seen = []
    for attempt, delay in enumerate((0.0, 0.3, 0.6, 1.0, 1.5, 2.5)):
        child = start_day(day, tmp_path / f"killed-{attempt}.log")
        assert child.stdout.readline().strip() == "ready"  # imports done: the run starts now
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        seen.append((delay, counts(mlsys_home, day)))

    finish = start_day(day, tmp_path / "final.log")
    assert finish.stdout.readline().strip() == "ready"
    assert finish.wait(timeout=180) == 0, (tmp_path / "final.log").read_text()[-3000:]
    new = counts(mlsys_home, day)
    assert new["raw_flights"] == (300, 300)
    assert new["validated_flights"][0] + new["quarantined_flights"][0] == 300
    assert new["features"] == new["batch_predictions"] == new["validated_flights"]
    for delay, state in seen:  # whatever the moment of the kill, each table holds the old day or the new one
        for table, (rows, distinct) in state.items():
            assert rows == distinct, f"{table}: duplicated rows after a kill at {delay} s"
            assert (rows, distinct) in (old[table], new[table]), (table, rows, delay, old[table], new[table])
    assert any(state["raw_flights"] == new["raw_flights"] for _, state in seen), "no kill came after the raw write"
    assert any(state["features"] == old["features"] for _, state in seen), "every kill came too late"
    statuses = [run.status.value for run in instance.get_runs()]
    assert "FAILURE" in statuses and "STARTED" not in statuses  # the killed runs were recovered as failed
    assert not instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots


@pytest.mark.slow
def test_runs_in_separate_processes_share_the_warehouse_without_failing_on_its_lock(
        mlsys_home: Path, tmp_path: Path) -> None:
    runs = [start_day(day, tmp_path / f"{day}.log") for day in DAYS]
    for run in runs:
        assert run.stdout.readline().strip() == "ready"
    for run, day in zip(runs, DAYS, strict=True):
        assert run.wait(timeout=240) == 0, (tmp_path / f"{day}.log").read_text()[-3000:]
    for day in DAYS:
        now = counts(mlsys_home, day)
        assert now["raw_flights"][0] == now["validated_flights"][0] + now["quarantined_flights"][0] > 500
        assert now["features"] == now["validated_flights"]


PROBE = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"


def other_process_can_open(path: Path) -> tuple[bool, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=60)
    return done.returncode == 0, done.stderr


def test_a_run_opens_the_warehouse_once_and_lets_it_go_when_idle(
        defs, instance, mlsys_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsys_assets.resources import SharedDatabase, Warehouse

    opened: list[str] = []
    real_open = Warehouse._open

    def counted_open(self: Warehouse):  # the real open, counted
        opened.append(self.database)
        return real_open(self)

    monkeypatch.setattr(Warehouse, "_open", counted_open)
    assert run_day(defs, instance, DAYS[0]).success  # the first run also creates the MLflow store (seconds idle)
    opened.clear()
    assert run_day(defs, instance, DAYS[1]).success
    assert len(opened) == 1  # a dozen connections in the day's steps, one open file

    path = mlsys_home / "warehouse.duckdb"
    shared = SharedDatabase(lambda: real_open(Warehouse.from_env()), idle_seconds=0.5)
    first = shared.acquire()
    first.execute("CREATE TABLE probe AS SELECT 1 AS x")
    shared.release(first)
    second = shared.acquire()
    assert second.execute("SELECT x FROM probe").fetchall() == [(1,)]
    shared.release(second)
    assert shared.is_open
    can_open, error = other_process_can_open(path)
    assert not can_open and "lock" in error.lower()  # held between uses...
    time.sleep(1.5)
    assert not shared.is_open  # ... and closed once idle, so other processes get the file
    assert other_process_can_open(path) == (True, "")
    shared.close()
