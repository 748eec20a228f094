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

dagster.yaml names the classes by this module (`module: mlsys_assets.instance_storage`, mlsys_assets/instance.py
writes it), so existing instances keep loading; they subclass Dagster's internal storages and are defined in
mlsys_assets/dagster_internal.py with the project's other uses of Dagster internals, built on first access.
"""

from __future__ import annotations

from typing import Any

from mlsys_assets.dagster_internal import EMBEDDED_STORAGES

__all__ = list(EMBEDDED_STORAGES)  # EmbeddedRunStorage, EmbeddedEventLogStorage, EmbeddedScheduleStorage


def __getattr__(name: str) -> Any:
    if name in EMBEDDED_STORAGES:
        from mlsys_assets import dagster_internal

        return getattr(dagster_internal, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
