"""Dagster resources: the warehouse, the landing zone and the policies, each configurable by env or run config."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from mlsys_assets.core.sources import Source
from mlsys_assets.settings import EnvResource


class Warehouse(DuckDBResource, EnvResource):
    """The DuckDB warehouse file: the one place a team changes to move the tables elsewhere.

    DuckDB lets one process open a file for writing and no other process open it at all meanwhile, so
    a connection is held only for the few statements that need it and opening waits for the lock.
    """

    home_paths: ClassVar[dict[str, tuple[str, str]]] = {"database": ("MLSYS_WAREHOUSE", "warehouse.duckdb")}
    database: str = Field(description="The DuckDB warehouse file.")
    lock_timeout_seconds: float = Field(
        default=120.0, description="How long to wait for another process to release the warehouse file.")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(self.database, config=dict(self.connection_config))
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield con
        finally:
            con.close()


class LandingZone(EnvResource):
    """The folder where daily files arrive: `<path>/<source>/<YYYY-MM-DD>.csv`."""

    home_paths: ClassVar[dict[str, tuple[str, str]]] = {"path": ("MLSYS_LANDING", "landing")}
    path: str = Field(description="The landing zone folder.")

    def file_for(self, source: Source, day: str) -> Path:
        return source.file_for(self.path, day)


class QualityPolicy(EnvResource):
    """Thresholds of the data-quality checks."""

    max_quarantine_rate: float = Field(
        default=0.01, description="Share of a day's rows that may be quarantined before the quarantine-rate "
                                  "check fails (warning severity).")


ALL_RESOURCES: tuple[type[EnvResource], ...] = (Warehouse, LandingZone, QualityPolicy)
