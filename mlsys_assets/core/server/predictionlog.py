"""The prediction log of any declared system: the server appends one JSON line per answered row to
`<directory>/<partition>/<pid>-<n>.jsonl` (or `<directory>/out_of_range/...` when the partition is missing, not a
safe folder name or not declared), and the `served_predictions` asset reads one partition back as a typed table.

Logging never holds an answer up nor takes the server down: a request only queues a callable, the writer thread
builds and writes the lines, and a full disk or a failed write drops and counts rows and shows in `status()`
without file-system paths (/health is public). Standard library at module level: the server imports this.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mlsys_assets.core.worker import QueueWorker

if TYPE_CHECKING:
    import pandas as pd

OUT_OF_RANGE = "out_of_range"  # folder for rows whose partition is outside the declared partitions
_SAFE_NAME = re.compile(r"[0-9A-Za-z_.:-]{1,40}")  # a folder name that stays one folder inside the log directory
_PATHS = re.compile(r"\S*[/\\]\S*")

MakeRecords = Callable[[], list[dict]]  # builds a batch's log records, in the writer thread


def jsonable(value: object) -> object:
    """A value JSON can carry: NumPy scalars as Python ones, NaN/inf/NaT as null, dates in ISO 8601.

    NumPy and pandas are only looked at when already imported: a value of theirs cannot exist otherwise."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.generic):
        if isinstance(value, np.datetime64):  # .item() of a nanosecond datetime64 is an int
            if np.isnat(value):
                return None
            coarse = np.datetime_data(value.dtype)[0] in ("Y", "M", "W", "D")
            value = value.astype("datetime64[D]" if coarse else "datetime64[us]")
        value = value.item()
    pd = sys.modules.get("pandas")
    if pd is not None and (value is pd.NaT or value is pd.NA):  # NaT is a datetime whose isoformat() is "NaT"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, date):  # datetime and pd.Timestamp are dates too
        return value.isoformat()
    return value


def _clean(value: object) -> object:
    """`value` with every nested part made `jsonable` (json.dumps' `default` never sees NaN), else its text."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most values: the writer's hot path
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(jsonable(key)): _clean(item) for key, item in value.items()}
    np = sys.modules.get("numpy")
    if isinstance(value, list | tuple | set | frozenset) or (np is not None and isinstance(value, np.ndarray)):
        return [_clean(item) for item in value]
    value = jsonable(value)
    return value if value is None or isinstance(value, str | int | float) else str(value)


def _describe(exc: BaseException) -> str:
    """An error for /health without file-system paths (an OSError's text names its file)."""
    if isinstance(exc, OSError):
        if exc.errno is None:
            return type(exc).__name__
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    return _PATHS.sub("<path>", f"{type(exc).__name__}: {exc}")[:300]


class PredictionLog(QueueWorker[MakeRecords, list[MakeRecords]]):
    """Appends prediction records to `<directory>/<partition>/<pid>-<n>.jsonl` from a background thread.

    A request only puts a callable on a bounded queue, so logging never holds an answer up; when the writer is
    `max_pending` batches behind, closed, or the disk is nearly full, `append` refuses and counts the batch.
    A file is rotated to the next `n` past `max_file_bytes`; a new file is claimed with O_EXCL, so processes
    that share a pid (containers) never share a file. With `retention_days`, older files are deleted.
    """

    recheck_seconds = 2.0  # while the disk is too full, look again at most this often (one probe batch or status())
    sweep_seconds = 3600.0  # with retention, delete old files at start and then at most this often

    idle_wait = 0.05  # the writer looks at the queue every 50 ms, or sooner when `wake_at` batches wait
    wake_at = 64

    def __init__(self, directory: Path, in_range: Callable[[str], bool] = lambda key: True,
                 max_file_bytes: int = 64 << 20, max_pending: int = 10_000,
                 min_free_bytes: int = 256 << 20, retention_days: float | None = None,
                 disk_usage: Callable[[Path], int] | None = None) -> None:
        if max_file_bytes <= 0 or max_pending <= 0 or min_free_bytes < 0:
            raise ValueError("max_file_bytes and max_pending must be positive, min_free_bytes not negative")
        if retention_days is not None and not retention_days > 0:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        super().__init__("prediction-log")
        self.directory = Path(directory)
        self.in_range = in_range
        self.max_file_bytes = max_file_bytes
        self.max_pending = max_pending
        self.min_free_bytes = min_free_bytes
        self.retention_days = retention_days
        self.written = 0  # rows on disk
        self.dropped = 0  # rows not logged (a batch refused by `append` counts as `rows`: it is never built)
        self._disk_usage = disk_usage or (lambda path: shutil.disk_usage(path).free)
        self._free_bytes: int | None = None
        self._checked_at = -math.inf  # monotonic time of the last free-space check
        self._disk_problem: str | None = None  # free space is below min_free_bytes: nothing is written
        self._write_problem: str | None = None  # the last write failed
        self._record_problem: str | None = None  # the last batch had records that could not be built
        self._sweep_problem: str | None = None  # the last retention sweep failed
        self._swept_at = -math.inf
        self._files: dict[str, tuple[Path, int]] = {}  # folder -> (the file being appended to, its size)
        self.start()

    def append(self, make_records: MakeRecords, *, rows: int = 1) -> bool:
        """Queue a batch; False (and `rows` counted as dropped) when the writer is that far behind, closed, or
        the disk is too full (then one batch per `recheck_seconds` goes through, to look again)."""
        with self._cond:
            refuse = self._stopped or len(self._queue) >= self.max_pending
            if not refuse and self._disk_problem is not None:
                now = time.monotonic()
                refuse = now - self._checked_at < self.recheck_seconds
                if not refuse:
                    self._checked_at = now  # this batch is the probe; the next ones wait for its answer
            if refuse:
                self.dropped += rows
                return False
            self._put(make_records, wake=len(self._queue) >= self.wake_at)  # else the writer finds it within idle_wait
            return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written or dropped; False on timeout."""
        return self.drain(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self.stop(timeout)

    def status(self) -> dict:
        """For /health: `logging` is False while answers are not being logged; no file-system path anywhere."""
        with self._cond:
            stale = self._disk_problem is not None and time.monotonic() - self._checked_at >= self.recheck_seconds
        if stale:  # space may have come back while no request arrived to probe it
            self._check_disk()
        with self._cond:
            degraded = self._disk_problem or self._write_problem
            return {"logging": not degraded and not self._stopped and self._thread.is_alive(),
                    "written": self.written, "dropped": self.dropped,
                    "problem": degraded or self._record_problem or self._sweep_problem,
                    "retention_days": self.retention_days, "free_bytes": self._free_bytes}

    # -- the writer thread ---------------------------------------------------------------------------------------

    def _setup_thread(self) -> None:
        self._sweep_if_due()

    def _take(self) -> list[MakeRecords] | None:
        """Everything queued, written at once; after close, the thread ends only once nothing is left."""
        if not self._queue:
            return None
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def _handle(self, batch: list[MakeRecords]) -> None:
        try:
            self._sweep_if_due()
            self._write(batch)
        except Exception as exc:  # never out of here: QueueWorker would keep the text, paths and all
            self._problem("_write_problem", _describe(exc))

    def _write(self, batch: list[MakeRecords]) -> None:
        lines: dict[str, list[str]] = {}
        folders: dict[object, str] = {}  # partition -> folder, so in_range is asked once per key and batch
        lost, record_problem = 0, None
        for make_records in batch:
            records: list = []
            try:
                records = list(make_records())
                built = [(self._folder(jsonable(record.get("partition")), folders),
                          json.dumps(_clean(record), separators=(",", ":"), allow_nan=False)) for record in records]
            except Exception as exc:  # one caller's bad batch costs its own rows, not the others'
                lost += max(len(records), 1)
                record_problem = f"records could not be built: {_describe(exc)}"
                continue
            for folder, line in built:
                lines.setdefault(folder, []).append(line)
        rows = sum(len(folder_lines) for folder_lines in lines.values())
        if rows and not self._check_disk():
            lost, rows, lines = lost + rows, 0, {}
        written, write_problem = 0, None
        for folder, folder_lines in lines.items():
            try:
                self._append_to(folder, ("\n".join(folder_lines) + "\n").encode())
                written += len(folder_lines)
            except OSError as exc:
                lost += len(folder_lines)
                write_problem = _describe(exc)
                self._files.pop(folder, None)  # the file may end in a torn line: the next write starts a new one
        with self._cond:
            self.written += written
            self.dropped += lost
            self._record_problem = record_problem
            if rows:
                self._write_problem = write_problem
            self.last_error = write_problem or record_problem or self.last_error

    def _folder(self, key: object, folders: dict[object, str]) -> str:
        """The folder of a row's partition key: the key itself when safe and declared, else OUT_OF_RANGE."""
        if not isinstance(key, str):
            return OUT_OF_RANGE
        folder = folders.get(key)
        if folder is None:
            safe = _SAFE_NAME.fullmatch(key) is not None and not key.startswith(".")
            try:
                declared = safe and bool(self.in_range(key))
            except Exception:  # a key the range cannot even parse is outside it
                declared = False
            folder = folders[key] = key if declared else OUT_OF_RANGE
        return folder

    def _append_to(self, folder: str, data: bytes) -> None:
        """Append to this process's file in `folder`, rotating to a new one past `max_file_bytes`."""
        current = self._files.get(folder)
        if current is None or (current[1] > 0 and current[1] + len(data) > self.max_file_bytes):
            current = (self._claim(folder, current), 0)
        try:
            with current[0].open("ab") as handle:
                handle.write(data)
        except FileNotFoundError:  # retention (here or in another process) removed the emptied folder
            current = (self._claim(folder, None), 0)
            with current[0].open("ab") as handle:
                handle.write(data)
        self._files[folder] = (current[0], current[1] + len(data))

    def _claim(self, folder: str, current: tuple[Path, int] | None) -> Path:
        """A new file of this process in `folder`, created exclusively (a reused pid finds its old files taken)."""
        path = self.directory / folder
        path.mkdir(parents=True, exist_ok=True)
        number = 0 if current is None else int(current[0].stem.rsplit("-", 1)[1]) + 1
        while True:
            candidate = path / f"{os.getpid()}-{number}.jsonl"
            try:
                candidate.open("xb").close()
                return candidate
            except FileExistsError:
                number += 1

    def _check_disk(self) -> bool:
        """Set or clear the disk problem; True when writing may go on (also when free space cannot be measured:
        a write would then fail and say why). The nearest existing folder is measured: logs may not exist yet."""
        target = self.directory
        while not target.exists() and target != target.parent:
            target = target.parent
        try:
            free: int | None = int(self._disk_usage(target))
        except Exception:
            free = None
        with self._cond:
            self._checked_at = time.monotonic()
            self._free_bytes = free
            low = free is not None and free < self.min_free_bytes
            self._disk_problem = (f"free space below {self.min_free_bytes / (1 << 20):g} MB: "
                                  "answers are not being logged") if low else None
            return not low

    def _problem(self, name: str, text: str) -> None:
        with self._cond:
            setattr(self, name, text)
            self.last_error = text

    def _sweep_if_due(self) -> None:
        """With retention, delete log files last written more than `retention_days` ago, then their emptied
        folders; only `*.jsonl` files and only folders directly under the log directory (no symlinks followed)."""
        now = time.monotonic()
        if self.retention_days is None or now - self._swept_at < self.sweep_seconds:
            return
        self._swept_at = now
        cutoff = time.time() - self.retention_days * 86400
        try:
            with os.scandir(self.directory) as entries:
                folders = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
            for folder in folders:
                deleted = False
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if (entry.name.endswith(".jsonl") and entry.is_file(follow_symlinks=False)
                                and entry.stat(follow_symlinks=False).st_mtime < cutoff):
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(entry.path)
                            deleted = True
                if deleted:
                    with contextlib.suppress(OSError):  # not empty: a file is newer, or another process wrote one
                        os.rmdir(folder)
        except FileNotFoundError:
            pass  # nothing logged yet
        except Exception as exc:  # never out of here: at the thread's start, it would end the thread
            self._problem("_sweep_problem", f"retention: {_describe(exc)}")
            return
        self._sweep_problem = None
        self._files = {folder: file for folder, file in self._files.items() if file[0].exists()}


# ---------------------------------------------------------------------------------------------------------------
# Reading one partition back.


class _Bad(ValueError):
    """A field of a record has a type its column cannot hold: the record is skipped and counted."""


_SAME = {"str": str, "category": str, "float64": float, "bool": bool}  # kinds whose JSON values are kept as they are


def _typed(value: object, kind: str) -> object:
    """A record's field as its column holds it; `row` and `is_fallback` must be there (int64 and bool hold no null)."""
    if type(value) is _SAME.get(kind):  # most values: the reader's hot path
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None and kind not in ("int64", "bool"):
        return None
    if kind == "json":
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if kind == "category" and isinstance(value, str | int | float):  # coded and boolean categories as text too
        return str(value)
    if kind == "str" and (isinstance(value, str) or number):  # numeric ids and versions as text
        return str(value)
    if kind == "float64" and isinstance(value, int | float):
        with contextlib.suppress(OverflowError):
            return float(value)
    if kind == "Int64" and isinstance(value, float | bool) and float(value).is_integer():
        value = int(value)
    if kind in ("int64", "Int64") and type(value) is int and -(1 << 63) <= value < (1 << 63):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "datetime64[us]" and isinstance(value, str):
        with contextlib.suppress(ValueError, OverflowError):  # text without an offset is taken as UTC already
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)
    raise _Bad


def read_prediction_log(partition: str, directory: Path, categorical: Sequence[str], numeric: Sequence[str],
                        id_column: str, score_column: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """One partition's logged predictions as a table of fixed columns and types (also when empty), and what was
    read: {"files", "lines", "bad_lines"}. A line that is not a whole JSON object (a file still being written or
    cut by a crash, `null`, a number) or that has a field of the wrong type is skipped and counted, never fatal."""
    import pandas as pd

    if _SAFE_NAME.fullmatch(partition) is None or partition.startswith("."):
        raise ValueError(f"not a prediction log partition: {partition!r}")
    fields = {"request_id": "str", "row": "int64", "served_at": "datetime64[us]", id_column: "str",
              "partition": "str", "role": "str", "model_name": "str", "model_version": "str",
              score_column: "float64", "predicted_label": "Int64", "is_fallback": "bool", "latency_ms": "float64",
              "context_source": "json", "request": "json"}
    features = {name: "category" for name in categorical} | {name: "float64" for name in numeric}
    names = [*fields, *features]
    if len(fields) != 14 or len(features) != len(categorical) + len(numeric) or len(set(names)) != len(names):
        raise ValueError(f"column names collide: id {id_column!r}, score {score_column!r}, features {names[14:]}")

    folder = Path(directory) / partition
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    rows: list[tuple] = []
    read_files = bad = 0
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # deleted by retention since the listing
            continue
        read_files += 1
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                given = record.get("features") if isinstance(record, dict) else []
                given = {} if given is None else given
                if not isinstance(given, dict):
                    raise _Bad
                rows.append(tuple(_typed(record.get(name), kind) for name, kind in fields.items())
                            + tuple(_typed(given.get(name), kind) for name, kind in features.items()))
            except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
                bad += 1
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    dtypes = [{"json": "str", "category": "str"}.get(kind, kind) for kind in [*fields.values(), *features.values()]]
    frame = pd.DataFrame({name: pd.Series(list(values), dtype=dtype)
                          for name, values, dtype in zip(names, columns, dtypes, strict=True)})
    return frame, {"files": read_files, "lines": len(rows), "bad_lines": bad}
