"""Dagster's SQLite storages for the embedded profile, with one engine per storage and no fsync per event.

Dagster's SQLite run, event-log and schedule storages create a SQLAlchemy engine for every storage call and
commit each in SQLite's default FULL synchronous mode: an fsync per event, 6-10 ms on the benchmark machine,
and a day of the demo makes about 95 such writes and ~800 connections. These subclasses change only how they
connect: one engine per storage (its pool keeps connections open) whose connections use `synchronous=NORMAL`.
Dagster already puts these databases in WAL mode, where NORMAL keeps them consistent whatever process crashes
and can lose only the last transactions on a power cut: the right trade for a one-machine instance (the
`postgres` profile is for teams). A day's run takes about half the time (see the README's Benchmarks).
The tables, the migrations and the files are Dagster's own: an instance can switch back by editing
dagster.yaml.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log import ConsolidatedSqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS


def _engine(storage: Any) -> Any:
    """The storage's one engine, created on first use (after a fork, a process makes its own)."""
    import os

    engine = getattr(storage, "_mlsys_engine", None)
    if engine is not None and getattr(storage, "_mlsys_pid", None) == os.getpid():
        return engine
    from sqlalchemy import create_engine, event

    engine = create_engine(storage._conn_string, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _normal_sync(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    storage._mlsys_engine, storage._mlsys_pid = engine, os.getpid()
    return engine


@contextmanager
def _connection(storage: Any) -> Iterator[Any]:
    with _engine(storage).connect() as conn, conn.begin():
        yield conn


class _OneEngine:
    """`connect` through the storage's one engine; `from_config_value` that builds this class (Dagster's builds
    its own base class by name)."""

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> Any:
        return cls.from_local(inst_data=inst_data, **config_value)  # type: ignore[attr-defined]

    @contextmanager
    def connect(self) -> Iterator[Any]:
        with _connection(self) as conn:
            yield conn


class EmbeddedRunStorage(_OneEngine, SqliteRunStorage):
    """SqliteRunStorage, connected as the module docstring says."""


class EmbeddedEventLogStorage(ConsolidatedSqliteEventLogStorage):
    """ConsolidatedSqliteEventLogStorage (one event log for all runs), connected as the module docstring says."""

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        with _connection(self) as conn:
            yield conn


class EmbeddedScheduleStorage(_OneEngine, SqliteScheduleStorage):
    """SqliteScheduleStorage, connected as the module docstring says."""
