"""The one atomic-write helper (mlsys_assets/core/files.py): readers and concurrent writers never see half a file,
and a writer that fails leaves the old file and no temporary one."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mlsys_assets.core.files import atomic_write, atomic_write_bytes, atomic_write_text

SIZE = 256 * 1024  # several write() calls per file, so an unprotected write would be seen half done


def test_writes_the_file_creating_its_folder_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "report.html"
    assert atomic_write_text(target, "<p>é</p>") == target
    assert target.read_text(encoding="utf-8") == "<p>é</p>"
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_a_new_file_gets_the_usual_permissions_and_a_replaced_one_keeps_its_own(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        fresh = atomic_write_text(tmp_path / "fresh.txt", "x")
        assert fresh.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        private = tmp_path / "private.txt"
        private.write_text("old")
        private.chmod(0o600)
        atomic_write_text(private, "new")
        assert private.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)


def test_concurrent_writers_never_leave_a_torn_file_nor_a_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "shared.bin"
    contents = [bytes([ord("a") + i]) * SIZE for i in range(6)]
    atomic_write_bytes(target, contents[0])
    start, stop = threading.Barrier(len(contents) + 1), threading.Event()
    errors: list[BaseException] = []
    seen: list[bytes] = []

    def writer(content: bytes) -> None:
        def chunked(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                for offset in range(0, len(content), 4096):
                    handle.write(content[offset:offset + 4096])
                    handle.flush()

        try:
            start.wait()
            for _ in range(15):
                atomic_write(target, chunked)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    def reader() -> None:
        start.wait()
        while not stop.is_set():
            seen.append(target.read_bytes())

    writers = [threading.Thread(target=writer, args=(c,)) for c in contents]
    watcher = threading.Thread(target=reader)
    for thread in (*writers, watcher):
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    watcher.join()

    assert not errors, errors
    assert seen
    torn = [data[:1] + b"..." for data in seen if data not in contents]
    assert not torn, f"{len(torn)} of {len(seen)} reads saw a mix of writers or half a file"
    assert target.read_bytes() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


def test_a_failing_writer_leaves_the_old_file_intact_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "weather.parquet"
    target.write_bytes(b"the old, complete file")
    before = target.stat().st_ino

    def fails_halfway(tmp: Path) -> None:
        tmp.write_bytes(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, fails_halfway)
    assert target.read_bytes() == b"the old, complete file"
    assert target.stat().st_ino == before
    assert [p.name for p in tmp_path.iterdir()] == ["weather.parquet"]

    with pytest.raises(KeyboardInterrupt):  # interrupted, not only failed
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert [p.name for p in tmp_path.iterdir()] == ["weather.parquet"]


def test_a_failing_first_write_leaves_no_file_at_all(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "never.txt", lambda tmp: (_ for _ in ()).throw(ValueError("bad frame")))
    assert list(tmp_path.iterdir()) == []
