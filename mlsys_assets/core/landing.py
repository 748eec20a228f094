"""Landing files: writing a system's default feed partition by partition, and reading one file strictly.

A file is a contract. A structural breach (missing, empty, not UTF-8, truncated, a line with the
wrong number of fields, a missing column) rejects the whole file with `LandingFileError`, naming the
file and the problem, so it can be delivered again. A value that does not parse is kept: the row
carries the problem in `parse_errors` and validation quarantines it with that reason.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mlsys_assets.core.sources import Columns, columns_of, file_for

if TYPE_CHECKING:
    import pandas as pd

    from mlsys_assets.declaration import Source, System

NULL_TOKENS = frozenset({"", "NA", "NaN", "nan", "NULL", "null"})


class LandingFileError(Exception):
    """A landing file that cannot be read; the message names the file and what is wrong."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class LandingFile:
    """The rows of one landing file, typed, with where each came from."""

    path: Path
    frame: pd.DataFrame
    extra_columns: list[str] = field(default_factory=list)

    @property
    def parse_error_rows(self) -> int:
        return int(self.frame["parse_errors"].notna().sum())


def day_range(start: str, end: str | None = None) -> list[str]:
    first = date.fromisoformat(start)
    last = date.fromisoformat(end) if end else first
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _write_atomically(path: Path, content: bytes) -> bool:
    """Write unless the file already holds exactly this content; readers never see half a file."""
    from mlsys_assets.core.files import atomic_write_bytes

    if path.exists() and path.read_bytes() == content:
        return False
    atomic_write_bytes(path, content)
    return True


def encode_rows(rows: pd.DataFrame, source: Source) -> bytes:
    """A landing file's bytes: the source's declared columns, as CSV or Parquet."""
    columns = [c for c in columns_of(source).names if c in rows.columns]
    if source.format == "parquet":
        buffer = io.BytesIO()
        rows.loc[:, columns].reset_index(drop=True).to_parquet(buffer, index=False)
        return buffer.getvalue()
    text = io.StringIO()
    rows.to_csv(text, index=False, columns=columns, lineterminator="\n")
    return text.getvalue().encode()


def land_default_data(system: System, landing_dir: str | Path, start: str, end: str | None = None,
                      sources: tuple[str, ...] | None = None) -> dict[str, int]:
    """Write one file per partition per source from the system's shipped data, as a feed would deliver them.

    Returns the number of files written per source; files already holding the same bytes are left
    alone, so landing a partition twice does not look like a change to the sensor.
    """
    if system.default_data is None:
        raise ValueError(f"system {system.name!r} declares no default_data")
    names = tuple(sources or (s.name for s in system.sources))
    keys = partition_keys(system, start, end)
    shipped = system.default_data.resolve()(names, keys)
    written: dict[str, int] = {}
    for name in names:
        source = system.source(name)
        written[name] = sum(_write_atomically(file_for(landing_dir, system, source, key), encode_rows(rows, source))
                            for key, rows in shipped[name].items())
    return written


def partition_keys(system: System, start: str, end: str | None = None) -> list[str]:
    """The system's partition keys from `start` to `end` (dates, inclusive)."""
    from mlsys_assets.core.partitioning import keys_between

    return keys_between(system.partitions.grain, start, end or start)


def deliver_day(system: System, feed_dir: str | Path, landing_dir: str | Path, key: str) -> int:
    """Move one partition of a staged feed into the landing zone (atomically, unchanged files left alone): how the
    demo makes data arrive partition by partition without re-reading the shipped data each time."""
    delivered = 0
    for source in system.sources:
        staged = file_for(feed_dir, system, source, key)
        if staged.exists():
            delivered += _write_atomically(file_for(landing_dir, system, source, key), staged.read_bytes())
    return delivered


def _typed_column(values: pd.Series, kind: str, name: str, errors: list[pd.Series]) -> pd.Series:
    import numpy as np
    import pandas as pd

    is_null = values.isin(NULL_TOKENS)
    if kind == "text":
        return values.where(~is_null, None).astype("str").where(~is_null, None)
    if kind in ("timestamp", "date", "boolean"):
        return _typed_other(values, is_null, kind, name, errors)
    numbers = pd.to_numeric(values.where(~is_null, None), errors="coerce")
    bad = numbers.isna() & ~is_null
    problem = "not a number"
    if kind == "integer":
        bad |= numbers.notna() & ((numbers != np.floor(numbers)) | (numbers.abs() > 2**53))
        problem = "not an integer"
        numbers = numbers.where(~bad).astype("Int64")
    else:
        numbers = numbers.where(~bad).astype("float64")
    if bad.any():  # the message is built for the bad values only: repr of every value costs most of a clean read
        errors.append(pd.Series((name + "=" + values[bad].map(repr) + ": " + problem).astype(object),
                                index=values.index[bad], dtype=object).reindex(values.index))
    return numbers


def _typed_other(values: pd.Series, is_null: pd.Series, kind: str, name: str, errors: list[pd.Series]) -> pd.Series:
    """Timestamps (ISO 8601; with a zone, converted to UTC without one), dates and booleans."""
    import pandas as pd

    present = values.where(~is_null, None)
    if kind == "boolean":
        lowered = present.str.lower()
        typed = lowered.map({"true": True, "1": True, "false": False, "0": False}).astype("boolean")
        problem = "not a boolean"
    else:
        typed = pd.to_datetime(present, errors="coerce", format="ISO8601", utc=True).dt.tz_convert(None)
        typed = typed.astype("datetime64[us]")
        if kind == "date":
            typed = typed.dt.normalize()
        problem = f"not a {kind} (ISO 8601)"
    bad = typed.isna() & ~is_null
    if bad.any():
        errors.append(pd.Series((name + "=" + values[bad].map(repr) + ": " + problem).astype(object),
                                index=values.index[bad], dtype=object).reindex(values.index))
    return typed


def read_landing_file(path: str | Path, source: Source) -> LandingFile:
    """Read one landing file strictly (see the module docstring for what is rejected)."""
    path = Path(path)
    if not path.exists():
        raise LandingFileError(path, "file is missing")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise LandingFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not content.strip():
        raise LandingFileError(path, "file is empty (no header, no rows)")
    columns = columns_of(source)
    if source.format == "parquet":
        header, rows = _parquet_cells(path, content)
    else:
        header, rows = _csv_cells(path, content)
    return _typed_file(path, source, columns, header, rows)


def _parquet_cells(path: Path, content: bytes) -> tuple[list[str], list[list[str]]]:
    """A Parquet file's header and cells as text, so one strict parser types every format alike."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(content))
    except (pa.ArrowException, OSError) as exc:
        raise LandingFileError(path, f"not a readable Parquet file ({exc})") from exc
    header = [str(name) for name in table.column_names]
    if len(set(header)) != len(header):
        raise LandingFileError(path, f"duplicated column names: {sorted({n for n in header if header.count(n) > 1})}")
    cells = [["" if v is None else v.isoformat(sep=" ") if hasattr(v, "isoformat") else str(v)
              for v in table.column(i).to_pylist()] for i in range(table.num_columns)]
    return header, [list(row) for row in zip(*cells, strict=True)] if cells else []


def _csv_cells(path: Path, content: bytes) -> tuple[list[str], list[list[str]]]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LandingFileError(path, f"not UTF-8 text (byte {exc.start}: {content[exc.start:exc.start+1]!r})") \
            from exc
    if "\x00" in text:
        raise LandingFileError(path, "binary content (NUL bytes), not a CSV file")
    if not text.endswith("\n"):
        raise LandingFileError(path, "truncated: the last line has no line end")
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise LandingFileError(path, f"malformed CSV ({exc})") from exc
    header = [name.strip() for name in lines[0]]
    if len(set(header)) != len(header):
        duplicated = sorted({n for n in header if header.count(n) > 1})
        raise LandingFileError(path, f"duplicated column names in the header: {duplicated}")
    rows = lines[1:]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise LandingFileError(
                path, f"line {number} has {len(row)} fields, the header has {len(header)} (truncated or malformed)")
    return header, rows


def _typed_file(path: Path, source: Source, columns: Columns, header: list[str], rows: list[list[str]]) -> LandingFile:
    import numpy as np
    import pandas as pd

    missing = [name for name in columns.names if name not in header]
    if missing:
        raise LandingFileError(path, f"missing columns {missing} (a {source.name} file needs {list(columns.names)})")
    raw = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    raw = raw.map(str.strip) if rows else raw
    errors: list[pd.Series] = []
    frame = pd.DataFrame(index=raw.index)
    for name, kind in columns.kinds.items():
        frame[name] = _typed_column(raw[name], kind, name, errors)
    frame = frame[list(columns.names)]
    frame["parse_errors"] = pd.Series(None, index=raw.index, dtype=object)
    if errors:
        problems = pd.concat(errors, axis=1).astype(object).where(lambda p: p.notna(), None)
        has_problem = problems.notna().any(axis=1)
        frame.loc[has_problem, "parse_errors"] = problems[has_problem].apply(
            lambda r: "; ".join(v for v in r if v is not None), axis=1)
    extra = [name for name in header if name not in columns.kinds]
    frame["extra_fields"] = (
        raw[extra].apply(lambda r: json.dumps(dict(r)), axis=1) if extra and rows else None
    )
    frame["source_file"] = str(path)
    frame["source_row"] = np.arange(2, len(frame) + 2, dtype="int64")
    return LandingFile(path=path, frame=frame.reset_index(drop=True), extra_columns=extra)


@dataclass
class LandedFile:
    source: str
    day: str
    path: Path
    fingerprint: list  # [mtime_ns, size, sha256]


def scan_landing(landing_dir: str | Path, system: System, seen: dict[str, list],
                 ) -> tuple[list[LandedFile], list[tuple[Path, str, list]]]:
    """Files that are new or changed since `seen` (path -> [mtime_ns, size, sha256]), split into the readable
    ones and the problems (path, what is wrong, fingerprint). Only changed files are hashed and read."""
    import hashlib

    changed: list[LandedFile] = []
    problems: list[tuple[Path, str, list]] = []
    from mlsys_assets.core.partitioning import is_key, key_in_range

    for source in system.sources:
        name = source.name
        folder = file_for(landing_dir, system, source, "x").parent
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            stat = path.stat()
            key = str(path)
            previous = seen.get(key)
            if previous and previous[:2] == [stat.st_mtime_ns, stat.st_size]:
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            fingerprint = [stat.st_mtime_ns, stat.st_size, digest]
            if previous and previous[2] == digest:
                seen[key] = fingerprint  # touched, not changed
                continue
            day = path.stem
            grain = system.partitions
            if not (is_key(grain.grain, day) and path.suffix == f".{source.format}"):
                problems.append((path, f"not named <partition key>.{source.format} ({grain.grain} partitions: "
                                       f"e.g. {file_for('', system, source, grain.start).name})", fingerprint))
                continue
            if not key_in_range(grain.grain, day, grain.start, grain.end):
                problems.append((path, f"partition {day} is outside the partitions {grain.start}..{grain.end}",
                                 fingerprint))
                continue
            try:
                read_landing_file(path, source)
            except LandingFileError as exc:
                problems.append((path, exc.problem, fingerprint))
                continue
            changed.append(LandedFile(name, day, path, fingerprint))
    return changed, problems
