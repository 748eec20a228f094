"""The Dagster instance under MLSYS_HOME: where it lives and the settings a new one starts with."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlsys_assets.core.files import atomic_write_text
from mlsys_assets.deployment import PROFILE_ENV, postgres_env_defaults, profile
from mlsys_assets.settings import dagster_home

INSTANCE_YAML = """\
# Written by mlsys for a new instance; edit freely, it is never overwritten.
# One consolidated SQLite event log: about twice as fast per run as the default run-sharded one, and its
# event ids are global, which the sensors' cursors rely on. The Embedded* classes are Dagster's SQLite
# storages with one engine each and no fsync per event (mlsys_assets/instance_storage.py); Dagster's own
# classes (dagster._core.storage.runs.SqliteRunStorage, ...event_log.ConsolidatedSqliteEventLogStorage,
# ...schedules.SqliteScheduleStorage) read the same files.
run_storage:
  module: mlsys_assets.instance_storage
  class: EmbeddedRunStorage
  config: {{base_dir: "{home}/history"}}
event_log_storage:
  module: mlsys_assets.instance_storage
  class: EmbeddedEventLogStorage
  config: {{base_dir: "{home}/history"}}
schedule_storage:
  module: mlsys_assets.instance_storage
  class: EmbeddedScheduleStorage
  config: {{base_dir: "{home}/schedules"}}
# The daemon fails runs that never start or never finish cancelling (a run worker lost with its machine).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    # Steps in the "warehouse" pool write the single-writer DuckDB file: one at a time.
    default_limit: 1
"""


# Every connection setting is an `{env: ...}` reference, resolved whenever the instance loads: the password is never
# written here, and Dagster reaches the server MLflow's tracking URI names (mlsys_assets/deployment.py).
POSTGRES_INSTANCE_YAML = """\
# Written by mlsys for a new instance (MLSYS_PROFILE=postgres); edit freely, it is never overwritten.
# Runs, event log and schedules live in PostgreSQL (dagster-postgres); the connection comes from the
# environment of every process that loads the instance.
storage:
  postgres:
    postgres_db:
      hostname: {env: MLSYS_PG_HOST}
      port: {env: MLSYS_PG_PORT}
      username: {env: MLSYS_PG_USER}
      password: {env: MLSYS_PG_PASSWORD}
      db_name: {env: MLSYS_PG_DAGSTER_DB}
      scheme: postgresql+psycopg2  # the driver dagster-postgres installs (SQLAlchemy 2.1 defaults to psycopg 3)
""" + INSTANCE_YAML[INSTANCE_YAML.index("# The daemon fails runs"):]


def uses_postgres(config_text: str) -> bool:
    """Whether a dagster.yaml keeps its runs in PostgreSQL (the consolidated `storage: postgres` or a per-storage
    dagster_postgres class)."""
    import yaml

    config = yaml.safe_load(config_text) or {}
    if "postgres" in (config.get("storage") or {}):
        return True
    return any(str((config.get(key) or {}).get("module", "")).startswith("dagster_postgres")
               for key in ("run_storage", "event_log_storage", "schedule_storage"))


def prepare_dagster_home() -> Path:
    """Point DAGSTER_HOME at `MLSYS_HOME/dagster` unless it is set, and give a new instance the settings of the
    profile (MLSYS_PROFILE). An existing instance of the other profile is an error: Dagster's runs in one store
    and MLflow's models in the other would disagree about what happened."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    postgres = profile() == "postgres"
    if postgres:
        postgres_env_defaults()
    with _exclusive(home / ".mlsys-init.lock"):
        if not config.exists():
            # whole or absent: a torn dagster.yaml would never be rewritten ("never overwritten")
            atomic_write_text(config, POSTGRES_INSTANCE_YAML if postgres else INSTANCE_YAML.format(home=home))
            if not postgres:
                _create_sqlite_storages(home)
        elif uses_postgres(config.read_text()) != postgres:
            raise RuntimeError(
                f"{config} was written for the {'embedded' if postgres else 'postgres'} profile, but "
                f"{PROFILE_ENV}={profile()}: use another DAGSTER_HOME (or MLSYS_HOME) for this profile, or delete "
                "that file to start a new instance")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _create_sqlite_storages(home: Path) -> None:
    """Dagster creates an SQLite instance's tables when a process first opens it, and two processes opening a new
    instance at once race in that ("table secondary_indexes already exists"): the process that writes the new
    dagster.yaml creates them, under the lock, before any other can open it."""
    from dagster import DagsterInstance

    DagsterInstance.from_config(str(home)).dispose()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    import fcntl

    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
