"""MLflow's scoring protocol (`POST /invocations`): a request body -> rows, or a 4xx that names the problem.

- Every way a body can be wrong ends in a `RequestError` (status, MLflow's error code, a message naming the
  problem), never another exception: a hostile body is a 4xx, not a 500.
- It accepts what MLflow's server accepts: JSON in any of `INPUT_FORMATS`, `text/csv`, and `NaN` for a missing
  value (`ScoringServerClient.invoke(df)` sends it). Values are returned as parsed: the caller (`schema`) checks
  them by declared type, refusing lists, objects, huge and non-finite numbers (`1e400` parses as inf).
- Depth is bounded twice: the JSON decoder's RecursionError (100,000 `[`), then `_check_depth` (no recursion).
- Row positions in messages and in `errors` count from 0, as pandas' row index does.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, compress, repeat

INPUT_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
MAX_LISTED_ERRORS = 50

# The protocol's deepest legal shape is object -> object -> list -> list -> value (dataframe_split's data): four
# levels. Eight leaves room for a list or object inside a value (which the caller refuses by name).
_MAX_DEPTH = 8
_CONTAINERS = frozenset((list, dict))
_ACCEPTED = ("application/json", "text/csv")


class RequestError(Exception):
    """An answer other than 200, with MLflow's error body."""

    def __init__(self, status: int, error_code: str, message: str, errors: Sequence[dict] = ()) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message, self.errors = status, error_code, message, list(errors)

    def body(self) -> dict:
        """MLflow's error body; `errors` (when any) lists the first MAX_LISTED_ERRORS problems."""
        body = {"error_code": self.error_code, "message": self.message}
        return body | ({"errors": self.errors[:MAX_LISTED_ERRORS]} if self.errors else {})


@dataclass(frozen=True)
class Parsed:
    """A request's rows: one dict per row (column -> value), as sent."""

    records: list[dict]
    columns: list[str] | None  # stated once by the format (dataframe_split, CSV, columns, by position), else None
    text: bool  # values came as text (CSV): the caller converts them by each column's declared type


def parse_request(body: bytes, content_type: str | None, max_rows: int, positional: Sequence[str] = ()) -> Parsed:
    """The rows of a request body, or a RequestError (415, 400 or 413) naming what is wrong.

    `positional` is the column order for rows sent as lists of values (`inputs`/`instances`); without it such
    rows are refused, since this server needs to know which value is which column.
    """
    if media_type(content_type) == "text/csv":
        return _parse_csv(body, max_rows)
    return _rows_of(_parse_json(body), max_rows, tuple(positional))


def media_type(content_type: str | None) -> str:
    """The request's media type if the server takes it (parameters such as `; charset=utf-8` aside), else a 415:
    the server calls this before reading a body it would refuse."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in _ACCEPTED:
        got = show(content_type) if content_type else "none"
        raise RequestError(415, "BAD_REQUEST", f"Content-Type must be {' or '.join(_ACCEPTED)}, got {got}")
    return media


def show(value: object) -> str:
    """A short rendering (at most 40 characters) of a value for an error message: never the whole of a big value,
    never the inside of a list or object, never an exception."""
    try:
        text = _show(value)
    except Exception:  # a value no rendering was planned for: its type is still worth naming
        text = f"a value of type {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _show_int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, list):
        return "an empty list" if not value else f"a list of {len(value)} value{'s' if len(value) > 1 else ''}"
    if isinstance(value, dict):
        return "an empty object" if not value else f"an object of {len(value)} field{'s' if len(value) > 1 else ''}"
    return f"a value of type {type(value).__name__}"


def _show_int(value: int) -> str:
    """Small integers whole; big ones as their first digits and their length, without str() of the whole number
    (which refuses more than 4,300 digits, and is slow long before)."""
    bits = abs(value).bit_length()
    if bits <= 120:  # at most 37 digits
        return str(value)
    scale = int((bits - 1) * 0.30102999566398120) - 20  # the number has more than scale + 20 digits
    if bits > 100_000:  # no request can hold it (JSON stops at 4,300 digits), and 10**scale would cost time
        return f"{'a negative' if value < 0 else 'an'} integer of ~{scale + 21} digits"
    head = str(abs(value) // 10**scale)
    return f"{'-' if value < 0 else ''}{head[:18]}... ({len(head) + scale} digits)"


# ---------------------------------------------------------------------------------------------------------------
# JSON


def _object(pairs: list[tuple[str, object]]) -> dict:
    """An object of the body, refusing a key given twice (json.loads would silently keep the last)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        key = _twice(key for key, _ in pairs)
        raise RequestError(400, "INVALID_PARAMETER_VALUE", f"key {show(key)} appears twice in one object")
    return obj


def _twice(names: Iterable[str]) -> str:
    """The first name given more than once (only looked for once a count has shown there is one)."""
    return next(name for name, count in Counter(names).items() if count > 1)


def _constant(name: str) -> None:
    """NaN is a missing value, as MLflow's server reads it; Infinity and -Infinity are refused."""
    if name == "NaN":
        return None
    raise RequestError(400, "INVALID_PARAMETER_VALUE", f"{name} is not a number a request may carry")


def _too_deep(why: str) -> RequestError:
    return RequestError(400, "MALFORMED_REQUEST", f"the body is nested too deeply: {why}")


def _parse_json(body: bytes) -> object:
    try:
        text = body.decode("utf-8-sig")
        payload = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except RecursionError as exc:
        raise _too_deep("more levels of objects and lists than the JSON decoder holds") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4,300 digits
        raise RequestError(400, "MALFORMED_REQUEST", f"the body is not valid JSON: {str(exc)[:200]}") from exc
    _check_depth(payload, text.count("[") + text.count("{"))
    return payload


def _check_depth(payload: object, brackets: int) -> None:
    """Refuse objects and lists deeper than _MAX_DEPTH, level by level. Every object and list of the body starts
    with one of its `brackets` (`[` or `{`, some of which may be inside strings), so once that many have been
    found there is none further down: a body of flat records never has its values scanned."""
    level = [payload] if type(payload) in _CONTAINERS else []
    found, depth = len(level), 1
    while level and found < brackets:
        items = list(chain.from_iterable([c.values() if type(c) is dict else c for c in level]))
        level = list(compress(items, map(_CONTAINERS.__contains__, map(type, items))))
        found += len(level)
        depth += 1
        if level and depth > _MAX_DEPTH:
            raise _too_deep(f"objects and lists more than {_MAX_DEPTH} levels deep")


# ---------------------------------------------------------------------------------------------------------------
# Formats


def _too_many(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise RequestError(413, "RESOURCE_LIMIT_EXCEEDED", f"{rows} rows in one request; the limit is {max_rows}")


def _bad_rows(source: str, expected: str, bad: list[int], problems: list[str]) -> RequestError:
    """A 400 for rows of the wrong shape: the message counts them all and names the first; `errors` lists the
    first MAX_LISTED_ERRORS (`problems`: one per listed row)."""
    listed = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    many = len(bad) > 1
    errors = [{"row": i, "field": None, "problem": problem} for i, problem in zip(bad, problems, strict=False)]
    return RequestError(400, "INVALID_PARAMETER_VALUE", f"{source}: each row must {expected}; {len(bad)} "
                                                        f"row{'s' if many else ''} do{'' if many else 'es'} not "
                                                        f"(row{'s' if many else ''} {listed})", errors)


def _check_names(columns: object, source: str) -> list[str]:
    """Column names stated once: each a string, none twice."""
    if not isinstance(columns, list):
        raise RequestError(400, "BAD_REQUEST", f"the columns of {source} must be a list of names, got {show(columns)}")
    for i, name in enumerate(columns):
        if not isinstance(name, str):
            raise RequestError(400, "BAD_REQUEST", f"column {i} of {source} is {show(name)}, not a name")
    if len(set(columns)) != len(columns):
        twice = show(_twice(columns))
        raise RequestError(400, "INVALID_PARAMETER_VALUE", f"column {twice} is listed twice in {source}")
    return columns


def _by_position(rows: list, columns: Sequence[str], source: str, expected: str) -> list[dict]:
    """Rows given as lists of values, one per column in order."""
    width = len(columns)
    if set(map(type, rows)) - {list} or set(map(len, rows)) - {width}:
        bad = [i for i, r in enumerate(rows) if type(r) is not list or len(r) != width]
        raise _bad_rows(source, expected, bad, [f"expected a list of {width} values, got {show(rows[i])}"
                                                for i in bad[:MAX_LISTED_ERRORS]])
    return list(map(dict, map(zip, repeat(columns), rows)))


def _as_records(rows: list, source: str) -> list[dict]:
    if set(map(type, rows)) - {dict}:
        bad = [i for i, r in enumerate(rows) if type(r) is not dict]
        raise _bad_rows(source, "be an object of fields", bad, [f"expected an object of fields, got {show(rows[i])}"
                                                                for i in bad[:MAX_LISTED_ERRORS]])
    return rows


def _rows_of(payload: object, max_rows: int, positional: tuple[str, ...]) -> Parsed:
    keys = [k for k in INPUT_FORMATS if k in payload] if isinstance(payload, dict) else []
    if len(keys) != 1:
        if isinstance(payload, dict) and payload:
            names = ", ".join(show(k) for k in list(payload)[:10]) + (" ..." if len(payload) > 10 else "")
            got = f"an object with keys {names}"
        else:
            got = show(payload)
        raise RequestError(400, "BAD_REQUEST", f"expected a JSON object with exactly one of {list(INPUT_FORMATS)}, "
                                               f"got {got}")
    key = keys[0]
    data = payload[key]
    if key == "dataframe_split":
        if not isinstance(data, dict) or "columns" not in data or not isinstance(data.get("data"), list):
            raise RequestError(400, "BAD_REQUEST", 'dataframe_split needs {"columns": [...], "data": [[...], ...]}, '
                                                   f"got {show(data)}")
        _too_many(len(data["data"]), max_rows)
        columns = _check_names(data["columns"], key)
        return Parsed(_by_position(data["data"], columns, key, f"be a list of {len(columns)} values, one per column"),
                      columns, False)
    if key == "dataframe_records":
        if not isinstance(data, list):
            raise RequestError(400, "BAD_REQUEST", f"dataframe_records needs a list of objects, got {show(data)}")
        _too_many(len(data), max_rows)
        return Parsed(_as_records(data, key), None, False)
    if isinstance(data, dict):
        return _columnar(data, key, max_rows)
    if not isinstance(data, list):
        raise RequestError(400, "BAD_REQUEST", f"{key} needs a list of rows or an object of columns, got {show(data)}")
    _too_many(len(data), max_rows)
    if not data or isinstance(data[0], dict):
        return Parsed(_as_records(data, key), None, False)
    if not isinstance(data[0], list):
        raise RequestError(400, "BAD_REQUEST", f"{key} needs rows as objects of fields (or lists of values by "
                                               f"position), row 0 is {show(data[0])}")
    if not positional:
        raise RequestError(400, "BAD_REQUEST", f"this server needs named columns: send {key} as objects of fields, "
                                               "or use dataframe_split")
    order = f"be a list of {len(positional)} values in the order {list(positional)}"
    return Parsed(_by_position(data, positional, key, order), list(positional), False)


def _columnar(data: dict, key: str, max_rows: int) -> Parsed:
    """`{"col": [v, ...], ...}` (lists of equal length), or `{"col": v, ...}`: one row."""
    columns = list(data)
    values = list(data.values())
    if not data:
        return Parsed([], columns, False)
    if list not in set(map(type, values)):
        _too_many(1, max_rows)
        return Parsed([data], columns, False)
    if (name := next((name for name, column in data.items() if not isinstance(column, list)), None)) is not None:
        raise RequestError(400, "BAD_REQUEST", f"{key} as columns needs a list of values for every column; "
                                               f"column {show(name)} is {show(data[name])}")
    lengths = set(map(len, values))
    if len(lengths) > 1:
        sizes = ", ".join(f"{show(name)}: {len(column)}" for name, column in list(data.items())[:10])
        raise RequestError(400, "BAD_REQUEST", f"{key} as columns needs lists of equal length, got {sizes}")
    rows = lengths.pop()
    _too_many(rows, max_rows)
    return Parsed(list(map(dict, map(zip, repeat(columns), zip(*values, strict=True)))), columns, False)


def _parse_csv(body: bytes, max_rows: int) -> Parsed:
    """CSV as `mlflow models serve` reads it: a header line, then rows; values stay text, an empty field is None."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "MALFORMED_REQUEST", f"the body is not valid UTF-8 text: {str(exc)[:200]}") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    lines: list[int] = []  # the line each row ends on, for messages
    try:
        for row in reader:
            if row:  # a blank line is no row, as pandas.read_csv skips it
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise RequestError(400, "MALFORMED_REQUEST", f"the body is not valid CSV: {str(exc)[:200]}") from exc
    if not rows:
        raise RequestError(400, "BAD_REQUEST", "the CSV body has no header line")
    columns = _check_names(rows[0], "the CSV header")
    for i, name in enumerate(columns):
        if not name:
            raise RequestError(400, "BAD_REQUEST", f"column {i} of the CSV header has no name")
    rows, lines = rows[1:], lines[1:]
    _too_many(len(rows), max_rows)
    width = len(columns)
    bad = [i for i, row in enumerate(rows) if len(row) != width]
    if bad:
        raise _bad_rows("the CSV body", f"have {width} fields, one per header column", bad,
                        [f"expected {width} fields, got {len(rows[i])} (line {lines[i]})"
                         for i in bad[:MAX_LISTED_ERRORS]])
    return Parsed([{c: v or None for c, v in zip(columns, row, strict=True)} for row in rows], columns, True)
