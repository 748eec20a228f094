"""The request schema of a declared system, read off its pandera schemas when the server starts.

A request row is a row of the entity source without its outcome columns: each field is checked by the source's own
pandera field (its kind, whether null is allowed, and its checks: bounds, allowed values, patterns), and each rule
across columns (a dataframe check) by its row-wise twin when the declaration gives one (`Source.row_checks`), else by
the pandera check itself on a frame of the request rows. So a row the pipeline would quarantine is a 400 naming the
row, the field or rule, and why. A row may also carry a lookup source's values (the weather of a flight): they are
checked by that source's schema the same way, and scoring uses them instead of the published rows.

All of it is plain Python per row (a single-row request is checked in microseconds); pandas only for a rule without
a twin. A pandera check this module cannot translate stops the server at start, naming it, rather than being skipped.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from mlsys_assets.core.server.protocol import MAX_LISTED_ERRORS, RequestError, show

if TYPE_CHECKING:
    import pandas as pd

    from mlsys_assets.declaration import Source, System

INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class FieldRule:
    """What one request field must be: its kind (`core.sources.KINDS`), whether null is allowed, its checks."""

    name: str
    kind: str
    nullable: bool
    checks: tuple[tuple[str, Any], ...] = ()
    description: str = ""

    def coerce(self, value: Any, text: bool = False) -> tuple[Any, str | None]:
        """The value as the pipeline's rows hold it (Python scalars; timestamps as naive UTC `datetime`), and what is
        wrong with it (None when nothing is)."""
        if text and isinstance(value, str) and self.kind != "text":
            value, problem = _from_text(self.kind, value)
            if problem:
                return None, problem
        if value is None:
            return None, None if self.nullable else "missing value (null)"
        value, problem = _typed(self.kind, value)
        if problem:
            return None, problem
        for check, bound in self.checks:
            problem = _broken(check, bound, value, self.name)
            if problem:
                return None, problem
        return value, None


def _from_text(kind: str, value: str) -> tuple[Any, str | None]:
    """A CSV field as the JSON value it stands for."""
    if value == "":
        return None, None
    if kind in ("integer", "float"):
        try:
            number = float(value) if any(c in value for c in ".eE") or kind == "float" else int(value)
        except ValueError:
            return None, f"expected a number, got {show(value)}"
        return number, None
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true", None
        return None, f"expected true or false, got {show(value)}"
    return value, None


def _typed(kind: str, value: Any) -> tuple[Any, str | None]:
    if kind == "text":
        return (value, None) if isinstance(value, str) else (None, f"expected a string, got {show(value)}")
    if kind == "boolean":
        return (value, None) if isinstance(value, bool) else (None, f"expected true or false, got {show(value)}")
    if kind in ("timestamp", "date"):
        if not isinstance(value, str):
            return None, f"expected an ISO 8601 {'date' if kind == 'date' else 'timestamp'}, got {show(value)}"
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None, f"expected an ISO 8601 {'date' if kind == 'date' else 'timestamp'}, got {show(value)}"
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        if kind == "date":
            moment = datetime(moment.year, moment.month, moment.day)
        return moment, None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, f"expected a number, got {show(value)}"
    if kind == "integer":
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                return None, f"expected a whole number, got {show(value)}"
            value = int(value)
        if not INT64[0] <= value <= INT64[1]:
            return None, f"{show(value)} is out of range for a 64-bit integer"
        return value, None
    try:
        number = float(value)
    except OverflowError:
        return None, f"{show(value)} is too large for a 64-bit float"
    if not math.isfinite(number):
        return None, f"expected a finite number, got {show(value)}"
    return number, None


def _broken(check: str, bound: Any, value: Any, name: str) -> str | None:
    if check == "isin":
        if value in bound:
            return None
        listed = f"one of {', '.join(sorted(map(str, bound)))}" if len(bound) <= 10 else f"one of {len(bound)} known"
        return f"unknown {name} {show(value)}: expected {listed}"
    if check == "notin":
        return f"{show(value)} is not allowed" if value in bound else None
    if check == "pattern":
        return None if bound.match(value) else f"{show(value)} does not match {bound.pattern!r}"
    if check == "len":
        low, high = bound
        ok = (low is None or len(value) >= low) and (high is None or len(value) <= high)
        return None if ok else f"length {len(value)} is outside [{low}, {high}]"
    if check == "eq":
        return None if value == bound else f"must equal {bound}, got {show(value)}"
    if check == "ne":
        return None if value != bound else f"must not equal {bound}"
    comparable = _comparable(bound, value)
    if check == "ge" and value < comparable:
        return f"must be at least {bound}, got {show(value)}"
    if check == "gt" and value <= comparable:
        return f"must be greater than {bound}, got {show(value)}"
    if check == "le" and value > comparable:
        return f"must be at most {bound}, got {show(value)}"
    if check == "lt" and value >= comparable:
        return f"must be less than {bound}, got {show(value)}"
    return None


def _comparable(bound: Any, value: Any) -> Any:
    if isinstance(value, datetime) and not isinstance(bound, datetime):
        return datetime.fromisoformat(str(bound))
    return bound


# pandera's built-in field checks -> (this module's check, how to read its statistics)
_CHECKS: dict[str, Callable[[dict], list[tuple[str, Any]]]] = {
    "greater_than_or_equal_to": lambda s: [("ge", s["min_value"])],
    "greater_than": lambda s: [("gt", s["min_value"])],
    "less_than_or_equal_to": lambda s: [("le", s["max_value"])],
    "less_than": lambda s: [("lt", s["max_value"])],
    "in_range": lambda s: [("ge" if s.get("include_min", True) else "gt", s["min_value"]),
                           ("le" if s.get("include_max", True) else "lt", s["max_value"])],
    "isin": lambda s: [("isin", frozenset(s["allowed_values"]))],
    "notin": lambda s: [("notin", frozenset(s["forbidden_values"]))],
    "equal_to": lambda s: [("eq", s["value"])],
    "not_equal_to": lambda s: [("ne", s["value"])],
    "str_matches": lambda s: [("pattern", re.compile(s["pattern"] if isinstance(s["pattern"], str)
                                                     else s["pattern"].pattern))],
    "str_startswith": lambda s: [("pattern", re.compile(re.escape(s["string"])))],
    "str_length": lambda s: [("len", (s.get("min_value"), s.get("max_value")))],
}


def field_rules(source: Source, names: Sequence[str]) -> dict[str, FieldRule]:
    """The rules of the named columns of a source, from its pandera schema."""
    from mlsys_assets.core.sources import columns_of, schema_for

    schema, kinds = schema_for(source), columns_of(source).kinds
    rules = {}
    for name in names:
        column = schema.columns[name]
        checks: list[tuple[str, Any]] = []
        for check in column.checks:
            if check.name not in _CHECKS:
                raise ValueError(f"source {source.name!r}, column {name!r}: the server cannot apply pandera's "
                                 f"{check.name} check; give the rule as a dataframe check with a row twin, or teach "
                                 "core.server.schema")
            checks += _CHECKS[check.name](dict(check.statistics))
        rules[name] = FieldRule(name, kinds[name], bool(column.nullable), tuple(checks), column.description or "")
    return rules


@dataclass(frozen=True)
class WideRule:
    """A rule across columns: it concerns a request row that carries every column it reads (outcomes aside)."""

    name: str
    reads: tuple[str, ...]
    needs: tuple[str, ...]  # the columns a row must carry for the rule to concern it
    row: Callable[[Mapping[str, Any]], bool] | None
    check: Any  # the pandera check, for rules without a row twin

    def problem(self, record: Mapping[str, Any]) -> str:
        values = ", ".join(f"{c}={show(record.get(c))}" for c in self.reads)
        return f"breaks the rule {self.name} ({values})"


def wide_rules(source: Source, outcome: set[str]) -> tuple[list[WideRule], list[str]]:
    """The source's rules across columns a request can break (those reading something besides outcomes), and the
    names of those that cannot be applied (no `check_columns` entry saying what they read)."""
    from mlsys_assets.core.sources import schema_for

    rules, unchecked = [], []
    for check in schema_for(source).checks:
        reads = source.check_columns.get(check.name)
        if reads is None:
            unchecked.append(check.name)
            continue
        needs = tuple(c for c in reads if c not in outcome)
        if needs:
            twin = source.row_checks.get(check.name)
            rules.append(WideRule(check.name, tuple(reads), needs, twin.resolve() if twin else None, check))
    return rules, unchecked


@dataclass
class Rows:
    """Validated request rows: each a mapping of the entity's columns (outcomes and unsent optional columns None),
    the lookup rows some carried (per row: source -> row, or None), and each row as sent (for the prediction log)."""

    records: list[dict[str, Any]]
    carried: list[dict[str, dict[str, Any]] | None]
    sent: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class RequestSchema:
    """Every rule a request row must meet, for one system."""

    system: System
    fields: dict[str, FieldRule]
    required: tuple[str, ...]
    outcome: tuple[str, ...]
    rules: list[WideRule]
    carried: dict[str, dict[str, FieldRule]]
    carried_rules: dict[str, list[WideRule]]
    unchecked: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, system: System) -> RequestSchema:
        from mlsys_assets.core.sources import columns_of

        prediction, entity = system.prediction, system.entity
        outcome = tuple(dict.fromkeys((*prediction.outcome_columns, *([prediction.label] if prediction.label in
                                                                      columns_of(entity).kinds else []))))
        names = [c for c in columns_of(entity).names if c not in outcome]
        required = tuple(prediction.request_columns) or tuple(names)
        fields = field_rules(entity, names)
        rules, unchecked = wide_rules(entity, set(outcome))
        carried, carried_rules = {}, {}
        for source in system.lookups:
            values = [c for c in columns_of(source).names if c not in source.lookup_key
                      and c not in columns_of(entity).kinds]
            carried[source.name] = field_rules(source, values)
            found, skipped = wide_rules(source, set())
            carried_rules[source.name] = [r for r in found if set(r.reads) <= set(values)]
            unchecked += [f"{source.name}.{name}" for name in skipped]
        return cls(system, fields, required, outcome, rules, carried, carried_rules, unchecked)

    @functools.cached_property
    def known(self) -> frozenset[str]:
        """Every field a request row may carry."""
        return frozenset(self.fields).union(*(set(rules) for rules in self.carried.values()))

    def rows(self, records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
             text: bool = False) -> Rows:
        """Typed rows, or a 400 listing every problem (row, field, problem). Unknown fields are ignored."""
        errors: list[dict] = []
        if columns is not None:
            errors += [{"row": None, "field": c, "problem": "missing column"} for c in self.required
                       if c not in columns]
        typed, carried, sent = [], [], []
        known = self.known
        for i, record in enumerate(records):
            row: dict[str, Any] = dict.fromkeys(self.outcome)
            for name, rule in self.fields.items():
                if name not in record:
                    if name in self.required and columns is None:
                        errors.append({"row": i, "field": name, "problem": "missing field"})
                    row[name] = None
                    continue
                value, problem = rule.coerce(record[name], text)
                if problem:
                    errors.append({"row": i, "field": name, "problem": problem})
                row[name] = value
            lookups = None
            for source, rules in self.carried.items():
                if not any(name in record for name in rules):
                    continue
                values = {}
                for name, rule in rules.items():
                    value, problem = rule.coerce(record.get(name), text)
                    if problem:
                        errors.append({"row": i, "field": name, "problem": problem})
                    values[name] = value
                lookups = (lookups or {}) | {source: values}
            typed.append(row)
            carried.append(lookups)
            sent.append({k: v for k, v in record.items() if k in known})
            if len(errors) > 10 * MAX_LISTED_ERRORS:
                break
        if not errors:
            errors += self._wide(typed, carried, sent)
        if errors:
            listed = "; ".join(f"{'row ' + str(e['row']) + ' ' if e['row'] is not None else ''}{e['field']}: "
                               f"{e['problem']}" for e in errors[:3])
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise RequestError(400, "INVALID_PARAMETER_VALUE", f"{len(errors)} problems in the request: {listed}{more}",
                               errors)
        return Rows(typed, carried, sent)

    def _wide(self, rows: list[dict[str, Any]], carried: list[dict | None], sent: list[dict]) -> list[dict]:
        """The rules across columns, on the rows they concern: those that sent every column a rule reads."""
        errors: list[dict] = []
        for rule in self.rules:
            concerned = [i for i, row in enumerate(sent) if all(c in row for c in rule.needs)]
            errors += _apply(rule, [rows[i] for i in concerned], concerned, self.fields)
        for source, rules in self.carried_rules.items():
            positions = [i for i, c in enumerate(carried) if c is not None and source in c]
            for rule in rules:
                errors += _apply(rule, [carried[i][source] for i in positions], positions, self.carried[source])
        return errors


def _apply(rule: WideRule, rows: list[Mapping[str, Any]], positions: list[int],
           fields: Mapping[str, FieldRule]) -> list[dict]:
    """The rows a rule fails, as errors: by its row twin, or by the pandera check on a frame of the rows."""
    if not rows:
        return []
    if rule.row is not None:
        failed = [n for n, row in enumerate(rows) if not rule.row(row)]
    else:
        frame = frame_of(rows, {c: fields[c].kind for c in rule.reads if c in fields}, rule.reads)
        result = rule.check(frame).check_output
        failed = [n for n, ok in enumerate(result.fillna(False).astype(bool).tolist()) if not ok]
    return [{"row": positions[n], "field": ", ".join(rule.reads), "check": rule.name,
             "problem": rule.problem(rows[n])} for n in failed]


DTYPES = {"integer": "Int64", "float": "float64", "text": "str", "boolean": "boolean",
          "timestamp": "datetime64[ns]", "date": "datetime64[ns]"}


def frame_of(rows: Sequence[Mapping[str, Any]], kinds: Mapping[str, str], columns: Sequence[str]) -> pd.DataFrame:
    """Typed rows as a frame with the pipeline's dtypes (a column of unknown kind, an outcome, as float64)."""
    import pandas as pd

    data = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        kind = kinds.get(name, "float")
        if kind == "text":
            data[name] = pd.Series(values, dtype="object").astype("str").where(
                pd.Series([v is not None for v in values]), None)
        elif kind == "float":
            data[name] = pd.Series([math.nan if v is None else v for v in values], dtype="float64")
        else:
            data[name] = pd.Series(values, dtype="object").astype(DTYPES[kind])
    return pd.DataFrame(data, index=range(len(rows)))


def moment_of(value: Any) -> datetime | None:
    """A feature row's time value (a date, a timestamp, ISO text) as a datetime; None when it is none of these."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return moment_of(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None
