"""The online store: what the pipeline publishes for `mlsys serve`, and what the server writes back.

DuckDB lets one process open the warehouse file and no other process open it at all meanwhile, so the
server never touches the warehouse. The pipeline publishes what serving needs as files under MLSYS_HOME,
each written to a temporary name and renamed into place (a reader sees the old file or the new one, never
half of one):

    <online>/weather/<YYYY-MM-DD>.parquet   the day's validated weather (MLSYS_ONLINE_DIR, default $MLSYS_HOME/online)
    <online>/baseline_rates.parquet         the fallback model's rates

and the server appends every answer as a JSON line to `<log>/<flight date>/<pid>-<n>.jsonl`
(MLSYS_PREDICTION_LOG_DIR, default $MLSYS_HOME/prediction_log), which the `served_predictions` asset ingests.
No Dagster import at module level: the server imports this.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from mlsys_assets.core.worker import QueueWorker

# The server is the flights system's until serving is generated from declarations (issue 16).
from mlsys_assets.systems.flights.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, WEATHER_FEATURES, WEATHER_KEY

ONLINE_DIR_ENV = "MLSYS_ONLINE_DIR"
PREDICTION_LOG_ENV = "MLSYS_PREDICTION_LOG_DIR"
BASELINE_COLUMNS = ("carrier", "dep_hour_band", "rate", "global_rate")


def _home_path(env: str, relative: str) -> Path:
    from mlsys_assets.settings import home_path

    return Path(home_path(env, relative))


def online_dir() -> Path:
    """MLSYS_ONLINE_DIR, else `$MLSYS_HOME/online`."""
    return _home_path(ONLINE_DIR_ENV, "online")


def prediction_log_dir() -> Path:
    """MLSYS_PREDICTION_LOG_DIR, else `$MLSYS_HOME/prediction_log`."""
    return _home_path(PREDICTION_LOG_ENV, "prediction_log")


def lookup_path(system: str, source: str, day: str, directory: Path | None = None) -> Path:
    """`<online>/<system>/<lookup source>/<partition>.parquet`."""
    return (directory or online_dir()) / system / source / f"{day}.parquet"


def weather_path(day: str, directory: Path | None = None) -> Path:
    return lookup_path("flights", "weather", day, directory)


def baseline_path(directory: Path | None = None, system: str = "flights") -> Path:
    return (directory or online_dir()) / system / "baseline_rates.parquet"


def publish_lookup(path: Path, rows: pd.DataFrame, columns: Sequence[str]) -> Path:
    """A lookup source's validated rows of one partition (its declared columns), for the server to join."""
    return write_parquet_atomically(rows.loc[:, [c for c in columns if c in rows]].reset_index(drop=True), path)


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> Path:
    """Write beside the target and rename over it, so a reader never opens a half-written file."""
    from mlsys_assets.core.files import atomic_write

    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def publish_weather(day: str, weather: pd.DataFrame, directory: Path | None = None) -> Path:
    """The day's validated weather, keyed as `build_features` joins it, in the order the warehouse holds it."""
    frame = weather.loc[:, [*WEATHER_KEY, *WEATHER_FEATURES]].copy()
    frame["origin"] = frame["origin"].astype("str")
    for column in WEATHER_KEY[1:]:
        frame[column] = frame[column].astype("int64")
    for column in WEATHER_FEATURES:
        frame[column] = frame[column].astype("float64")
    return write_parquet_atomically(frame.reset_index(drop=True), weather_path(day, directory))


def publish_baseline(rates: pd.DataFrame, directory: Path | None = None, system: str = "flights") -> Path:
    """The baseline's rates (`RateBaseline.to_frame()`), the server's answer when no champion can be loaded."""
    return write_parquet_atomically(rates.reset_index(drop=True), baseline_path(directory, system))


def read_baseline(directory: Path | None = None) -> pd.DataFrame | None:
    path = baseline_path(directory)
    return pd.read_parquet(path) if path.exists() else None


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is republished (os.replace gives a new inode), or None if it is absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


WeatherKey = tuple[str, int, int, int, int]


class WeatherStore:
    """The published weather by (origin, year, month, day, hour): each day's file is read once and read
    again only when it is republished. Safe to share between threads (the server's scorer and its request
    threads): one lookup at a time, so a day's file is read once however many threads ask for it together."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or online_dir()
        self._days: dict[str, tuple[tuple[int, int, int] | None, dict[WeatherKey, tuple[float, ...]]]] = {}
        self._lock = threading.Lock()

    def _day(self, day: str) -> dict[WeatherKey, tuple[float, ...]]:
        path = weather_path(day, self.directory)
        signature = file_signature(path)
        cached = self._days.get(day)
        if cached is not None and cached[0] == signature:
            return cached[1]
        index: dict[WeatherKey, tuple[float, ...]] = {}
        if signature is not None:
            frame = pd.read_parquet(path)
            keys = zip(*(frame[c].tolist() for c in WEATHER_KEY), strict=True)
            values = zip(*(frame[c].astype("float64").tolist() for c in WEATHER_FEATURES), strict=True)
            for key, row in zip(keys, values, strict=True):
                index.setdefault(key, row)  # the first observation wins, as in build_features
        self._days[day] = (signature, index)
        return index

    def published_days(self) -> list[str]:
        return sorted(p.stem for p in weather_path("x", self.directory).parent.glob("*.parquet"))

    def find(self, keys: Iterable[WeatherKey]) -> dict[WeatherKey, tuple[float, ...]]:
        """The published observations for these keys (keys without one are left out)."""
        found: dict[WeatherKey, tuple[float, ...]] = {}
        with self._lock:
            for key in keys:
                if key in found:
                    continue
                _, year, month, day, _ = key
                row = self._day(f"{year:04d}-{month:02d}-{day:02d}").get(key)
                if row is not None:
                    found[key] = row
        return found


def weather_frame(keys: Sequence[WeatherKey], values: Sequence[Sequence[float | None]]) -> pd.DataFrame:
    """A weather frame (`WEATHER_KEY` + `WEATHER_FEATURES`) from keys and their observations."""
    frame = {name: pd.Series([k[i] for k in keys], dtype="str" if name == "origin" else "int64")
             for i, name in enumerate(WEATHER_KEY)}
    for i, name in enumerate(WEATHER_FEATURES):
        frame[name] = pd.Series([np.nan if v[i] is None else v[i] for v in values], dtype="float64")
    return pd.DataFrame(frame)


# ---------------------------------------------------------------------------------------------------------------
# The prediction log: JSON lines, one writer thread per server process.

LOG_COLUMNS: dict[str, str] = {
    "request_id": "str", "row": "int64", "served_at": "datetime64[us]", "flight_id": "str", "flight_date": "str",
    "role": "str", "model_name": "str", "model_version": "str", "probability": "float64",
    "predicted_label": "int64", "is_fallback": "bool", "latency_ms": "float64", "weather_source": "str",
    "request": "str",
}


def jsonable(value: object) -> object:
    """A value JSON can carry: NumPy scalars as Python ones, NaN as null, dates in ISO 8601."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


MakeRecords = Callable[[], list[dict]]  # builds a batch's log records, in the writer thread


class PredictionLog(QueueWorker[MakeRecords, list[MakeRecords]]):
    """Appends prediction records to `<directory>/<flight_date>/<pid>-<n>.jsonl` from a background thread.

    A request only puts a callable on a bounded queue (records are built and serialized by the writer), so
    logging never holds an answer up; when the writer falls behind by `max_pending` batches, batches are
    dropped and counted rather than blocking. A file is rotated to the next `n` past `max_file_bytes`.
    """

    def __init__(self, directory: Path | None = None, max_file_bytes: int = 64 << 20, max_pending: int = 10_000):
        super().__init__("prediction-log")
        self.directory = directory or prediction_log_dir()
        self.max_file_bytes = max_file_bytes
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self._files: dict[str, tuple[Path, int]] = {}
        self.start()

    def append(self, make_records: MakeRecords) -> bool:
        """Queue a batch; False (and counted as dropped) when the writer is that far behind or closed."""
        with self._cond:
            if self._stopped or len(self._queue) >= self.max_pending:
                self.dropped += 1
                return False
            self._put(make_records)
            return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is on disk; False on timeout."""
        return self.drain(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self.stop(timeout)

    def _take(self) -> list[MakeRecords] | None:
        """Everything queued, written at once; after close, the thread ends only once nothing is left."""
        if not self._queue:
            return None
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def _handle(self, batch: list[MakeRecords]) -> None:
        self._write(batch)  # a failure (a full disk) lands in last_error, for /health: the server stays up

    def _write(self, batch: list[MakeRecords]) -> None:
        lines: dict[str, list[str]] = {}
        for make_records in batch:
            for record in make_records():
                day = str(record.get("flight_date") or "unknown")
                lines.setdefault(day, []).append(json.dumps(record, separators=(",", ":"), default=jsonable))
        for day, day_lines in lines.items():
            data = ("\n".join(day_lines) + "\n").encode()
            path = self._file_for(day, len(data))
            with path.open("ab") as handle:
                handle.write(data)
            self._files[day] = (path, self._files[day][1] + len(data))
            self.written += len(day_lines)

    def _file_for(self, day: str, incoming: int) -> Path:
        current = self._files.get(day)
        if current is not None and (current[1] == 0 or current[1] + incoming <= self.max_file_bytes):
            return current[0]
        folder = self.directory / day
        folder.mkdir(parents=True, exist_ok=True)
        number = 0 if current is None else int(current[0].stem.rsplit("-", 1)[1]) + 1
        while (folder / f"{os.getpid()}-{number}.jsonl").exists():
            number += 1
        path = folder / f"{os.getpid()}-{number}.jsonl"
        self._files[day] = (path, 0)
        return path


def read_prediction_log(day: str, directory: Path | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """A day's logged predictions as one table (`LOG_COLUMNS` plus `FEATURE_COLUMNS`), and what was read.

    A line that is not whole JSON (a file still being written, or cut by a crash) is skipped and counted.
    """
    folder = (directory or prediction_log_dir()) / day
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    records, bad = [], 0
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return prediction_frame(records), {"files": len(files), "lines": len(records), "bad_lines": bad}


def prediction_frame(records: Sequence[dict]) -> pd.DataFrame:
    """Log records flattened: one column per field and per feature, with fixed types (also when empty)."""
    columns: dict[str, pd.Series] = {}
    for name, dtype in LOG_COLUMNS.items():
        values = [r.get(name) for r in records]
        if name == "request":
            values = [json.dumps(v, separators=(",", ":"), sort_keys=True) for v in values]
        if name == "served_at":
            columns[name] = pd.to_datetime(pd.Series(values, dtype="object"), utc=True, format="ISO8601")\
                .dt.tz_localize(None).astype(dtype)
        else:
            columns[name] = pd.Series(values, dtype="object").astype(dtype)
    for name in FEATURE_COLUMNS:
        values = [(r.get("features") or {}).get(name) for r in records]
        columns[name] = pd.Series(values, dtype="object").astype("str" if name in CATEGORICAL_FEATURES else "float64")
    return pd.DataFrame(columns)
