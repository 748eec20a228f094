"""A full disk and a read-only MLSYS_HOME, on real small file systems (tmpfs mounts): one clear sentence naming
the path, never a library's traceback, and a write that fills the disk leaves its partition whole."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlsys_assets.core.sources import file_for
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, run_day

KEYS = {"raw_flights": "source_row", "validated_flights": "source_row", "quarantined_flights": "source_row",
        "features": "flight_id", "batch_predictions": "(flight_id, role)"}


@pytest.fixture
def mount_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mounts a tmpfs of the given size (MB) under tmp_path; unmounted afterwards. Needs root (CI runs as root)."""
    mounted: list[Path] = []

    def mount(size_mb: int, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small file system here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=True)


def read_only(point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)


def fill(point: Path) -> Path:
    """Writes a file until the disk says it is full."""
    filler = point / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def mlsys(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLSYS_") and k != "DAGSTER_HOME"}
    return subprocess.run([sys.executable, "-m", "mlsys_assets.cli", *args], capture_output=True, text=True,
                          env={**environ, "MLSYS_HOME": str(home), **env}, timeout=300)


def assert_one_sentence(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout[-2000:], done.stderr[-4000:])
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    last = done.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, last


def test_a_read_only_home_stops_each_command_with_one_sentence(mount_disk) -> None:
    disk = mount_disk(8)
    home = disk / "home"
    (home / "landing").mkdir(parents=True)
    read_only(disk)
    for command in (["land", DAYS[0]], ["demo", "--start", DAYS[0], "--end", DAYS[1]], ["rollback", "--reason", "x"]):
        done = mlsys(*command, home=home)
        assert_one_sentence(done, f"mlsys {command[0]}:", str(home), "read-only file system", "writable folder")
    done = mlsys("land", DAYS[0], home=disk / "not-yet")  # a home that does not exist yet and cannot be made
    assert_one_sentence(done, str(disk / "not-yet"), "read-only file system")


def test_a_nearly_full_disk_is_refused_before_any_work(mount_disk) -> None:
    disk = mount_disk(2)
    done = mlsys("land", DAYS[0], home=disk / "home")
    assert_one_sentence(done, "no space left on the device", str(disk / "home"), "50 MB required",
                        "MLSYS_MIN_FREE_MB")
    assert not (disk / "home" / "landing").exists()
    done = mlsys("land", DAYS[0], home=disk / "home", MLSYS_MIN_FREE_MB="0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (disk / "home" / "landing" / "flights" / "flights").iterdir()) == [f"{DAYS[0]}.csv"]


def step_failures(result) -> list[tuple[str, str, str]]:
    """(step, error class, message) of each failed step: the error the step raised, which Dagster shows under its
    own "Error occurred while executing op" wrapper."""
    failures = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            raised = error.cause if error.cls_name == "DagsterExecutionStepExecutionError" and error.cause else error
            failures.append((event.step_key, raised.cls_name, raised.message))
    return failures


def test_a_step_on_a_read_only_warehouse_fails_naming_the_file(
        mount_disk, mlsys_home: Path, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = mount_disk(8)
    read_only(disk)
    warehouse = disk / "warehouse.duckdb"
    monkeypatch.setenv("MLSYS_WAREHOUSE", str(warehouse))
    from mlsys_assets.definitions import build_defs

    result = run_day(build_defs(), instance, DAYS[0])
    assert not result.success
    failures = step_failures(result)
    assert failures, "no step failed"
    for step, cls_name, message in failures:
        assert cls_name == "StorageError", (step, cls_name, message)
        assert f"{warehouse} is on a read-only file system" in message, message


def counts(path: Path, day: str) -> dict[str, tuple[int, int]]:
    import duckdb

    con = duckdb.connect(str(path))  # read-write: replays whatever the failed write left in the WAL
    try:
        return {table: con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM flights.{table} "
                                   "WHERE partition_date = ?",
                                   [day]).fetchone() for table, key in KEYS.items()}
    finally:
        con.close()


@pytest.mark.slow
def test_a_write_that_fills_the_disk_leaves_the_old_partition_and_the_rerun_succeeds(
        mount_disk, mlsys_home: Path, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = mount_disk(24)
    warehouse = disk / "warehouse.duckdb"
    monkeypatch.setenv("MLSYS_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("MLSYS_MIN_FREE_MB", "0")  # no early refusal: let the write itself hit the full disk
    from mlsys_assets.definitions import build_defs

    defs = build_defs()
    day = DAYS[0]
    assert run_day(defs, instance, day).success
    old = counts(warehouse, day)
    flights = file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, FLIGHTS_SYSTEM.source("flights"), day)
    lines = flights.read_text().splitlines(keepends=True)
    flights.write_text("".join(lines[:301]))  # the day redelivered with 300 flights

    filler = fill(disk)
    result = run_day(defs, instance, day)
    assert not result.success
    failures = step_failures(result)
    assert failures and all(cls == "StorageError" for _, cls, _ in failures), failures
    assert any(f"no space left on the device for {warehouse}" in message for _, _, message in failures), failures
    filler.unlink()
    assert counts(warehouse, day) == old  # every table still holds the whole old day

    assert run_day(defs, instance, day).success
    new = counts(warehouse, day)
    assert new["raw_flights"] == (300, 300)
    assert new["validated_flights"][0] + new["quarantined_flights"][0] == 300
    assert new["features"] == new["batch_predictions"] == new["validated_flights"]


def test_storage_problems_are_recognised_in_the_libraries_own_errors(mount_disk) -> None:
    """The real errors DuckDB, SQLite and the OS raise on a full and on a read-only disk."""
    import sqlite3

    import duckdb

    from mlsys_assets.core.storage import FULL, READ_ONLY, storage_problem
    from mlsys_assets.core.warehouse import transaction

    full = mount_disk(2, "full")
    con = duckdb.connect(str(full / "w.duckdb"))
    con.execute("CREATE TABLE t AS SELECT range AS a FROM range(10)")
    fill(full)
    with pytest.raises(duckdb.Error) as raised, transaction(con):
        con.execute("INSERT INTO t SELECT range FROM range(200000)")
    assert storage_problem(raised.value) == FULL, raised.value  # the commit's own error, not the rollback's
    con.close()
    with pytest.raises(sqlite3.OperationalError) as raised:
        db = sqlite3.connect(str(full / "s.db"))
        db.execute("CREATE TABLE t (a)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 5000)
        db.commit()
    assert storage_problem(raised.value) == FULL, raised.value

    ro = mount_disk(2, "ro")
    read_only(ro)
    for attempt in (lambda: duckdb.connect(str(ro / "w.duckdb")), lambda: (ro / "x").write_text("x")):
        with pytest.raises(Exception) as raised:
            attempt()
        assert storage_problem(raised.value) == READ_ONLY, raised.value
    assert storage_problem(ValueError("a bad row")) is None


def test_a_refused_socket_is_not_called_a_disk_problem() -> None:
    from mlsys_assets.core.storage import DENIED, storage_problem

    assert storage_problem(PermissionError(13, "Permission denied")) is None  # e.g. binding a port below 1024
    assert storage_problem(PermissionError(13, "Permission denied", "/data/mlsys/x")) == DENIED
