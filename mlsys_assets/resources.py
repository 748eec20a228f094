"""Dagster resources: the warehouse, the landing zone and the policies, each configurable by env or run config."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dagster import InitResourceContext
from pydantic import Field, PrivateAttr

from mlsys_assets.core.features import WEATHER_FEATURES
from mlsys_assets.core.sources import Source
from mlsys_assets.settings import EnvResource

if TYPE_CHECKING:
    import duckdb


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
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse; a full disk or a read-only or unwritable folder raises a StorageError
        naming the file, instead of DuckDB's own words from deep inside a write."""
        from mlsys_assets.core.storage import check_disk, plain_storage_errors

        check_disk(self.database, self.min_free_mb, self.env_var("min_free_mb"))
        shared = self._shared
        con = shared.acquire() if shared is not None else self._open()
        try:
            with plain_storage_errors(self.database):
                yield con
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
    experiment: str = Field(default="flight_delay", description="MLflow experiment of the training runs.")
    model_name: str = Field(default="flight_delay", description="Registered model name.")
    ui_url: str = Field(default="http://127.0.0.1:5000", description="Base URL of the MLflow UI, for links.")

    def store_uri(self) -> str:
        """The tracking and registry URI: an explicit `tracking_uri` wins over the profile's store. It can hold a
        password (the `postgres` profile): never log it, and pass it to subprocesses by environment."""
        from mlsys_assets.deployment import mlflow_store_uri

        return self.tracking_uri or mlflow_store_uri(self.store_dir)

    def registry(self):  # -> core.registry.Registry (imported here: mlflow costs seconds to import)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlsys_assets.core.registry import Registry

        return Registry(tracking_uri=self.store_uri(), artifact_root=str(Path(self.store_dir) / "artifacts"),
                        experiment=self.experiment, model_name=self.model_name, ui_url=self.ui_url)


class TrainingPolicy(EnvResource):
    """The training window, the model's hyperparameters and the promotion gate."""

    window_days: int = Field(default=60, description="Days of features in the training set (the most recent ones).")
    holdout_days: int = Field(default=7, description="Most recent days of the window held out for evaluation.")
    estimator: str = Field(default="hist_gradient_boosting",
                           description="`hist_gradient_boosting` or `logistic_regression`.")
    learning_rate: float = Field(default=0.08, description="Gradient boosting learning rate.")
    max_iter: int = Field(default=200, description="Boosting iterations.")
    max_leaf_nodes: int = Field(default=31, description="Leaves per tree.")
    l2_regularization: float = Field(default=1.0, description="L2 penalty (inverse C for logistic regression).")
    random_state: int = Field(default=42, description="Seed of every random choice in training.")
    decision_threshold: float = Field(default=0.35, description="Probability at or above which a flight is "
                                                                "predicted delayed.")
    primary_metric: str = Field(default="roc_auc", description="Metric the promotion gate compares.")
    min_improvement: float = Field(default=0.002, description="How much a candidate must beat the champion by.")
    slice_tolerance: float = Field(
        default=0.05, description="Largest regression allowed on any slice. A slice's ROC AUC on ~1,000 holdout "
                                  "flights moves by about 0.02 from noise alone; replaying Jan-Jun 2013, a 0.02 bar "
                                  "rejected a candidate 0.044 better overall for three carrier slices.")
    slice_min_rows: int = Field(default=500, description="Slices with fewer holdout rows are not judged.")
    absolute_floor: float = Field(default=0.6, description="What a first model must reach on the primary metric.")

    def model_params(self):  # -> core.model.ModelParams
        from mlsys_assets.core.model import ModelParams

        return ModelParams(estimator=self.estimator, learning_rate=self.learning_rate, max_iter=self.max_iter,
                           max_leaf_nodes=self.max_leaf_nodes, l2_regularization=self.l2_regularization,
                           random_state=self.random_state)

    def gate_policy(self):  # -> core.evaluation.GatePolicy
        from mlsys_assets.core.evaluation import GatePolicy

        return GatePolicy(primary_metric=self.primary_metric, min_improvement=self.min_improvement,
                          slice_tolerance=self.slice_tolerance, slice_min_rows=self.slice_min_rows,
                          absolute_floor=self.absolute_floor)


class AutomationPolicy(EnvResource):
    """How eagerly failed checks retrain the model."""

    retrain_cooldown_days: int = Field(default=7, description="Data days after a check-triggered retraining during "
                                                              "which further failed checks trigger none.")
    retrain_on_checks: bool = Field(default=True, description="Whether failed drift or performance checks "
                                                              "trigger retraining at all.")
    min_history_days: int = Field(default=14, description="Days of features the retraining sensor waits for "
                                                          "before it requests the first training (no champion yet).")


CALENDAR_COLUMNS = ["month", "day_of_week", "day_of_year", "is_weekend"]  # = core.monitoring.CALENDAR_FEATURES


class MonitoringPolicy(EnvResource):
    """When labels count as arrived, what a mistake costs, and the bars of the drift and performance checks."""

    label_delay_days: int = Field(
        default=1, description="Days until a flight's label is known: the labels of day D are in once the "
                               "flight_features partition D + delay is materialized.")
    rolling_days: int = Field(default=7, description="Days in the rolling window of live performance.")
    cost_missed_delay: float = Field(default=50.0, description="Cost of a delayed flight predicted on time "
                                                               "(false negative).")
    cost_false_alarm: float = Field(default=10.0, description="Cost of an on-time flight predicted delayed "
                                                              "(false positive).")
    min_live_roc_auc: float = Field(default=0.6, description="Live ROC AUC of the champion below which the "
                                                             "performance check fails with error severity.")
    max_auc_drop: float = Field(default=0.05, description="Drop of live ROC AUC below the champion's holdout ROC "
                                                          "AUC beyond which the performance check warns.")
    performance_window: str = Field(
        default="rolling", description="Live ROC AUC the performance check judges: `rolling` (the rolling window) "
                                       "or `day` (one day: much noisier, measured 0.36-0.72 for one model).")
    drifted_share: float = Field(
        default=0.15, description="A day has drifted when more than this share of the monitored feature columns "
                                  "drifted (3 of 18). Measured on 2013 against 7- to 53-day references: February "
                                  "to April never above 2 columns; from May on, temperature, dew point and the "
                                  "summer schedule (block minutes) drift together.")
    drift_ignored_columns: list[str] = Field(
        default=CALENDAR_COLUMNS, description="Columns left out of feature drift: calendar columns hold one value a "
                                              "day, so they differ from any multi-day reference.")
    drift_day_level_columns: list[str] = Field(
        default=list(WEATHER_FEATURES), description="Columns with one value per origin and hour (weather), judged "
                                                    "by their Wasserstein shift alone.")
    day_level_wasserstein: float = Field(
        default=3.0, description="Shift, in reference standard deviations, past which a day-level column drifted.")
    day_level_missing_rate: float = Field(
        default=0.9, description="Change of a day-level column's missing rate past which it drifted (gusts are "
                                 "reported on gusty days only; a weather outage shows in weather_missing).")

    def drift_policy(self):  # -> core.monitoring.DriftPolicy
        from mlsys_assets.core.drift import DriftThresholds
        from mlsys_assets.core.monitoring import DriftPolicy

        return DriftPolicy(thresholds=DriftThresholds(drifted_share=self.drifted_share),
                           ignored=tuple(self.drift_ignored_columns), day_level=tuple(self.drift_day_level_columns),
                           day_level_wasserstein=self.day_level_wasserstein,
                           day_level_missing_rate=self.day_level_missing_rate)

    def cost_policy(self, threshold: float):  # -> core.monitoring.CostPolicy
        from mlsys_assets.core.monitoring import CostPolicy

        return CostPolicy(threshold=threshold, cost_missed_delay=self.cost_missed_delay,
                          cost_false_alarm=self.cost_false_alarm)


ALL_RESOURCES: tuple[type[EnvResource], ...] = (Warehouse, LandingZone, QualityPolicy, MlflowStore, TrainingPolicy,
                                                AutomationPolicy, MonitoringPolicy)
