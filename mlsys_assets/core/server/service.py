"""One declared system's scoring service, HTTP aside: its request schema, models, published lookups, prediction log
and scoring paths, wired; `invoke` turns parsed request rows into MLflow's `{"predictions": [...]}`.

No Dagster import: `ServeConfig.from_env` reads the shared settings (`mlsys_assets.settings`) when the server starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsys_assets.core.partitioning import key_in_range
from mlsys_assets.core.server.lookups import LookupStore
from mlsys_assets.core.server.models import CHALLENGER, ModelSource, ModelWatcher, RegistryModels
from mlsys_assets.core.server.predictionlog import PredictionLog
from mlsys_assets.core.server.protocol import Parsed, RequestError
from mlsys_assets.core.server.schema import RequestSchema
from mlsys_assets.core.server.scoring import Job, Paths, RowPath, Shadow, TablePath

if TYPE_CHECKING:
    from mlsys_assets.declaration import System

log = logging.getLogger("mlsys.serve")


def _setting(name: str, cast: Callable[[str], Any]) -> Any:
    from mlsys_assets.settings import setting

    raw = setting(name)
    try:
        return cast(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from exc


@dataclass(frozen=True)
class ServeConfig:
    """Everything a server needs, as plain values; `from_env` reads them as the rest of mlsys does."""

    host: str = "127.0.0.1"
    port: int = 5001
    poll_seconds: float = 5.0
    max_body_bytes: int = 1 << 20
    max_rows: int = 10_000
    max_inflight_bytes: int = 4 << 20  # bodies being read or scored at once; past it: 503 with Retry-After
    max_inflight_rows: int = 40_000
    header_timeout_seconds: float = 10.0
    shadow: bool = True
    online_dir: Path = field(default_factory=lambda: Path("online"))
    log_dir: Path = field(default_factory=lambda: Path("prediction_log"))
    log_min_free_bytes: int = 256 << 20
    log_retention_days: float | None = None
    max_batch_rows: int = 2048
    batch_linger_seconds: float = 0.005
    # Requests up to this many rows take the row path (when the model compiles). Measured over HTTP on 2 cores:
    # 64 rows take ~20 ms row-wise against ~45 ms on the table path, and the two meet at ~100-130 rows.
    row_path_max_rows: int = 64
    answer_timeout_seconds: float = 30.0

    @classmethod
    def from_env(cls, **overrides: Any) -> ServeConfig:
        from mlsys_assets.core.online import online_dir, prediction_log_dir
        from mlsys_assets.settings import boolean

        retention = _setting("MLSYS_SERVE_LOG_RETENTION_DAYS", float)
        values = {
            "port": _setting("MLSYS_SERVE_PORT", int),
            "poll_seconds": _setting("MLSYS_SERVE_POLL_SECONDS", float),
            "max_body_bytes": _setting("MLSYS_SERVE_MAX_BODY_BYTES", int),
            "max_rows": _setting("MLSYS_SERVE_MAX_ROWS", int),
            "max_inflight_bytes": _setting("MLSYS_SERVE_MAX_INFLIGHT_BYTES", int),
            "max_inflight_rows": _setting("MLSYS_SERVE_MAX_INFLIGHT_ROWS", int),
            "header_timeout_seconds": _setting("MLSYS_SERVE_HEADER_TIMEOUT_SECONDS", float),
            "shadow": _setting("MLSYS_SERVE_SHADOW", boolean),
            "log_min_free_bytes": _setting("MLSYS_SERVE_LOG_MIN_FREE_MB", int) << 20,
            "log_retention_days": retention if retention > 0 else None,
            "online_dir": online_dir(),
            "log_dir": prediction_log_dir(),
        }
        return cls(**{**values, **overrides})


def registry_models(system: System) -> RegistryModels:
    from mlsys_assets.resources import MlflowStore

    return RegistryModels(MlflowStore.from_env().registry(system))


class SystemService:
    """Everything that answers for one system. `start` loads in the background: `ready` says when it is done."""

    def __init__(self, system: System, config: ServeConfig, source: ModelSource | None = None) -> None:
        self.system, self.config = system, config
        self.schema = RequestSchema.of(system)
        self.models = ModelWatcher(system, source or registry_models(system), config.online_dir, config.shadow)
        self.lookups = LookupStore(system, config.online_dir)
        self.log = PredictionLog(config.log_dir / system.name, in_range=partial(in_partitions, system.partitions),
                                 min_free_bytes=config.log_min_free_bytes, retention_days=config.log_retention_days)
        self.paths = Paths(system, self.schema, self.models, self.lookups, self.log)
        self.shadow = Shadow(self.paths, config.shadow)
        self.rows = RowPath(self.paths, self.shadow)
        self.table = TablePath(self.paths, self.shadow, config.max_batch_rows, config.batch_linger_seconds)
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"model-poller-{system.name}", daemon=True)

    def start(self) -> None:
        """Start the scoring threads and the poller, which loads the models first (then `ready` is set)."""
        self.table.start()
        self.shadow.start()
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        self.table.stop()
        self.shadow.drain(timeout=5)
        self.shadow.stop()
        self.log.close()
        if self._poller.is_alive():
            self._poller.join(timeout=30)

    def refresh(self) -> None:
        self.lookups.refresh()
        self.models.refresh()

    def _poll(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # still ready: the baseline answers, and /health says why
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s: first load failed", self.system.name)
        self.ready.set()
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any one failure
                log.exception("%s: refresh failed", self.system.name)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until answers so far are shadow-scored and on disk (tests; `served_predictions` reads files)."""
        return self.shadow.drain(timeout) and self.log.flush(timeout)

    def prepare(self, parsed: Parsed, request_id: str, received: float) -> Job:
        """The request's validated rows as a job; on the row path (small requests) it is answered at once."""
        rows = self.schema.rows(parsed.records, parsed.columns, parsed.text)
        if self.rows.available is False and any(c is not None for c in rows.carried):
            carried = sorted({s for c in rows.carried if c for s in c})
            raise RequestError(400, "INVALID_PARAMETER_VALUE", f"system {self.system.name!r} has no row-wise "
                               f"feature definition, so a request cannot carry {', '.join(carried)} values")
        job = Job(rows=rows, request_id=request_id, received=received)
        if len(rows) and self.rows.available and (
                len(rows) <= self.config.row_path_max_rows or any(c is not None for c in rows.carried)):
            job.answer = self.rows.answer(job)
        return job

    def health(self) -> dict:
        models = self.models
        serving = models.serving()
        log_status = self.log.status()
        reasons = [r for r in (models.problem, self.load_error, models.registry_error) if r]
        if not log_status["logging"]:
            reasons.append(f"answers are not being logged: {log_status['problem']}")
        if serving.compiled is None and self.rows.available:
            reasons.append(f"the row path is off for this model: {serving.not_compiled}")
        degraded = (serving.is_fallback or models.champion_alias != serving.version or not log_status["logging"]
                    or not self.ready.is_set())
        return {
            "status": "loading" if not self.ready.is_set() else "degraded" if degraded else "ok",
            "system": self.system.name, "model_name": self.system.model_name,
            "serving": serving.describe(), "champion_alias": models.champion_alias,
            "reason": models.problem, "reasons": reasons, "registry_error": models.registry_error,
            "challenger": models.challenger.describe() if models.challenger else None,
            "challenger_problem": models.problems[CHALLENGER], "shadow_error": self.shadow.last_error,
            "shadow": self.config.shadow, "baseline": models.baseline.source,
            "row_path": self.rows.available and serving.compiled is not None,
            "answered_rows": self.table.answered_rows + self.rows.answered_rows,
            "row_path_rows": self.rows.answered_rows, "table_path_rows": self.table.answered_rows,
            "shadow_rows": self.shadow.scored_rows, "shadow_dropped": self.shadow.dropped,
            "log": log_status, "logged_rows": log_status["written"],
            "published_lookups": {s.name: len(self.lookups.partitions(s.name)) for s in self.system.lookups},
            "unchecked_rules": self.schema.unchecked,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
        }

    def version(self) -> dict:
        from importlib.metadata import version

        serving = self.models.serving()
        return {"server": "mlsys serve", "system": self.system.name, "mlflow_version": version("mlflow"),
                "model_name": self.system.model_name, "model_version": serving.version,
                "fallback": serving.is_fallback}


def in_partitions(partitions: Any, key: str) -> bool:
    """Whether a partition key is one of the declared partitions (a string of another shape is not)."""
    try:
        return key_in_range(partitions.grain, key, partitions.start, partitions.end)
    except ValueError:  # not a key of this grain
        return False
