"""Every use of Dagster's internals (dagster 1.13.27) in one module, each with why no public API does it.

Anywhere else under mlsys_assets/ and benchmarks/, mlsys_tests/test_engine_rules.py fails on a `dagster._` import,
an instigator-state or tick method of the instance, a reach into the instance's storages, `SensorEvaluationContext(...)`
or `evaluate_tick`, `_connect` / `_conn_string` / `_replace`, or a log handler matched by class name: a Dagster
upgrade is then checked here (and by the tests each entry names), not all over the code.

- Sensor state and ticks (`sensor_origin`, `sensor_state`, `sensor_cursor`, `store_sensor_tick`): the in-process
  daemon (mlsys_assets/replay.py) keeps cursors and ticks where the Dagster daemon keeps them (the instance's
  schedule storage, keyed by the origin of location, repository and sensor), so `make dev` continues from the
  replay's cursors and the UI lists its ticks. No public API reads or writes instigator state or ticks: only
  Dagster's daemon does (mlsys_tests/test_webserver.py checks through GraphQL that the UI finds them).
- `evaluate_sensor_tick`: `dagster.build_sensor_context` takes no log key, so what a sensor logs would not be
  captured on its tick, and `SensorEvaluationContext` is documented as not to be instantiated; calling a sensor
  returns its raw result, and `dagster.evaluate_automation_conditions` evaluates conditions apart from the sensor's
  target and settings, giving neither the requests nor the cursor the daemon would store.
  `SensorDefinition.evaluate_tick` (not public) is what the daemon itself calls.
- Its console level: the handler that forwards a sensor's log to the console (`DispatchingLogHandler`) is not
  exported; it is recognised by its class, not by its class name.
- `check_executions`: DagsterInstance exposes only the latest execution of an asset check, and the status filter
  (`AssetCheckExecutionRecordStatus`, not re-exported) keeps a query for failures to failed executions; the event
  log storage answers both.
- `free_concurrency_slots`: the instance has no public way to free the pool slots of a run whose process died.
- `repository_snapshot`: what a code server sends for the definitions (benchmarks/load.py times the load path).
- The `Embedded*Storage` classes: Dagster's SQLite run, event-log and schedule storages (not exported) with one
  engine per storage and `synchronous=NORMAL`; they override the private `_connect` and read `_conn_string`, as
  the storage classes offer no other hook. dagster.yaml names them as `mlsys_assets.instance_storage`, which
  re-exports them from here.

Nothing is imported at module level: sensors import this at tick time, and the SQLite storages alone take about
0.4 s to import (SQLAlchemy, Alembic), so the storage classes are built on first access (`__getattr__`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

EMBEDDED_STORAGES = ("EmbeddedRunStorage", "EmbeddedEventLogStorage", "EmbeddedScheduleStorage")


# --- sensor state and ticks, where the Dagster daemon keeps them ---

def sensor_origin(module: str, location: str, repository: str, name: str) -> Any:
    """The origin the daemon files a sensor of an in-process code location under (`module` as workspace.yaml
    loads it)."""
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    code_location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name=module), location_name=location)
    return RemoteInstigatorOrigin(RemoteRepositoryOrigin(code_location, repository), name)


def sensor_state(instance: Any, origin: Any) -> Any:
    """The sensor's InstigatorState, or None before its first tick."""
    return instance.get_instigator_state(origin.get_id(), origin.get_selector().get_id())


def sensor_cursor(instance: Any, origin: Any) -> str | None:
    state = sensor_state(instance, origin)
    return state.instigator_data.cursor if state is not None and state.instigator_data else None


def store_sensor_tick(instance: Any, origin: Any, *, sensor_type: str, cursor: str | None, run_ids: list[str],
                      run_keys: list[str], skip_reason: str | None, started: float, log_key: list[str]) -> None:
    """Record one evaluation as the daemon does: the sensor's state (cursor, last tick) and a SUCCESS (runs
    requested) or SKIPPED tick."""
    import time

    from dagster._core.definitions.sensor_definition import SensorType
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        SensorInstigatorData,
        TickData,
        TickStatus,
    )

    now = time.time()
    data = SensorInstigatorData(last_tick_timestamp=now, last_run_key=run_keys[-1] if run_keys else None,
                                cursor=cursor if cursor is not None else sensor_cursor(instance, origin),
                                last_tick_start_timestamp=started, sensor_type=SensorType(sensor_type),
                                last_tick_success_timestamp=now)
    from dagster import DagsterInvariantViolationError

    state = sensor_state(instance, origin)
    if state is None:
        try:
            instance.add_instigator_state(InstigatorState(origin, InstigatorType.SENSOR,
                                                          InstigatorStatus.DECLARED_IN_CODE, data))
        except DagsterInvariantViolationError:  # another process added it between the read and the add
            state = sensor_state(instance, origin)
    if state is not None:
        instance.update_instigator_state(state.with_data(data))
    status = TickStatus.SUCCESS if run_ids else TickStatus.SKIPPED
    instance.create_tick(TickData(
        instigator_origin_id=origin.get_id(), instigator_name=origin.instigator_name,
        instigator_type=InstigatorType.SENSOR, status=status, timestamp=started, run_ids=run_ids, run_keys=run_keys,
        skip_reason=(skip_reason or "nothing requested") if status == TickStatus.SKIPPED else None,
        cursor=data.cursor, selector_id=origin.get_selector().get_id(), end_timestamp=now, log_key=log_key))


def evaluate_sensor_tick(sensor: Any, *, instance: Any, repository: Any, repository_name: str, cursor: str | None,
                         log_key: list[str], console_level: int) -> Any:
    """One evaluation of `sensor` as the daemon makes it (SensorExecutionData: run requests, cursor, skip
    message), with what it logs captured under `log_key` (readable on the tick in the UI) and shown on the console
    from `console_level` up."""
    from dagster import SensorEvaluationContext
    from dagster._core.definitions.instigation_logger import DispatchingLogHandler

    context = SensorEvaluationContext(
        instance_ref=instance.get_ref(), instance=instance, cursor=cursor, log_key=log_key,
        repository_name=repository_name, repository_def=repository, sensor_name=sensor.name,
        resources=repository.get_top_level_resources())
    for handler in context.log.handlers:
        if isinstance(handler, DispatchingLogHandler):  # the console, not the captured log
            handler.setLevel(console_level)
    with context:
        return sensor.evaluate_tick(context)


# --- the instance's event log ---

def check_executions(instance: Any, check_key: Any, limit: int, failed_only: bool = False) -> Sequence[Any]:
    """The asset check's execution records, newest first (only failed ones with `failed_only`)."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    status = {AssetCheckExecutionRecordStatus.FAILED} if failed_only else None
    return instance.event_log_storage.get_asset_check_execution_history(check_key, limit=limit, status=status)


def free_concurrency_slots(instance: Any, run_id: str) -> None:
    """Free the concurrency (pool) slots the run holds."""
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def repository_snapshot(repository: Any) -> Any:
    """The snapshot of a repository a code server sends to the webserver and the daemon."""
    from dagster._core.remote_representation.external_data import RepositorySnap

    return RepositorySnap.from_def(repository)


# --- the embedded profile's SQLite storages (re-exported by mlsys_assets.instance_storage) ---

def _engine(storage: Any) -> Any:
    """The storage's one engine, created on first use (after a fork, a process makes its own)."""
    engine = getattr(storage, "_mlsys_engine", None)
    if engine is not None and getattr(storage, "_mlsys_pid", None) == os.getpid():
        return engine
    from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
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


@functools.cache
def _embedded_storages() -> dict[str, type]:
    from dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log import (
        ConsolidatedSqliteEventLogStorage,
    )
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage

    class EmbeddedRunStorage(_OneEngine, SqliteRunStorage):
        """SqliteRunStorage, connected as mlsys_assets/instance_storage.py says."""

    class EmbeddedEventLogStorage(ConsolidatedSqliteEventLogStorage):
        """ConsolidatedSqliteEventLogStorage (one event log for all runs), connected as
        mlsys_assets/instance_storage.py says."""

        @contextmanager
        def _connect(self) -> Iterator[Any]:
            with _connection(self) as conn:
                yield conn

    class EmbeddedScheduleStorage(_OneEngine, SqliteScheduleStorage):
        """SqliteScheduleStorage, connected as mlsys_assets/instance_storage.py says."""

    classes: dict[str, type] = {}
    for cls in (EmbeddedRunStorage, EmbeddedEventLogStorage, EmbeddedScheduleStorage):
        cls.__qualname__ = cls.__name__  # found again by name (pickle, repr) through this module's `__getattr__`
        classes[cls.__name__] = cls
    return classes


def __getattr__(name: str) -> Any:
    if name in EMBEDDED_STORAGES:
        return _embedded_storages()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
