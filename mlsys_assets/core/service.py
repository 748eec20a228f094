"""The scoring service of any declared system: its @champion behind MLflow's scoring protocol, on uvicorn.

Everything comes from the declaration: a request row is a row of the entity source without its outcome columns,
checked by the source's own pandera schema (a row the pipeline would quarantine is a 400 naming the column, the
rule and the value); the lookup sources' rows are read from what the pipeline published for the row's partition
(the service never opens the warehouse); features come from the system's one feature definition and scores from
the same `core.model.scores` batch scoring runs, so a served row gets the value `batch_predictions` holds.

The flights system's own server (`core.serving`, with its row-wise fast path, shadow scoring and prediction log)
still answers for flights; it moves onto this service with issue 16.

No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations as classes.
"""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlsys_assets.declaration import System

FORMATS = ("dataframe_records", "dataframe_split", "instances", "inputs")


class BadRequest(Exception):
    """A 4xx with MLflow's error body; `errors` name each row, column and problem."""

    def __init__(self, message: str, errors: list[dict] | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.errors, self.status = message, errors or [], status

    def body(self) -> dict:
        return {"error_code": "BAD_REQUEST", "message": self.message, **({"errors": self.errors[:50]}
                                                                          if self.errors else {})}


def request_columns(system: "System") -> dict[str, str]:
    """What a request row carries, by kind: the entity source's declared columns without its outcome columns."""
    from mlsys_assets.core.sources import columns_of

    outcome = set(system.prediction.outcome_columns) | {system.prediction.label}
    return {name: kind for name, kind in columns_of(system.entity).kinds.items() if name not in outcome}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def records(body: bytes, max_rows: int) -> list[dict]:
    """The rows of a request in any of MLflow's JSON formats."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(payload, dict) or len([k for k in FORMATS if k in payload]) != 1:
        raise BadRequest(f"the body must be a JSON object with exactly one of {', '.join(FORMATS)}")
    key = next(k for k in FORMATS if k in payload)
    data = payload[key]
    if key == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list) \
                or not isinstance(data.get("data"), list) or not all(isinstance(c, str) for c in data["columns"]):
            raise BadRequest("dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)")
        columns = data["columns"]
        if len(set(columns)) != len(columns):
            twice = sorted({c for c in columns if columns.count(c) > 1})
            raise BadRequest(f"dataframe_split lists a column twice: {twice}")
        rows = data["data"]
        if not all(isinstance(r, list) and len(r) == len(columns) for r in rows):
            raise BadRequest(f"every row of dataframe_split must be a list of {len(columns)} values")
        rows = [dict(zip(columns, r, strict=True)) for r in rows]
    else:
        rows = [data] if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadRequest(f"{key} must be a list of objects (one per row)")
    if not rows:
        raise BadRequest("the request holds no rows")
    if len(rows) > max_rows:
        raise BadRequest(f"{len(rows)} rows: at most {max_rows} per request", status=413)
    return rows


def typed_frame(system: "System", rows: list[dict]) -> "pd.DataFrame":
    """The request rows as the validated rows' types (every problem of every row named), outcome columns empty."""
    import pandas as pd

    columns, errors = request_columns(system), []
    for index, row in enumerate(rows):
        missing = [c for c in columns if c not in row]
        if missing:
            errors.append({"row": index, "column": ", ".join(missing), "problem": "missing"})
    if errors:
        raise BadRequest(f"rows miss request columns (a row needs {', '.join(columns)})", errors)
    frame = pd.DataFrame({name: [row[name] for row in rows] for name in columns})
    for name, kind in columns.items():
        values = frame[name]
        try:
            if kind in ("timestamp", "date"):
                if not values.map(lambda v: v is None or isinstance(v, str)).all():
                    raise ValueError("expected ISO 8601 text")
                typed = pd.to_datetime(values, format="ISO8601", utc=True).dt.tz_convert(None)
                typed = typed.astype("datetime64[ns]")
                frame[name] = typed.dt.normalize() if kind == "date" else typed
            elif kind in ("integer", "float"):
                if values.map(lambda v: isinstance(v, bool) or not (v is None or isinstance(v, int | float))).any():
                    raise ValueError("expected a number")
                number = pd.to_numeric(values, errors="raise").astype("float64")
                if kind == "integer":
                    if ((number % 1) != 0).any():
                        raise ValueError("expected a whole number")
                    frame[name] = number.astype("Int64")
                else:
                    frame[name] = number
            elif kind == "boolean":
                if not values.map(lambda v: v is None or isinstance(v, bool)).all():
                    raise ValueError("expected true or false")
                frame[name] = values.astype("boolean")
            else:
                if not values.map(lambda v: v is None or isinstance(v, str)).all():
                    raise ValueError("expected text")
                frame[name] = values.astype("str").where(values.notna(), None)
        except (ValueError, TypeError, OverflowError) as exc:
            errors.append({"column": name, "problem": str(exc)[:200]})
    if errors:
        raise BadRequest("request values of the wrong type", errors)
    for name in system.prediction.outcome_columns:
        frame[name] = float("nan")  # unknown when predicting: the schema's nullable outcome fields allow it
    return frame


def request_schema(system: "System") -> Any:
    """The entity schema as requests are checked by it: its key's uniqueness aside (a request may repeat a row).
    Built once per service (a copy of a pandera schema costs milliseconds)."""
    import copy

    from mlsys_assets.core.sources import schema_for

    schema = copy.deepcopy(schema_for(system.entity))
    schema.unique = None
    return schema


def validate(system: "System", frame: "pd.DataFrame", schema: Any) -> None:
    """`request_schema`'s rules on the request rows; failures on outcome columns (unknown when predicting) aside."""
    import pandera.errors

    outcome = set(system.prediction.outcome_columns)
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[~cases["column"].isin(outcome)]
        if len(cases):
            raise BadRequest("rows break the rules of the source's schema", [
                {"row": None if c["index"] != c["index"] else int(c["index"]), "column": str(c["column"]),
                 "check": str(c["check"]), "value": str(c["failure_case"])[:80]}
                for c in cases.to_dict("records")]) from exc


def lookups(system: "System", frame: "pd.DataFrame", directory: Path) -> "dict[str, pd.DataFrame]":
    """Each lookup source's published rows of the partitions the request rows belong to."""
    import pandas as pd

    from mlsys_assets.core.online import lookup_path
    from mlsys_assets.core.partitioning import keys_of
    from mlsys_assets.core.sources import columns_of, partition_times

    keys = sorted(set(keys_of(system.partitions.grain, partition_times(system.entity, frame)).dropna()))
    found = {}
    for source in system.lookups:
        parts = [pd.read_parquet(path) for key in keys
                 if (path := lookup_path(system.name, source.name, key, directory)).exists()]
        found[source.name] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=list(columns_of(source).names))
    return found


@dataclass
class Loaded:
    version: str
    model: object
    is_fallback: bool


class Champion:
    """The system's @champion, looked up at most every `poll_seconds` and loaded once per version; the published
    baseline when there is none."""

    def __init__(self, system: "System", poll_seconds: float = 5.0) -> None:
        self.system, self.poll_seconds = system, poll_seconds
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._checked = 0.0

    def current(self) -> Loaded:
        with self._lock:
            if self._loaded is None or time.monotonic() - self._checked > self.poll_seconds:
                self._loaded = self._load(self._loaded)
                self._checked = time.monotonic()
            return self._loaded

    def _load(self, loaded: Loaded | None) -> Loaded:
        from mlsys_assets.core.registry import CHAMPION
        from mlsys_assets.resources import MlflowStore

        registry = MlflowStore.from_env().registry(self.system)
        registry.activate()
        version = registry.alias_version(CHAMPION)
        if version is not None:
            if loaded is not None and loaded.version == version:
                return loaded
            return Loaded(version, registry.load(version), False)
        return Loaded("baseline", self._baseline(), True)

    def _baseline(self) -> object:
        import pandas as pd

        from mlsys_assets.core.model import RateBaseline
        from mlsys_assets.core.online import baseline_path

        path = baseline_path(system=self.system.name)
        rates = pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=["rate", "global_rate"])
        return RateBaseline.from_frame(rates, self.system.model.baseline_by)


def answer(system: "System", schema: Any, champion: Champion, body: bytes, directory: Path,
           max_rows: int) -> tuple[dict, str]:
    """The predictions of a request body (MLflow's `{"predictions": [...]}`) and the model version that made them."""
    from mlsys_assets.core.featurize import build_features
    from mlsys_assets.core.model import scores

    frame = typed_frame(system, records(body, max_rows))
    validate(system, frame, schema)
    features = build_features(system, frame, lookups(system, frame, directory))
    used = champion.current()
    values = scores(system, used.model, features)
    key = system.features.id_column
    if system.prediction.task == "binary":
        rows = [{key: k, "probability": float(v), "label": int(v >= system.prediction.threshold)}
                for k, v in zip(features[key], values, strict=True)]
    else:
        rows = [{key: k, "prediction": float(v)} for k, v in zip(features[key], values, strict=True)]
    return {"predictions": rows, "model_version": used.version, "fallback": used.is_fallback}, used.version


def build_app(system: "System", directory: Path, max_rows: int = 10_000, max_body_bytes: int = 1 << 20,
              poll_seconds: float = 5.0) -> Any:
    """The FastAPI app: POST /invocations, GET /ping, /health, /version."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    champion, schema = Champion(system, poll_seconds), request_schema(system)
    app = FastAPI(title=f"mlsys: {system.name}", description=system.description)

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "ok"}

    @app.get("/health")
    def health() -> dict:
        used = champion.current()
        return {"status": "degraded" if used.is_fallback else "ok", "model": system.model_name,
                "version": used.version}

    @app.get("/version")
    def version() -> dict:
        return {"system": system.name, "model": system.model_name, "version": champion.current().version}

    @app.post("/invocations")
    async def invocations(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > max_body_bytes:
            return JSONResponse(BadRequest(f"the body is over {max_body_bytes} bytes").body(), status_code=413)
        try:
            result, used = await run_in_threadpool(answer, system, schema, champion, body, directory, max_rows)
        except BadRequest as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return JSONResponse(result, headers={"X-Model-Version": used, "X-Model-Name": system.model_name})

    return app


def serve(system: "System", host: str, port: int) -> int:
    """Serve until SIGINT or SIGTERM: uvicorn stops accepting, drains the requests in flight, then raises the
    signal again under the handlers it found, here ones that let the command end normally (exit 0)."""
    import signal

    import uvicorn

    from mlsys_assets.core.online import online_dir

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    from mlsys_assets.settings import setting

    app = build_app(system, online_dir(), max_rows=int(setting("MLSYS_SERVE_MAX_ROWS")),
                    max_body_bytes=int(setting("MLSYS_SERVE_MAX_BODY_BYTES")),
                    poll_seconds=float(setting("MLSYS_SERVE_POLL_SECONDS")))
    print(f"serving {system.model_name}@champion ({system.name}) on http://{host}:{port} "
          "(POST /invocations, GET /ping, /health, /version)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    print("stopped", flush=True)
    return 0
