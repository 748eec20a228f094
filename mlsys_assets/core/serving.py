"""`mlsys serve`: the registered model's @champion behind MLflow's scoring protocol, on 127.0.0.1 only.

Why it is built this way:
- The standard library's ThreadingHTTPServer (HTTP/1.1, keep-alive): no extra dependency, little overhead.
  HTTP threads read, parse and validate requests, and score small ones themselves (below).
- Small requests (up to `row_path_max_rows` rows) are answered in the request's own thread, row by row in
  plain Python: `core.features.row_features` (the row-wise executor of the one feature definition) and the
  champion compiled by `core.rowmodel` when it is loaded (its trees as lists, walked as scikit-learn walks
  them). pandas' and scikit-learn's fixed cost per call (~25 ms) is most of what one row costs on the table
  path; this path answers one row in well under a millisecond, with the same probabilities (tests hold both
  executors equal to the table path's). A model `core.rowmodel` cannot compile (logistic regression, the
  baseline) is always scored on the table path.
- Larger requests go to one scoring thread, and requests waiting together are scored as one batch (one
  `build_features`, one `delay_probability`), which is where rows/s for big requests comes from; OpenMP is
  pinned to one thread there, because HistGradientBoosting's thread pool costs more than it saves on a few
  rows and stalls when the machine is busy.
- Features come from `core.features` and probabilities from `core.model.delay_probability` (or its compiled
  twin), the code batch scoring runs. Weather comes with the request or from the online store the pipeline
  publishes (`core.online`): the server never opens the DuckDB warehouse, which allows one process at a time.
- A poller watches @champion (and @challenger for shadow scoring) and swaps a fully loaded (and compiled) model
  in by one reference assignment, so a promotion or rollback is picked up without a restart or a failed request.
- Without a loadable champion the baseline answers (`fallback: true`), and /health says `degraded` with
  HTTP 200: the server still answers, so a load balancer should keep it; /ping is 200 whenever it is up.
- Request rules are the landing file's (the pandera FlightSchema/WeatherSchema fields), so a row the batch
  pipeline would quarantine is refused with a 400 naming the field and why.

No Dagster import at module level: `ServeConfig.from_env` reads the shared settings (`MlflowStore`,
the declaration) when the server starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mlsys_assets.core.online import (
    BASELINE_COLUMNS,
    PredictionLog,
    WeatherKey,
    WeatherStore,
    baseline_path,
    file_signature,
    jsonable,
    online_dir,
    prediction_log_dir,
    read_baseline,
    weather_frame,
)
from mlsys_assets.core.rowmodel import RowModel, compile_pipeline
from mlsys_assets.core.worker import QueueWorker

# The server is the flights system's until serving is generated from declarations (issue 16).
from mlsys_assets.systems.flights.features import (
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    REQUEST_COLUMNS,
    WEATHER_FEATURES,
    build_features,
    row_features,
)

HOST = "127.0.0.1"
CHAMPION, CHALLENGER, BASELINE = "champion", "challenger", "baseline"
INPUT_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
MAX_LISTED_ERRORS = 50

log = logging.getLogger("mlsys.serve")

def _flights():  # -> declaration.System
    from mlsys_assets.systems.flights.declaration import flights

    return flights.with_env()


def serves(system_name: str) -> bool:
    """Whether this server is the named system's (it is the flights system's own until issue 16)."""
    return system_name == _flights().name


def _env(name: str, cast: Callable[[str], Any]) -> Any:
    from mlsys_assets.settings import setting

    raw = setting(name)
    try:
        return cast(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from exc


def _boolean(raw: str) -> bool:
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected a boolean (true/false)")


class ModelSource(Protocol):
    """Where models come from: `RegistryModels` in production, anything alike in a test."""

    model_name: str

    def alias_version(self, alias: str) -> str | None: ...

    def load(self, version: str) -> object: ...


@dataclass(frozen=True)
class RegistryModels:
    """The MLflow registry, read only: a missing SQLite store is "no champion", never created by the server."""

    registry: Any  # core.registry.Registry (typed loosely: importing it imports MLflow)

    @property
    def model_name(self) -> str:
        return self.registry.model_name

    def alias_version(self, alias: str) -> str | None:
        uri = self.registry.tracking_uri
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            return None
        return self.registry.alias_version(alias)

    def load(self, version: str) -> object:
        import mlflow

        mlflow.set_tracking_uri(self.registry.tracking_uri)  # Registry.load resolves models:/ through these
        mlflow.set_registry_uri(self.registry.tracking_uri)
        return self.registry.load(version)


@dataclass(frozen=True)
class ServeConfig:
    """Everything the server needs, as plain values; `from_env` reads them as the rest of mlsys does."""

    source: ModelSource
    decision_threshold: float
    port: int = 5001
    poll_seconds: float = 5.0
    max_body_bytes: int = 1 << 20
    max_rows: int = 10_000
    shadow: bool = True
    online_dir: Path = field(default_factory=online_dir)
    log_dir: Path = field(default_factory=prediction_log_dir)
    max_batch_rows: int = 2048
    batch_linger_seconds: float = 0.005
    # Requests up to this many rows take the row-wise path (when the model compiles). Measured over HTTP on 2 cores:
    # 64 rows take ~20 ms row-wise against ~45 ms on the table path, and the two meet at ~100-130 rows (sooner with
    # concurrent requests, which the table path batches and the row path cannot).
    row_path_max_rows: int = 64
    answer_timeout_seconds: float = 30.0

    @classmethod
    def from_env(cls, **overrides: Any) -> ServeConfig:
        from mlsys_assets.resources import MlflowStore

        values = {
            "source": RegistryModels(MlflowStore.from_env().registry(_flights())),
            "decision_threshold": _flights().prediction.threshold,
            "port": _env("MLSYS_SERVE_PORT", int),
            "poll_seconds": _env("MLSYS_SERVE_POLL_SECONDS", float),
            "max_body_bytes": _env("MLSYS_SERVE_MAX_BODY_BYTES", int),
            "max_rows": _env("MLSYS_SERVE_MAX_ROWS", int),
            "shadow": _env("MLSYS_SERVE_SHADOW", _boolean),
        }
        return cls(**{**values, **overrides})


# ---------------------------------------------------------------------------------------------------------------
# Requests: any of MLflow's JSON formats -> validated rows, or a RequestError naming each field and why.


class RequestError(Exception):
    """An answer other than 200, with MLflow's error body."""

    def __init__(self, status: int, error_code: str, message: str, errors: Sequence[dict] = ()) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message, self.errors = status, error_code, message, list(errors)

    def body(self) -> dict:
        body = {"error_code": self.error_code, "message": self.message}
        return body | ({"errors": self.errors[:MAX_LISTED_ERRORS]} if self.errors else {})


@dataclass(frozen=True)
class FieldRule:
    """What a request field must be: its kind, whether null is allowed, and its checks as (kind, value)."""

    name: str
    kind: str  # "integer", "number" or "text"
    nullable: bool
    checks: tuple[tuple[str, Any], ...]

    def problem(self, value: Any) -> tuple[Any, str | None]:
        """The value as the model needs it, and what is wrong with it (None when nothing is)."""
        if value is None:
            return None, None if self.nullable else "missing value (null)"
        if self.kind == "text":
            if not isinstance(value, str):
                return None, f"expected a string, got {_show(value)}"
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"expected a number, got {_show(value)}"
        elif self.kind == "integer":
            if isinstance(value, float) and not value.is_integer():
                return None, f"expected a whole number, got {_show(value)}"
            value = int(value)
        else:
            value = float(value)
        for check, bound in self.checks:
            if check == "isin" and value not in bound:
                listed = f"one of {', '.join(sorted(bound))}" if len(bound) <= 10 else f"one of {len(bound)} known"
                return None, f"unknown {self.name} {_show(value)}: expected {listed}"
            if check == "ge" and value < bound:
                return None, f"must be at least {bound}, got {_show(value)}"
            if check == "gt" and value <= bound:
                return None, f"must be greater than {bound}, got {_show(value)}"
            if check == "le" and value > bound:
                return None, f"must be at most {bound}, got {_show(value)}"
            if check == "lt" and value >= bound:
                return None, f"must be less than {bound}, got {_show(value)}"
            if check == "clock" and value % 100 >= 60:
                return None, f"impossible clock time {value:04d}: minutes must be below 60"
        return value, None


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_PANDERA_CHECKS = {"greater_than_or_equal_to": ("ge", "min_value"), "greater_than": ("gt", "min_value"),
                   "less_than_or_equal_to": ("le", "max_value"), "less_than": ("lt", "max_value"),
                   "isin": ("isin", "allowed_values")}


def request_rules() -> dict[str, FieldRule]:
    """The rules of each request field, read from the landing files' pandera schemas (imported once, at start).

    Clock times get the schema's `times_are_clock_times` rule too (minutes below 60). A schema check this
    cannot translate stops the server at start, rather than being skipped silently.
    """
    from mlsys_assets.systems.flights.schemas import FlightSchema, WeatherSchema

    rules = {}
    for schema, names in ((FlightSchema.to_schema(), REQUEST_COLUMNS), (WeatherSchema.to_schema(), WEATHER_FEATURES)):
        for name in names:
            column = schema.columns[name]
            dtype = str(column.dtype).lower()
            kind = "integer" if "int" in dtype else "number" if "float" in dtype else "text"
            checks = []
            for check in column.checks:
                if check.name not in _PANDERA_CHECKS:
                    raise ValueError(f"serving cannot apply the {check.name} check of {name}; teach request_rules")
                short, statistic = _PANDERA_CHECKS[check.name]
                bound = check.statistics[statistic]
                checks.append((short, frozenset(bound) if short == "isin" else bound))
            if name in ("sched_dep_time", "sched_arr_time"):
                checks.append(("clock", None))
            rules[name] = FieldRule(name, kind, bool(column.nullable), tuple(checks))
    return rules


@dataclass
class RequestRows:
    """Validated rows: the request columns as typed lists, the weather a row carried (None: look it up), and
    each row's fields as sent (for the prediction log)."""

    columns: dict[str, list]
    weather: list[tuple[float | None, ...] | None]
    raw: list[dict]

    def __len__(self) -> int:
        return len(self.raw)

    @classmethod
    def concat(cls, parts: Sequence[RequestRows]) -> RequestRows:
        if len(parts) == 1:
            return parts[0]
        return cls(columns={c: [v for p in parts for v in p.columns[c]] for c in REQUEST_COLUMNS},
                   weather=[w for p in parts for w in p.weather], raw=[r for p in parts for r in p.raw])

    def flights(self) -> pd.DataFrame:
        """The rows as a flights frame for `build_features` (validated Python ints and strings: int64 and str
        columns; built from lists, about 4x faster than typed Series for one row)."""
        return pd.DataFrame(self.columns, columns=list(REQUEST_COLUMNS))

    def weather_keys(self) -> list[WeatherKey]:
        c = self.columns
        return list(zip(c["origin"], c["year"], c["month"], c["day"], [t // 100 for t in c["sched_dep_time"]],
                        strict=True))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_body(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(400, "MALFORMED_REQUEST", f"the body is not valid JSON: {exc}") from exc


def records_of(payload: Any, max_rows: int) -> tuple[list[dict], list[str] | None]:
    """Rows as dicts from any input format, and the column names when the format states them once."""
    if not isinstance(payload, dict) or sum(k in payload for k in INPUT_FORMATS) != 1:
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise RequestError(400, "BAD_REQUEST", f"expected a JSON object with exactly one of {list(INPUT_FORMATS)}, "
                                               f"got {found}")
    key = next(k for k in INPUT_FORMATS if k in payload)
    data = payload[key]

    def too_many(rows: int) -> None:
        if rows > max_rows:
            raise RequestError(413, "RESOURCE_LIMIT_EXCEEDED", f"{rows} rows in one request; the limit is {max_rows}")

    if key == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list) \
                or not isinstance(data.get("data"), list):
            raise RequestError(400, "BAD_REQUEST", 'dataframe_split needs {"columns": [...], "data": [[...], ...]}')
        columns, rows = data["columns"], data["data"]
        too_many(len(rows))
        bad = [{"row": i, "field": None, "problem": f"expected a list of {len(columns)} values, got {_show(r)}"}
               for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != len(columns)]
        if bad:
            raise RequestError(400, "INVALID_PARAMETER_VALUE", f"{len(bad)} rows do not match the columns", bad)
        return [dict(zip(columns, r, strict=True)) for r in rows], [str(c) for c in columns]
    if isinstance(data, dict) and key in ("inputs", "instances"):
        lengths = {len(v) if isinstance(v, list) else -1 for v in data.values()}
        if -1 in lengths or len(lengths) > 1:
            raise RequestError(400, "BAD_REQUEST", f"{key} as columns needs lists of equal length for every column")
        rows = lengths.pop() if lengths else 0
        too_many(rows)
        return [{c: data[c][i] for c in data} for i in range(rows)], list(data)
    if not isinstance(data, list):
        raise RequestError(400, "BAD_REQUEST", f"{key} needs a list of records")
    too_many(len(data))
    bad = [{"row": i, "field": None, "problem": f"expected an object of fields, got {_show(r)}"}
           for i, r in enumerate(data) if not isinstance(r, dict)]
    if bad:
        raise RequestError(400, "INVALID_PARAMETER_VALUE", f"{len(bad)} rows are not objects", bad)
    return data, None


def validate_rows(records: list[dict], columns: list[str] | None, rules: dict[str, FieldRule]) -> RequestRows:
    """Typed rows, or a 400 listing every problem (row, field, problem). Unknown fields are ignored."""
    errors: list[dict] = []
    missing = [c for c in REQUEST_COLUMNS if columns is not None and c not in columns]
    errors += [{"row": None, "field": c, "problem": "missing column"} for c in missing]
    checked = [c for c in REQUEST_COLUMNS if c not in missing]
    typed: dict[str, list] = {c: [] for c in REQUEST_COLUMNS}
    weather: list[tuple[float | None, ...] | None] = []
    raw: list[dict] = []
    for i, record in enumerate(records):
        values: dict[str, Any] = {}
        for name in checked:
            if name not in record:
                errors.append({"row": i, "field": name, "problem": "missing field"})
                continue
            value, problem = rules[name].problem(record[name])
            if problem:
                errors.append({"row": i, "field": name, "problem": problem})
            values[name] = value
        for name in REQUEST_COLUMNS:
            typed[name].append(values.get(name))
        if all(values.get(c) is not None for c in ("year", "month", "day")):
            try:
                date(values["year"], values["month"], values["day"])
            except ValueError:
                errors.append({"row": i, "field": "day", "problem": f"no such date: {values['year']}-"
                                                                   f"{values['month']:02d}-{values['day']:02d}"})
        carried = None
        if any(name in record for name in WEATHER_FEATURES):
            observed = []
            for name in WEATHER_FEATURES:
                value, problem = rules[name].problem(record.get(name))
                if problem:
                    errors.append({"row": i, "field": name, "problem": problem})
                observed.append(value)
            carried = tuple(observed)
        weather.append(carried)
        raw.append({k: record[k] for k in (*REQUEST_COLUMNS, *WEATHER_FEATURES) if k in record})
    if errors:
        listed = "; ".join(f"{'row ' + str(e['row']) + ' ' if e['row'] is not None else ''}{e['field']}: "
                           f"{e['problem']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise RequestError(400, "INVALID_PARAMETER_VALUE", f"{len(errors)} problems in the request: {listed}{more}",
                           errors)
    return RequestRows(typed, weather, raw)


# ---------------------------------------------------------------------------------------------------------------
# Models: the champion (or the baseline) and the challenger, swapped in whole by a poller.


@dataclass(frozen=True)
class LoadedModel:
    role: str  # champion, challenger or baseline
    version: str  # the registry version, or "baseline"
    model: object
    loaded_at: str
    source: str = ""
    compiled: RowModel | None = None  # the model for the row-wise path (`core.rowmodel`), when it compiles

    @property
    def is_fallback(self) -> bool:
        return self.role == BASELINE

    def describe(self) -> dict:
        return {"role": self.role, "model_version": self.version, "loaded_at": self.loaded_at,
                "fallback": self.is_fallback} | ({"source": self.source} if self.source else {})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ModelWatcher:
    """Keeps `champion`, `challenger` and `baseline` current. Readers take one reference per batch, and a
    new model is assigned only once fully loaded, so a swap never fails or mixes a request."""

    def __init__(self, source: ModelSource, online: Path, shadow: bool) -> None:
        self.source = source
        self.online = online
        self.shadow = shadow
        self.champion: LoadedModel | None = None
        self.challenger: LoadedModel | None = None
        self.baseline = self._load_baseline(None)
        self.champion_alias: str | None = None
        self.problems: dict[str, str | None] = {CHAMPION: "not started", CHALLENGER: None}
        self.registry_error: str | None = None
        self._baseline_signature: tuple | None = None
        self._lock = threading.Lock()  # one refresh at a time (the poller, or a test calling refresh)

    @property
    def problem(self) -> str | None:
        """Why the champion is not what answers (None when it is)."""
        return self.problems[CHAMPION]

    def serving(self) -> LoadedModel:
        return self.champion or self.baseline

    def refresh(self) -> None:
        with self._lock:
            self.registry_error = None
            self._refresh_baseline()
            self._refresh(CHAMPION)
            if self.shadow:
                self._refresh(CHALLENGER)

    def _refresh_baseline(self) -> None:
        signature = file_signature(baseline_path(self.online))
        if signature != self._baseline_signature:
            try:
                self.baseline = self._load_baseline(read_baseline(self.online))
                self._baseline_signature = signature
            except Exception as exc:  # a bad file keeps the previous baseline
                log.warning("published baseline rates could not be read: %s", exc)

    def _load_baseline(self, rates: pd.DataFrame | None) -> LoadedModel:
        from mlsys_assets.core.model import RateBaseline

        by = _flights().model.baseline_by
        if rates is None or rates.empty:
            empty = pd.DataFrame({c: [] for c in BASELINE_COLUMNS})
            return LoadedModel(BASELINE, BASELINE, RateBaseline.from_frame(empty, by), _now(), "constant global rate")
        return LoadedModel(BASELINE, BASELINE, RateBaseline.from_frame(rates, by), _now(),
                           f"published rates ({len(rates)} carrier x hour band)")

    def _refresh(self, role: str) -> None:
        current = self.champion if role == CHAMPION else self.challenger
        try:
            version = self.source.alias_version(role)
        except Exception as exc:  # registry unreachable: keep what is loaded
            self.registry_error = f"{type(exc).__name__}: {exc}"
            log.warning("could not read @%s: %s", role, self.registry_error)
            return
        if role == CHAMPION:
            self.champion_alias = version
        if version is None:
            if current is not None:
                log.info("@%s was removed; version %s is no longer used", role, current.version)
            self._set(role, None)
            self._problem(role, f"registered model {self.source.model_name!r} has no @{role}"
                          if role == CHAMPION else None)
            return
        if current is not None and current.version == version:
            self._problem(role, None)
            return
        try:
            model = self.source.load(version)
        except Exception as exc:  # keep answering with what is loaded (or the baseline), and say so
            self._problem(role, f"@{role} is version {version} but it could not be loaded: "
                                f"{type(exc).__name__}: {exc}")
            return
        compiled = compile_pipeline(model)  # None when it cannot be: the table path scores it then
        self._set(role, LoadedModel(role, version, model, _now(), compiled=compiled))  # model and compiled at once
        self._problem(role, None)
        log.info("@%s is now version %s%s%s", role, version, f" (was {current.version})" if current else "",
                 "" if compiled else "; not compiled, so every request takes the table path")

    def _problem(self, role: str, problem: str | None) -> None:
        if problem and problem != self.problems[role]:
            log.warning(problem)  # once per new problem, not at every poll
        self.problems[role] = problem

    def _set(self, role: str, loaded: LoadedModel | None) -> None:
        if role == CHAMPION:
            self.champion = loaded
        else:
            self.challenger = loaded

    def scoring_failed(self, exc: Exception) -> None:
        version = self.champion.version if self.champion else "?"
        self._problem(CHAMPION, f"@champion version {version} failed to score: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------------------------
# Scoring: one thread, batches of waiting requests; shadow scoring and logging after the answers are out.


@dataclass
class Job:
    rows: RequestRows
    request_id: str
    received: float  # time.perf_counter() when the request arrived
    served_at: str = field(default_factory=_now)
    done: threading.Event = field(default_factory=threading.Event)
    answer: list[dict] | None = None
    error: BaseException | None = None


def _single_openmp_thread() -> None:
    """OpenMP's limit is per thread: called first in each thread that predicts."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")


def _row_features(rows: RequestRows, weather: WeatherStore) -> tuple[list[dict[str, Any]], list[str]]:
    """Feature rows through `row_features` (the row-wise executor), and where each row's weather came from: as
    `_features` gives them, row for row."""
    keys = rows.weather_keys()
    found = weather.find(key for key, carried in zip(keys, rows.weather, strict=True) if carried is None)
    columns = [rows.columns[c] for c in REQUEST_COLUMNS]
    features, sources = [], []
    for i, (key, carried) in enumerate(zip(keys, rows.weather, strict=True)):
        row = dict(zip(REQUEST_COLUMNS, [values[i] for values in columns], strict=True))
        if carried is not None:
            features.append(row_features(row, {key: carried}))
            sources.append("request")
        else:
            features.append(row_features(row, found))
            sources.append("online" if key in found else "missing")
    return features, sources


def _features(rows: RequestRows, weather: WeatherStore) -> tuple[pd.DataFrame, list[str]]:
    """Feature rows through `build_features`, and where each row's weather came from.

    Rows that carry weather are joined to their own values: they are split into groups in which no weather
    key repeats (`build_features` keeps the first observation of a key); all other rows share the online store.
    """
    keys = rows.weather_keys()
    groups, seen = [], {}
    for key, carried in zip(keys, rows.weather, strict=True):
        if carried is None:
            groups.append(0)
        else:
            seen[key] = seen.get(key, 0) + 1
            groups.append(seen[key])
    flights = rows.flights()
    parts, sources = [], ["request" if w is not None else "" for w in rows.weather]
    for group in sorted(set(groups)):
        positions = [i for i, g in enumerate(groups) if g == group]
        if group == 0:
            found = weather.find(keys[i] for i in positions)
            observed = weather_frame(list(found), list(found.values()))
            for i in positions:
                sources[i] = "online" if keys[i] in found else "missing"
        else:
            observed = weather_frame([keys[i] for i in positions], [rows.weather[i] for i in positions])
        part = flights if len(positions) == len(rows) else flights.iloc[positions]
        built = build_features(part, observed)
        built.index = positions
        parts.append(built)
    features = parts[0] if len(parts) == 1 else pd.concat(parts).sort_index()
    return features.reset_index(drop=True), sources


class RowScorer:
    """Small requests, answered in the request's own thread: `row_features` and the champion's compiled model,
    in plain Python. Logging and shadow scoring are queued exactly as the Scorer queues them."""

    def __init__(self, models: ModelWatcher, weather: WeatherStore, log_: PredictionLog, shadow: ShadowScorer,
                 threshold: float, model_name: str) -> None:
        self.models, self.weather, self.log, self.shadow = models, weather, log_, shadow
        self.threshold, self.model_name = threshold, model_name
        self.answered_rows = 0
        self._count = threading.Lock()
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    def answer(self, job: Job) -> list[dict] | None:
        """The answer, or None when the serving model has no compiled form (or the row-wise path failed): then
        the Scorer answers."""
        used = self.models.serving()  # one reference: the model and its compiled form were swapped in together
        compiled = used.compiled
        if compiled is None:
            return None
        if self._stopped:
            raise RequestError(503, "TEMPORARILY_UNAVAILABLE", "the server is stopping")
        rows = job.rows
        try:
            features, sources = _row_features(rows, self.weather)
            probability = [compiled.probability(row) for row in features]
        except Exception:  # a bug here must not cost the answer: the table path can still give it
            log.exception("the row-wise path failed on request %s; scoring it on the table path", job.request_id)
            return None
        labels = [p >= self.threshold for p in probability]
        name = BASELINE if used.is_fallback else self.model_name
        finished = time.perf_counter()
        meta = [(job.request_id, job.served_at, (finished - job.received) * 1000.0, n) for n in range(len(rows))]
        self.log.append(lambda: log_records(features, rows, sources, meta, probability, labels, used, name))
        self.shadow.submit(features, rows, sources, meta, used.version)
        answer = [{"probability": probability[i], "label": int(labels[i]), "model_version": used.version,
                   "model_name": name, "fallback": used.is_fallback, "request_id": job.request_id,
                   "flight_id": features[i]["flight_id"]} for i in range(len(rows))]
        with self._count:
            self.answered_rows += len(rows)
        return answer


class Scorer(QueueWorker[Job, list[Job]]):
    """The one thread that scores on the table path (requests over `row_path_max_rows`, and every request when
    the model has no compiled form). It takes every request waiting when it is free (up to `max_batch_rows`
    rows), so concurrent requests share one pass through pandas and the model."""

    def __init__(self, models: ModelWatcher, weather: WeatherStore, log_: PredictionLog, shadow: ShadowScorer,
                 threshold: float, model_name: str, max_batch_rows: int, linger_seconds: float) -> None:
        super().__init__("scorer")
        self.models, self.weather, self.log, self.shadow = models, weather, log_, shadow
        self.threshold, self.model_name, self.max_batch_rows = threshold, model_name, max_batch_rows
        self.linger_seconds = linger_seconds
        self._expected = 1
        self.answered_rows = 0

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand; requests still waiting get a 503 at once rather than a timeout."""
        super().stop(timeout)
        with self._cond:
            while self._queue:
                job = self._queue.popleft()
                job.error = RequestError(503, "TEMPORARILY_UNAVAILABLE", "the server is stopping")
                job.done.set()

    def submit(self, job: Job, timeout: float) -> list[dict]:
        with self._cond:
            if self._stopped:
                raise RequestError(503, "TEMPORARILY_UNAVAILABLE", "the server is stopping")
            self._put(job)
        if not job.done.wait(timeout):
            raise RequestError(503, "TEMPORARILY_UNAVAILABLE", f"no answer within {timeout:.0f} s; try again")
        if job.error is not None:
            raise job.error
        return job.answer or []

    def _setup_thread(self) -> None:
        _single_openmp_thread()

    def _take(self) -> list[Job] | None:
        """The jobs waiting, up to `max_batch_rows` rows (the first one whatever its size); None to stop.

        When the last batch held several requests (concurrent clients), wait up to `linger_seconds` for as many
        to arrive: clients answered together come back nearly together, and one batch of k rows costs far less
        than k batches of one. A lone client never waits (its last batch held one request).
        """
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
                batch[0].done.set()
                return
            for job in batch:  # one odd request must not fail the others it was batched with
                try:
                    self._score([job])
                except Exception as single:
                    job.error = single
                    job.done.set()

    def _score(self, batch: list[Job]) -> None:
        from mlsys_assets.core.model import scores

        rows = RequestRows.concat([job.rows for job in batch])
        features, sources = _features(rows, self.weather)
        used = self.models.serving()
        try:
            probability = scores(_flights(), used.model, features)
        except Exception as exc:
            if used.is_fallback:
                raise
            log.exception("@champion version %s failed to score; answering with the baseline", used.version)
            self.models.scoring_failed(exc)
            used = self.models.baseline
            probability = scores(_flights(), used.model, features)
        labels = probability >= self.threshold
        flight_ids = features["flight_id"].tolist()
        name = BASELINE if used.is_fallback else self.model_name
        finished = time.perf_counter()
        meta = [(job.request_id, job.served_at, (finished - job.received) * 1000.0, n)
                for job in batch for n in range(len(job.rows))]
        # Queued before the answers go out (two cheap appends), so once a client has its answer, flush() covers it.
        self.log.append(lambda: log_records(features, rows, sources, meta, probability, labels, used, name))
        self.shadow.submit(features, rows, sources, meta, used.version)
        start = 0
        for job in batch:
            job.answer = [{"probability": float(probability[i]), "label": int(labels[i]),
                           "model_version": used.version, "model_name": name, "fallback": used.is_fallback,
                           "request_id": job.request_id, "flight_id": flight_ids[i]}
                          for i in range(start, start + len(job.rows))]
            start += len(job.rows)
        self.answered_rows += len(rows)
        for job in batch:
            job.done.set()


def _feature_values(features: pd.DataFrame | list[dict[str, Any]]) -> dict[str, list]:
    """`KEY_COLUMNS` and `FEATURE_COLUMNS` as column lists, from a table (`build_features`) or from rows
    (`row_features`): the same values either way."""
    names = (*KEY_COLUMNS, *FEATURE_COLUMNS)
    if isinstance(features, list):
        return {c: [row[c] for row in features] for c in names}
    return {c: features[c].tolist() for c in names}  # column lists: 5x cheaper than to_dict("records")


def log_records(features: pd.DataFrame | list[dict[str, Any]], rows: RequestRows, sources: list[str],
                meta: list[tuple[str, str, float, int]], probability: Sequence[float], labels: Sequence[bool],
                used: LoadedModel, model_name: str) -> list[dict]:
    """One prediction-log record per answered row (built in the log's writer thread, not the request's)."""
    values = _feature_values(features)
    flight_ids, flight_dates = values["flight_id"], values["flight_date"]
    return [{"request_id": request_id, "row": row, "served_at": served_at, "flight_id": flight_ids[i],
             "flight_date": flight_dates[i], "role": CHAMPION if used.is_fallback else used.role,
             "model_name": model_name, "model_version": used.version, "probability": float(probability[i]),
             "predicted_label": int(labels[i]), "is_fallback": used.is_fallback, "latency_ms": round(latency, 3),
             "weather_source": sources[i], "request": rows.raw[i],
             "features": {c: jsonable(values[c][i]) for c in FEATURE_COLUMNS}}
            for i, (request_id, served_at, latency, row) in enumerate(meta)]


class ShadowScorer(QueueWorker[tuple, tuple]):
    """Scores @challenger on the features the champion was given, after the answers are out, and logs it with
    role "challenger" (its latency_ms is the challenger's scoring time for the batch). Best effort: when it
    falls behind by `max_pending` batches, batches are skipped and counted; a failure is kept in `last_error`."""

    def __init__(self, models: ModelWatcher, log_: PredictionLog, threshold: float, model_name: str,
                 enabled: bool, max_pending: int = 256) -> None:
        super().__init__("shadow")
        self.models, self.log, self.threshold, self.model_name = models, log_, threshold, model_name
        self.enabled, self.max_pending = enabled, max_pending
        self.scored_rows = 0
        self.dropped = 0

    def start(self) -> None:
        if self.enabled:
            super().start()

    def submit(self, features: pd.DataFrame | list[dict[str, Any]], rows: RequestRows, sources: list[str],
               meta: list[tuple], champion_version: str) -> None:
        challenger = self.models.challenger
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
        """One batch at a time; on stop what is left is dropped (`ServingApp.stop` drains first)."""
        return None if self._stopped else self._queue.popleft()

    def _handle(self, work: tuple) -> None:
        self._score(*work)

    def _score(self, features: pd.DataFrame | list[dict[str, Any]], rows: RequestRows, sources: list[str],
               meta: list[tuple]) -> None:
        from mlsys_assets.core.model import scores

        challenger = self.models.challenger
        if challenger is None:
            return
        started = time.perf_counter()
        if isinstance(features, list) and challenger.compiled is not None:  # rows from the row-wise path
            probability = np.asarray(challenger.compiled.probabilities(features), dtype=np.float64)
        elif isinstance(features, list):
            probability = scores(_flights(), challenger.model,
                                            pd.DataFrame(features, columns=[*KEY_COLUMNS, *FEATURE_COLUMNS]))
        else:
            probability = scores(_flights(), challenger.model, features)
        took = (time.perf_counter() - started) * 1000.0
        labels = probability >= self.threshold
        shadow_meta = [(request_id, served_at, took, row) for request_id, served_at, _, row in meta]
        self.log.append(lambda: log_records(features, rows, sources, shadow_meta, probability, labels, challenger,
                                            self.model_name))
        self.scored_rows += len(meta)


# ---------------------------------------------------------------------------------------------------------------
# The application (HTTP-agnostic) and the HTTP layer.


class ServingApp:
    """Models, weather, scoring and logging, wired; `invoke` answers a POST /invocations body."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.rules = request_rules()
        self.models = ModelWatcher(config.source, config.online_dir, config.shadow)
        self.weather = WeatherStore(config.online_dir)
        self.log = PredictionLog(config.log_dir)
        self.shadow = ShadowScorer(self.models, self.log, config.decision_threshold, config.source.model_name,
                                   config.shadow)
        self.scorer = Scorer(self.models, self.weather, self.log, self.shadow, config.decision_threshold,
                             config.source.model_name, config.max_batch_rows, config.batch_linger_seconds)
        self.rows = RowScorer(self.models, self.weather, self.log, self.shadow, config.decision_threshold,
                              config.source.model_name)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="model-poller", daemon=True)

    def start(self) -> None:
        """Load the models before the first request, then keep them current."""
        self.models.refresh()
        self.scorer.start()
        self.shadow.start()
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        self.rows.stop()
        self.scorer.stop()
        self.shadow.drain(timeout=5)
        self.shadow.stop()
        self.log.close()
        if self._poller.is_alive():
            self._poller.join(timeout=30)

    def _poll(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.models.refresh()
            except Exception:  # the poller must outlive any one failure
                log.exception("model refresh failed")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until answers so far are shadow-scored and on disk (tests; `served_predictions` reads files)."""
        return self.shadow.drain(timeout) and self.log.flush(timeout)

    def invoke(self, body: bytes, request_id: str, received: float) -> dict:
        records, columns = records_of(parse_body(body), self.config.max_rows)
        rows = validate_rows(records, columns, self.rules)
        if len(rows) == 0:
            return {"predictions": []}
        job = Job(rows=rows, request_id=request_id, received=received)
        if len(rows) <= self.config.row_path_max_rows and (answer := self.rows.answer(job)) is not None:
            return {"predictions": answer}
        return {"predictions": self.scorer.submit(job, self.config.answer_timeout_seconds)}

    def health(self) -> dict:
        models = self.models
        serving = models.serving()
        degraded = serving.is_fallback or models.champion_alias != serving.version
        return {
            "status": "degraded" if degraded else "ok",
            "model_name": self.config.source.model_name,
            "serving": serving.describe(),
            "champion_alias": models.champion_alias,
            "reason": models.problem,
            "registry_error": models.registry_error,
            "challenger": models.challenger.describe() if models.challenger else None,
            "challenger_problem": models.problems[CHALLENGER], "shadow_error": self.shadow.last_error,
            "shadow": self.config.shadow,
            "baseline": models.baseline.source,
            "answered_rows": self.scorer.answered_rows + self.rows.answered_rows,
            "shadow_rows": self.shadow.scored_rows, "shadow_dropped": self.shadow.dropped,
            "logged_rows": self.log.written, "log_dropped": self.log.dropped, "log_error": self.log.last_error,
            "uptime_seconds": round(time.monotonic() - self.started, 1),
        }

    def version(self) -> dict:
        from importlib.metadata import version

        serving = self.models.serving()
        return {"server": "mlsys serve", "mlflow_version": version("mlflow"),
                "model_name": self.config.source.model_name, "model_version": serving.version,
                "fallback": serving.is_fallback}


class _HTTPServer(ThreadingHTTPServer):
    """One thread per connection; open connections are tracked so that stopping closes idle keep-alives too."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog; the default 5 refuses bursts of new connections

    def __init__(self, address: tuple[str, int], app: ServingApp) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "mlsys-serve"
    disable_nagle_algorithm = True  # headers and body are two writes; no 40 ms delayed-ACK stall between them
    timeout = 120  # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args: Any) -> None:  # every answer is in the prediction log instead
        pass

    def _reply(self, status: int, payload: dict | bytes, request_id: str | None = None, close: bool = False,
               content_type: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload, default=jsonable).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("X-Request-Id", request_id)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path == "/ping":
            self._reply(200, b"\n", content_type="text/plain")
        elif path == "/health":
            self._reply(200, app.health())
        elif path == "/version":
            self._reply(200, app.version())
        elif path == "/invocations":
            self._reply(405, RequestError(405, "BAD_REQUEST", "use POST /invocations").body())
        else:
            self._reply(404, RequestError(404, "ENDPOINT_NOT_FOUND", f"no endpoint {path}").body())

    def do_POST(self) -> None:
        received = time.perf_counter()
        request_id = self._request_id()
        if self.path.split("?", 1)[0] != "/invocations":
            self._reply(404, RequestError(404, "ENDPOINT_NOT_FOUND", f"no endpoint {self.path}").body(), request_id,
                        close=True)
            return
        try:
            body = self._body()
        except RequestError as exc:  # the body was not read: the connection cannot carry another request
            self._discard_body()
            self._reply(exc.status, exc.body(), request_id, close=True)
            return
        try:
            answer = self.server.app.invoke(body, request_id, received)
        except RequestError as exc:
            self._reply(exc.status, exc.body(), request_id)
            return
        except Exception as exc:  # a bug answers 500 and the server stays up
            log.exception("request %s failed", request_id)
            error = RequestError(500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            self._reply(500, error.body(), request_id)
            return
        self._reply(200, answer, request_id)

    def _request_id(self) -> str:
        given = self.headers.get("X-Request-Id", "")
        if 0 < len(given) <= 128 and given.isprintable():
            return given
        return uuid.uuid4().hex

    def _discard_body(self, limit: int = 16 << 20) -> None:
        """Read an unwanted body (up to `limit`) before answering: closing a socket with unread data resets the
        connection, and the client would see the reset instead of the 413 or 415 that explains it."""
        length = self.headers.get("Content-Length", "")
        remaining = int(length) if length.isdigit() and int(length) <= limit else 0
        with contextlib.suppress(OSError):
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)

    def _body(self) -> bytes:
        app = self.server.app
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise RequestError(415, "BAD_REQUEST", f"Content-Type must be application/json, got "
                                                   f"{content_type or 'none'!r}")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "BAD_REQUEST", "a Content-Length header is required")
        if not length.isdigit():
            raise RequestError(400, "BAD_REQUEST", f"Content-Length {length!r} is not a number")
        if int(length) > app.config.max_body_bytes:
            raise RequestError(413, "RESOURCE_LIMIT_EXCEEDED",
                               f"the body has {int(length)} bytes; the limit is {app.config.max_body_bytes}")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise RequestError(400, "MALFORMED_REQUEST", "the body ended before Content-Length bytes")
        return body


@dataclass
class ServerHandle:
    """A running server: its URL and app, and `stop()` (also on leaving a `with` block)."""

    app: ServingApp
    httpd: _HTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        """Stop accepting, answer what is in hand, close open connections, then flush the log."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
        self.app.stop()
        self.httpd.close_connections()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(config: ServeConfig | None = None, port: int | None = None) -> ServerHandle:
    """Bind 127.0.0.1:`port` (0: any free port), load the models, and serve from a background thread."""
    config = config or ServeConfig.from_env()
    if port is not None:
        config = replace(config, port=port)
    app = ServingApp(config)
    try:
        httpd = _HTTPServer((HOST, config.port), app)  # bound before loading: a taken port fails at once
    except BaseException:
        app.stop()
        raise
    try:
        app.start()
    except BaseException:
        httpd.server_close()
        app.stop()
        raise
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    thread.start()
    return ServerHandle(app, httpd, thread)


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server started in another process (in-process, pass port 0)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_until_ready(url: str, timeout: float = 60.0) -> None:
    """Poll GET /ping until it answers 200 (for servers started in another process)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/ping did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    """`mlsys serve [--port N]`: serve until SIGINT or SIGTERM, then stop cleanly (logs flushed)."""
    parser = argparse.ArgumentParser(prog="mlsys serve", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=None, help="port (default: MLSYS_SERVE_PORT or 5001)")
    parser.add_argument("--host", choices=[HOST], default=HOST, help="always 127.0.0.1: the server is local only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars per model load
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    config = ServeConfig.from_env(**({"port": args.port} if args.port is not None else {}))
    handle = start_server(config)
    serving = handle.app.models.serving()
    what = f"version {serving.version}" if not serving.is_fallback else f"the baseline ({handle.app.models.problem})"
    print(f"serving {config.source.model_name}@champion, {what}, on {handle.url} (POST /invocations, GET /ping, "
          f"/health, /version); predictions logged to {config.log_dir}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        handle.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
