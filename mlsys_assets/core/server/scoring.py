"""The two scoring paths of a system's server, and shadow scoring.

- The row path: small requests, answered on the event loop itself, row by row in plain Python: the declared
  row-wise features (`Features.row`) and the model compiled by `core.rowmodel` (or the baseline's rates). pandas' and
  scikit-learn's fixed cost per call (~10-25 ms) is most of what one row costs on the table path; this path answers
  one row in well under a millisecond with the same value (the engine checks the row-wise features against the
  table ones on every partition; tests hold the compiled model to `predict_proba`).
- The table path: every other request goes to one scoring thread, and requests waiting together are scored as one
  batch (one `build_features`, one `core.model.scores`: the code batch scoring runs), which is where rows/s for big
  requests comes from. OpenMP is pinned to one thread there: HistGradientBoosting's pool costs more than it saves
  on a few rows and stalls when the machine is busy.
- Shadow scoring: @challenger scores the features the champion was given, after the answers are out, and is logged
  with role "challenger". Best effort: when it falls behind, batches are skipped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlsys_assets.core.partitioning import key_of
from mlsys_assets.core.server.lookups import Carried, LookupStore, Recorder
from mlsys_assets.core.server.models import BASELINE, CHAMPION, LoadedModel, ModelWatcher
from mlsys_assets.core.server.predictionlog import PredictionLog, jsonable
from mlsys_assets.core.server.protocol import RequestError
from mlsys_assets.core.server.schema import Rows, frame_of, moment_of
from mlsys_assets.core.worker import QueueWorker

if TYPE_CHECKING:
    import pandas as pd

    from mlsys_assets.core.server.schema import RequestSchema
    from mlsys_assets.declaration import System

log = logging.getLogger("mlsys.serve")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Job:
    """One request's rows on their way to an answer; `features[i]` is row i's row-wise features, when computed."""

    rows: Rows
    request_id: str
    received: float  # time.perf_counter() when the request arrived
    features: list[dict[str, Any] | None] | None = None
    sources: list[dict[str, str]] | None = None
    served_at: str = field(default_factory=_now)
    done: threading.Event = field(default_factory=threading.Event)
    on_done: Callable[[], None] | None = None  # called from the scoring thread once answer or error is set
    answer: list[dict] | None = None
    error: BaseException | None = None
    model: LoadedModel | None = None

    def finish(self) -> None:
        self.done.set()
        if self.on_done is not None:
            self.on_done()


def _single_openmp_thread() -> None:
    """OpenMP's limit is per thread: called first in each thread that predicts."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")


class Paths:
    """What both paths share for one system: its declaration, models, lookups and log, and how an answer and its
    log records are shaped."""

    def __init__(self, system: System, schema: RequestSchema, models: ModelWatcher, lookups: LookupStore,
                 log_: PredictionLog) -> None:
        self.system, self.schema, self.models, self.lookups, self.log = system, schema, models, lookups, log_
        spec = system.features
        self.row_features = spec.row.resolve() if spec.row is not None else None
        self.key, self.time = spec.id_column, spec.time_column
        self.binary = system.prediction.task == "binary"
        self.threshold = system.prediction.threshold
        self.model_name = system.model_name
        self.columns = [spec.id_column, spec.time_column, *spec.columns]
        self.kinds = {name: rule.kind for name, rule in schema.fields.items()}

    def featurize_rows(self, rows: Rows) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Row-wise features of every row, and where each lookup row came from (request, published, missing)."""
        features, sources = [], []
        names = [s.name for s in self.system.lookups]
        for i, record in enumerate(rows.records):
            carried = rows.carried[i] or {}
            lookups = {n: Carried(carried[n]) if n in carried else Recorder(self.lookups.index(n)) for n in names}
            try:
                features.append(self.row_features(record, lookups))
            except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                raise RequestError(400, "INVALID_PARAMETER_VALUE", f"row {i} cannot be featurized: "
                                   f"{type(exc).__name__}: {exc}",
                                   [{"row": i, "field": None, "problem": f"{type(exc).__name__}: {exc}"}]) from exc
            sources.append({n: lookup.source for n, lookup in lookups.items()})
        return features, sources

    def featurize_table(self, rows: Rows) -> pd.DataFrame:
        """The feature definition's table executor on the rows, with the published lookup rows of their partitions."""
        from mlsys_assets.core.featurize import build_features
        from mlsys_assets.core.partitioning import keys_of
        from mlsys_assets.core.sources import partition_times

        frame = frame_of(rows.records, self.kinds, [*self.schema.fields, *self.schema.outcome])
        keys = [k for k in keys_of(self.system.partitions.grain, partition_times(self.system.entity, frame))
                if k is not None]
        context = {s.name: self.lookups.frames(s.name, keys) for s in self.system.lookups}
        try:
            return build_features(self.system, frame, context)
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
            raise RequestError(400, "INVALID_PARAMETER_VALUE", f"the rows cannot be featurized: "
                               f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    def answers(self, job: Job, values: Sequence[float], ids: Sequence[Any], used: LoadedModel) -> list[dict]:
        name = BASELINE if used.is_fallback else self.model_name
        common = {"model_version": used.version, "model_name": name, "fallback": used.is_fallback,
                  "request_id": job.request_id}
        if self.binary:
            return [{"probability": float(v), "label": int(v >= self.threshold), **common, self.key: jsonable(i)}
                    for v, i in zip(values, ids, strict=True)]
        return [{"prediction": float(v), **common, self.key: jsonable(i)} for v, i in zip(values, ids, strict=True)]

    def log_answers(self, features: pd.DataFrame | list[dict[str, Any]], rows: Rows, sources: list[dict[str, str]],
                    meta: list[tuple[str, str, float, int]], values: Sequence[float], used: LoadedModel,
                    role: str | None = None) -> None:
        """Queue the log records of answered rows (built in the log's writer thread, not the request's)."""
        name = BASELINE if used.is_fallback else self.model_name
        role = role or (CHAMPION if used.is_fallback else used.role)

        def build() -> list[dict]:
            if isinstance(features, list):
                columns = {c: [row.get(c) for row in features] for c in self.columns}
            else:
                columns = {c: features[c].tolist() for c in self.columns}
            records = []
            for i, (request_id, served_at, latency, row) in enumerate(meta):
                moment = moment_of(columns[self.time][i])
                partition = key_of(self.system.partitions.grain, moment) if moment else None
                record = {"request_id": request_id, "row": row, "served_at": served_at, "partition": partition,
                          self.key: jsonable(columns[self.key][i]), "role": role, "model_name": name,
                          "model_version": used.version, self.system.score_column: float(values[i]),
                          "is_fallback": used.is_fallback, "latency_ms": round(latency, 3),
                          "context_source": sources[i], "request": rows.sent[i],
                          "features": {c: jsonable(columns[c][i]) for c in self.system.features.columns}}
                if self.binary:
                    record["predicted_label"] = int(values[i] >= self.threshold)
                records.append(record)
            return records

        self.log.append(build, rows=len(meta))


class RowPath:
    """Small requests in the caller's thread: row-wise features, then the compiled model when there is one."""

    def __init__(self, paths: Paths, shadow: Shadow) -> None:
        self.paths, self.shadow = paths, shadow
        self.answered_rows = 0

    @property
    def available(self) -> bool:
        return self.paths.row_features is not None

    def answer(self, job: Job) -> list[dict] | None:
        """The answer, or None when the serving model has no compiled form: the job then carries the features to
        the table path."""
        paths = self.paths
        job.features, job.sources = features, sources = paths.featurize_rows(job.rows)
        used = paths.models.serving()  # one reference: the model and its compiled form were swapped in together
        if used.compiled is None:
            return None
        values = used.compiled.probabilities(features)
        meta = [(job.request_id, job.served_at, (time.perf_counter() - job.received) * 1000.0, n)
                for n in range(len(features))]
        paths.log_answers(features, job.rows, sources, meta, values, used)
        self.shadow.submit(features, job.rows, sources, meta, used.version)
        self.answered_rows += len(features)
        return paths.answers(job, values, [f[paths.key] for f in features], used)


class TablePath(QueueWorker[Job, list[Job]]):
    """The one thread that scores on the table path. It takes every request waiting when it is free (up to
    `max_batch_rows` rows), so concurrent requests share one pass through pandas and the model."""

    def __init__(self, paths: Paths, shadow: Shadow, max_batch_rows: int = 2048, linger_seconds: float = 0.005):
        super().__init__(f"scorer-{paths.system.name}")
        self.paths, self.shadow = paths, shadow
        self.max_batch_rows, self.linger_seconds = max_batch_rows, linger_seconds
        self._expected = 1
        self.answered_rows = 0

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand; requests still waiting get a 503 at once rather than a timeout."""
        super().stop(timeout)
        with self._cond:
            while self._queue:
                job = self._queue.popleft()
                job.error = RequestError(503, "TEMPORARILY_UNAVAILABLE", "the server is stopping")
                job.finish()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopped:
                raise RequestError(503, "TEMPORARILY_UNAVAILABLE", "the server is stopping")
            self._put(job)

    def _setup_thread(self) -> None:
        _single_openmp_thread()

    def _take(self) -> list[Job] | None:
        """The jobs waiting, up to `max_batch_rows` rows. When the last batch held several requests (concurrent
        clients), wait up to `linger_seconds` for as many: one batch of k rows costs far less than k of one."""
        deadline = time.perf_counter() + self.linger_seconds
        while not self._stopped and len(self._queue) < self._expected:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        if self._stopped:
            return None
        batch = [self._queue.popleft()]
        rows = len(batch[0].rows)
        while self._queue and rows + len(self._queue[0].rows) <= self.max_batch_rows:
            batch.append(self._queue.popleft())
            rows += len(batch[-1].rows)
        self._expected = len(batch)
        return batch

    def _handle(self, batch: list[Job]) -> None:
        try:
            self._score(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].finish()
                return
            for job in batch:  # one odd request must not fail the others it was batched with
                try:
                    self._score([job])
                except Exception as single:
                    job.error = single
                    job.finish()

    def _features(self, batch: list[Job]) -> tuple[pd.DataFrame, list[dict[str, str]]]:
        import pandas as pd

        paths = self.paths
        table_rows = [(job, i) for job in batch if job.features is None for i in range(len(job.rows))]
        table = None
        if table_rows:
            records = [r for job in batch if job.features is None for r in job.rows.records]
            table = paths.featurize_table(Rows(records, [None] * len(records), [None] * len(records)))
        parts, sources, n = [], [], 0
        for job in batch:
            if job.features is None:
                parts.append(table.iloc[n:n + len(job.rows)])
                n += len(job.rows)
                sources += [{s.name: "published" for s in paths.system.lookups}] * len(job.rows)
            else:
                parts.append(pd.DataFrame(job.features, columns=paths.columns))
                sources += job.sources
        features = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        return features.reset_index(drop=True), sources

    def _score(self, batch: list[Job]) -> None:
        from mlsys_assets.core.model import scores

        paths = self.paths
        features, sources = self._features(batch)
        used = paths.models.serving()
        try:
            values = scores(paths.system, used.model, features)
        except Exception as exc:
            if used.is_fallback:
                raise
            log.exception("%s: @champion version %s failed to score; answering with the baseline",
                          paths.system.name, used.version)
            paths.models.scoring_failed(exc)
            used = paths.models.baseline
            values = scores(paths.system, used.model, features)
        ids = features[paths.key].tolist()
        finished = time.perf_counter()
        meta = [(job.request_id, job.served_at, (finished - job.received) * 1000.0, n)
                for job in batch for n in range(len(job.rows))]
        rows = Rows([r for job in batch for r in job.rows.records], [c for job in batch for c in job.rows.carried],
                    [s for job in batch for s in job.rows.sent])
        paths.log_answers(features, rows, sources, meta, values, used)  # queued before the answers go out
        self.shadow.submit(features, rows, sources, meta, used.version)
        start = 0
        for job in batch:
            end = start + len(job.rows)
            job.answer, job.model = paths.answers(job, values[start:end], ids[start:end], used), used
            start = end
        self.answered_rows += len(rows)
        for job in batch:
            job.finish()


class Shadow(QueueWorker[tuple, tuple]):
    """Scores @challenger on the champion's features after the answers are out, logged with role "challenger"
    (its latency_ms is the challenger's scoring time for the batch)."""

    def __init__(self, paths: Paths, enabled: bool, max_pending: int = 256) -> None:
        super().__init__(f"shadow-{paths.system.name}")
        self.paths, self.enabled, self.max_pending = paths, enabled, max_pending
        self.scored_rows = 0
        self.dropped = 0

    def start(self) -> None:
        if self.enabled:
            super().start()

    def submit(self, features: pd.DataFrame | list[dict[str, Any]], rows: Rows, sources: list[dict[str, str]],
               meta: list[tuple], champion_version: str) -> None:
        challenger = self.paths.models.challenger
        if not self.enabled or challenger is None or challenger.version == champion_version:
            return
        with self._cond:
            if len(self._queue) >= self.max_pending:
                self.dropped += 1
                return
            self._put((features, rows, sources, meta))

    def _setup_thread(self) -> None:
        _single_openmp_thread()

    def _take(self) -> tuple | None:
        return None if self._stopped else self._queue.popleft()

    def _handle(self, work: tuple) -> None:
        import pandas as pd

        from mlsys_assets.core.model import scores

        features, rows, sources, meta = work
        challenger = self.paths.models.challenger
        if challenger is None:
            return
        started = time.perf_counter()
        if isinstance(features, list) and challenger.compiled is not None:
            values = challenger.compiled.probabilities(features)
        else:
            table = pd.DataFrame(features, columns=self.paths.columns) if isinstance(features, list) else features
            values = scores(self.paths.system, challenger.model, table)
        took = (time.perf_counter() - started) * 1000.0
        shadow_meta = [(request_id, served_at, took, row) for request_id, served_at, _, row in meta]
        self.paths.log_answers(features, rows, sources, shadow_meta, values, challenger)
        self.scored_rows += len(meta)
