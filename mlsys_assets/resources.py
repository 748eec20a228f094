"""Dagster resources: the warehouse, the landing zone and the policies, each configurable by env or run config.

Resources subclass `EnvResource`; `from_env()` builds one from the environment, and Dagster's run config can
override any field again in the launchpad.
"""

from __future__ import annotations

import os
import threading
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from mlsys_assets.settings import boolean, home_path

if TYPE_CHECKING:
    import duckdb

    from mlsys_assets.declaration import Source, System


def env_name(field: str) -> str:
    return f"MLSYS_{field.upper()}"


def _parse(raw: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _parse(raw, args[0]) if raw else None
    if annotation is bool:
        return boolean(raw)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return [_parse(part.strip(), item) for part in raw.split(",") if part.strip()]
    if annotation in (int, float, str):
        return annotation(raw)
    raise TypeError(f"cannot read {annotation} from the environment")


class EnvResource(ConfigurableResource):
    """A resource whose fields can each be set by an environment variable.

    A field `x` is read from `MLSYS_X`; a path field listed in `home_paths` is read from its own
    variable and otherwise defaults to a path under MLSYS_HOME.
    """

    home_paths: ClassVar[dict[str, tuple[str, str]]] = {}

    @classmethod
    def env_fields(cls) -> dict[str, Any]:
        """The fields an environment variable can set (a dict-valued field is run config only)."""
        return {name: field for name, field in cls.model_fields.items()
                if typing.get_origin(field.annotation) is not dict and field.annotation is not dict}

    @classmethod
    def env_var(cls, field: str) -> str:
        return cls.home_paths[field][0] if field in cls.home_paths else env_name(field)

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        values: dict[str, Any] = {}
        for name, field in cls.env_fields().items():
            if name in cls.home_paths:
                env, relative = cls.home_paths[name]
                values[name] = home_path(env, relative)
                continue
            raw = os.environ.get(env_name(name))
            if raw is not None:
                try:
                    values[name] = _parse(raw, field.annotation)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{env_name(name)}={raw!r}: {exc}") from exc
        values.update(overrides)
        return cls(**values)

    @classmethod
    def settings_table(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, meaning) for every field: the README table and `mlsys settings`."""
        rows = []
        for name, field in cls.env_fields().items():
            if name in cls.home_paths:
                default = f"$MLSYS_HOME/{cls.home_paths[name][1]}"
            else:
                default = ",".join(map(str, field.default)) if isinstance(field.default, list) else field.default
            rows.append((cls.env_var(name), str(default), field.description or ""))
        return rows



class Warehouse(EnvResource):
    """The DuckDB warehouse file: the one place a team changes to move the tables elsewhere.

    DuckDB lets one process open a file for writing and no other process open it at all meanwhile, so the file
    is held only while steps use it and opening waits for the lock. Opening it costs ~20 ms and a day's run
    connects a few dozen times, so inside a run (between Dagster's setup and teardown of this resource) the
    steps share one open database and it is closed once unused for `idle_close_seconds`; outside a run every
    connection opens and closes the file. (Dagster's own `DuckDBResource` has the same two first fields, but
    importing dagster_duckdb imports duckdb, which every load of the code location would pay for.)
    """

    home_paths: ClassVar[dict[str, tuple[str, str]]] = {"database": ("MLSYS_WAREHOUSE", "warehouse.duckdb")}
    database: str = Field(description="The DuckDB warehouse file.")
    connection_config: dict[str, Any] = Field(
        default={}, description="DuckDB configuration options (https://duckdb.org/docs/configuration/overview).")
    lock_timeout_seconds: float = Field(
        default=120.0, description="How long to wait for another process to release the warehouse file.")
    idle_close_seconds: float = Field(
        default=1.0, description="Inside a run, how long the warehouse file stays open unused for the next step "
                                 "(another process waits at most this long after the run's last use).")
    min_free_mb: float = Field(
        default=50.0, description="Refuse to start writing (and `mlsys` to start) with less free disk space than "
                                  "this, in MB: a clear error instead of a disk filling mid-run.")
    _shared: SharedDatabase | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._shared = SharedDatabase(self._open, self.idle_close_seconds)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    @contextmanager
    def get_connection(self, schema: str | System | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse, in a system's schema when one is named (its tables then need no prefix;
        given the system itself, the tables and columns it created are commented for SQL users on the way out);
        a full disk or a read-only or unwritable folder raises a StorageError naming the file, instead of
        DuckDB's own words from deep inside a write."""
        from mlsys_assets.core.storage import check_disk, plain_storage_errors
        from mlsys_assets.core.warehouse import use_schema

        check_disk(self.database, self.min_free_mb, self.env_var("min_free_mb"))
        shared = self._shared
        con = shared.acquire() if shared is not None else self._open()
        system = schema if schema is not None and not isinstance(schema, str) else None
        name = system.name if system is not None else schema
        try:
            with plain_storage_errors(self.database):
                yield use_schema(con, name) if name else con
                if system is not None:
                    from mlsys_assets.core.catalog import describe

                    describe(con, system)
        finally:
            if shared is not None:
                shared.release(con)
            else:
                con.close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Opens the file, waiting for another process's lock up to `lock_timeout_seconds`."""
        import duckdb

        from mlsys_assets.core.storage import plain_storage_errors

        with plain_storage_errors(self.database):
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + self.lock_timeout_seconds
            delay = 0.05
            while True:
                try:
                    return duckdb.connect(self.database, config=dict(self.connection_config))
                except duckdb.IOException as exc:
                    if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)


class SharedDatabase:
    """One open DuckDB database for the steps of a run: each connection handed out is a cursor on it (its own
    transactions), and the database is closed once nothing has used it for `idle_seconds`, or at `close`."""

    def __init__(self, open_database: Callable[[], duckdb.DuckDBPyConnection], idle_seconds: float) -> None:
        self._open_database = open_database
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._database: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._timer: threading.Timer | None = None

    @property
    def is_open(self) -> bool:
        return self._database is not None

    def acquire(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._database is None:
                self._database = self._open_database()
            self._users += 1
            return self._database.cursor()

    def release(self, cursor: duckdb.DuckDBPyConnection) -> None:
        cursor.close()
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._database is not None:
                self._timer = threading.Timer(self._idle_seconds, self._close_if_idle)
                self._timer.daemon = True
                self._timer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            if self._users == 0 and self._database is not None:
                self._database.close()
                self._database = None
            self._timer = None

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._database is not None:
                self._database.close()
                self._database = None


class LandingZone(EnvResource):
    """The folder where files arrive: `<path>/<system>/<source>/<partition key>.<format>`."""

    home_paths: ClassVar[dict[str, tuple[str, str]]] = {"path": ("MLSYS_LANDING", "landing")}
    path: str = Field(description="The landing zone folder.")

    def file_for(self, system: System, source: Source, key: str) -> Path:
        from mlsys_assets.core.sources import file_for

        return file_for(self.path, system, source, key)


class QualityPolicy(EnvResource):
    """Thresholds of the data-quality checks."""

    max_quarantine_rate: float = Field(
        default=0.01, description="Share of a day's rows that may be quarantined before the quarantine-rate "
                                  "check fails (warning severity).")


class MlflowStore(EnvResource):
    """MLflow tracking and model registry: the profile's store (SQLite under MLSYS_HOME, or the PostgreSQL
    database of MLSYS_PROFILE=postgres) unless a tracking URI is given."""

    home_paths: ClassVar[dict[str, tuple[str, str]]] = {"store_dir": ("MLSYS_MLFLOW_DIR", "mlflow")}
    store_dir: str = Field(description="Folder of the embedded MLflow store (`mlflow.db` and `artifacts/`; "
                                       "only `artifacts/` with the `postgres` profile).")
    tracking_uri: str = Field(default="", description="Tracking and registry URI; empty means the profile's store: "
                                                      "`sqlite:///<store_dir>/mlflow.db`, or "
                                                      "`postgresql+psycopg2://.../$MLSYS_PG_MLFLOW_DB` with the "
                                                      "`postgres` profile. Any MLflow server URI works.")
    ui_url: str = Field(default="http://127.0.0.1:5000", description="Base URL of the MLflow UI, for links.")

    def store_uri(self) -> str:
        """The tracking and registry URI: an explicit `tracking_uri` wins over the profile's store. It can hold a
        password (the `postgres` profile): never log it, and pass it to subprocesses by environment."""
        from mlsys_assets.deployment import mlflow_store_uri

        return self.tracking_uri or mlflow_store_uri(self.store_dir)

    def registry(self, system: System):  # -> core.registry.Registry (imported here: mlflow costs seconds to import)
        """The system's registered model (and experiment of the same name) in this store."""
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlsys_assets.core.registry import Registry

        return Registry(tracking_uri=self.store_uri(), artifact_root=str(Path(self.store_dir) / "artifacts"),
                        experiment=system.model_name, model_name=system.model_name, ui_url=self.ui_url)


class AutomationPolicy(EnvResource):
    """How eagerly failed checks retrain the model."""

    retrain_cooldown_days: int = Field(default=7, description="Data days after a check-triggered retraining during "
                                                              "which further failed checks trigger none.")
    retrain_on_checks: bool = Field(default=True, description="Whether failed drift or performance checks "
                                                              "trigger retraining at all.")
    min_history_days: int = Field(default=14, description="Days of features the retraining sensor waits for "
                                                          "before it requests the first training (no champion yet).")


ALL_RESOURCES: tuple[type[EnvResource], ...] = (Warehouse, LandingZone, QualityPolicy, MlflowStore, AutomationPolicy)
