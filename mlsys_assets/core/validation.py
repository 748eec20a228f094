"""Split raw rows into valid rows and quarantined rows, each quarantined row with its reasons.

Every input row leaves in exactly one of the two frames: `len(valid) + len(quarantined) == len(raw)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlsys_assets.declaration import Source, System

QUARANTINE_COLUMNS = ("failed_checks", "failed_columns", "failure_values", "reason")
LINEAGE_COLUMNS = ("source_file", "source_row")


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    quarantined: pd.DataFrame

    def reason_counts(self) -> pd.DataFrame:
        """How many rows failed each check on each column (a row can fail several)."""
        if self.quarantined.empty:
            return pd.DataFrame({"check": [], "column": [], "rows": []})
        pairs = self.quarantined[["failed_checks", "failed_columns"]].apply(
            lambda r: list(zip(r["failed_checks"].split("; "), r["failed_columns"].split("; "), strict=True)),
            axis=1).explode()
        counts = pd.DataFrame(pairs.tolist(), columns=["check", "column"]).value_counts().rename("rows")
        return counts.reset_index()


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_name(check: object) -> str:
    text = str(check)
    if text.startswith("isin("):
        return "isin(allowed values)"
    if text.startswith("field_uniqueness") or text.startswith("multiple_fields_uniqueness"):
        return "unique_key"
    return text


def _failures(frame: pd.DataFrame, system: System, source: Source, key: str) -> pd.DataFrame:
    """One row per (row index, check, column, value) that fails."""
    from mlsys_assets.core.partitioning import keys_of
    from mlsys_assets.core.sources import check_columns, partition_times, schema_for

    found: list[pd.DataFrame] = []  # columns: index, check, column, value
    parse = frame["parse_errors"].dropna()
    if not parse.empty:
        found.append(pd.DataFrame({"index": parse.index, "check": "parseable", "column": parse.str.split("=").str[0],
                                   "value": parse.values}))
    placed = keys_of(system.partitions.grain, partition_times(source, frame))
    wrong = (placed != key).fillna(True) if len(frame) else placed.astype(bool)
    if wrong.any():
        by = source.partition_by if isinstance(source.partition_by, str) else source.partition_by.path
        found.append(pd.DataFrame({"index": placed.index[wrong], "check": f"belongs_to_partition({key})",
                                   "column": by, "value": placed[wrong].fillna("no time").values}))

    import pandera.errors

    # A row whose value did not parse fails for that reason alone, not for the rules its blank value then breaks.
    checked = frame.loc[frame["parse_errors"].isna()].drop(columns=["parse_errors"])
    try:
        schema_for(source).validate(checked, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        row_level = cases[cases["index"].notna()]
        if len(row_level) < len(cases):
            unplaced = cases[cases["index"].isna()]
            raise ValueError(f"schema failures that name no row: {unplaced[['column', 'check']].to_dict('records')}") \
                from errors
        found.append(pd.DataFrame({
            "index": row_level["index"].astype("int64").values,
            "check": row_level["check"].map(_check_name).values,
            "column": row_level["column"].fillna(row_level["schema_context"]).astype(str).values,
            "value": row_level["failure_case"].map(_short).values,
        }))
    if not found:
        return pd.DataFrame({"index": [], "check": [], "column": [], "value": []})
    failures = pd.concat(found, ignore_index=True)
    # A row-wise rule reports one case per column of the failing row: say it once, with the values it read.
    failures = failures.drop_duplicates(subset=["index", "check"], keep="first").reset_index(drop=True)
    for check, columns in check_columns(source).items():
        columns = list(columns)
        hit = failures["check"] == check
        if hit.any():
            rows = frame.loc[failures.loc[hit, "index"], columns]
            failures.loc[hit, "column"] = "+".join(columns)
            failures.loc[hit, "value"] = [", ".join(f"{c}={v}" for c, v in zip(columns, values, strict=True))
                                          for values in rows.itertuples(index=False)]
    return failures


def _prepared(raw: pd.DataFrame, source: Source) -> pd.DataFrame:
    """The raw rows with the types the schema states (what DuckDB's round trip changed, put back)."""
    from mlsys_assets.core.sources import columns_of

    frame = raw.reset_index(drop=True)
    columns = columns_of(source)
    for name in columns.of("timestamp"):  # DuckDB gives microseconds; pandas' (and pandera's) default is ns
        if name in frame:
            frame[name] = frame[name].astype("datetime64[ns]")
    for name in columns.of("integer"):
        # through Arrow, an integer column holding a NULL comes back as float64; the schema wants Int64
        if name in frame and frame[name].dtype.kind == "f":
            frame[name] = frame[name].astype("Int64")
    return frame


def row_check_parity(raw: pd.DataFrame, source: Source, sample: int = 300) -> tuple[int, list[str]]:
    """Where a declared row twin (`Source.row_checks`, the server's form of a rule across columns) disagrees with
    its pandera rule: on every parsed row of the partition the rule fails and on a sample of the others. Returns the
    rows compared and the disagreements (at most 10)."""
    from mlsys_assets.core.sources import schema_for

    if not source.row_checks:
        return 0, []
    frame = _prepared(raw, source)
    if "parse_errors" in frame:
        frame = frame.loc[frame["parse_errors"].isna()].drop(columns=["parse_errors"]).reset_index(drop=True)
    rules = {check.name: check for check in schema_for(source).checks}
    problems: list[str] = []
    compared = 0
    for name, twin in source.row_checks.items():
        if name not in rules:
            problems.append(f"row_checks names {name!r}, which is no rule of the schema")
            continue
        verdicts = rules[name](frame).check_output.fillna(False).astype(bool).tolist() if len(frame) else []
        step = max(1, len(frame) // sample)
        positions = sorted({i for i, ok in enumerate(verdicts) if not ok} | set(range(0, len(frame), step)))
        chosen = frame.iloc[positions]
        records = chosen.astype(object).where(chosen.notna(), None).to_dict("records")
        check = twin.resolve()
        for position, record in zip(positions, records, strict=True):
            try:
                got = bool(check(record))
            except Exception as exc:  # a twin that cannot read a row is a disagreement, named
                got = f"{type(exc).__name__}: {exc}"
            if got is not verdicts[position]:
                problems.append(f"{name}, row {position}: twin {got!r}, rule {verdicts[position]!r}")
                if len(problems) >= 10:
                    return compared + len(positions), problems
        compared = max(compared, len(positions))
    return compared, problems


def validate_rows(raw: pd.DataFrame, system: System, source: Source, key: str) -> ValidationResult:
    """Validate the raw rows of one source for one partition (lazily: every failure of every row is reported)."""
    frame = _prepared(raw, source)
    failures = _failures(frame, system, source, key)
    bad_index = pd.Index(failures["index"].unique()).astype("int64")
    quarantined = frame.loc[bad_index].copy()
    if not quarantined.empty:
        grouped = failures.groupby("index", sort=False)
        summary = pd.DataFrame({
            "failed_checks": grouped["check"].agg("; ".join),
            "failed_columns": grouped["column"].agg("; ".join),
            "failure_values": grouped["value"].agg(lambda v: "; ".join(map(str, v))),
        })
        summary["reason"] = grouped.apply(
            lambda g: "; ".join(f"{c} failed {k} (value {v})" if k != "parseable" else str(v)
                                for k, c, v in zip(g["check"], g["column"], g["value"], strict=True)),
            include_groups=False)
        quarantined = quarantined.join(summary)
    else:
        for column in QUARANTINE_COLUMNS:
            quarantined[column] = pd.Series(dtype=object)
    valid = frame.drop(index=bad_index).drop(columns=["parse_errors"])
    return ValidationResult(valid=valid.reset_index(drop=True), quarantined=quarantined.reset_index(drop=True))
