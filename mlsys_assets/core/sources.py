"""What the engine reads off a declared source: its columns and their kinds (from the pandera schema), the schema
as validation runs it, where its landing files live, and which partition a row belongs to.

Nothing here is particular to one system; pandera is imported only when a schema is first needed (in a run).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

    from mlsys_assets.declaration import Source, System

KINDS = ("integer", "float", "text", "timestamp", "date", "boolean")


@dataclass(frozen=True)
class Columns:
    """The declared columns of a source, by kind, in the schema's order."""

    kinds: dict[str, str]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.kinds)

    def of(self, kind: str) -> tuple[str, ...]:
        return tuple(name for name, k in self.kinds.items() if k == kind)


def _kind(dtype: str) -> str:
    dtype = dtype.lower()
    if dtype.startswith(("int", "uint")):
        return "integer"
    if dtype.startswith("float"):
        return "float"
    if dtype.startswith("datetime"):
        return "timestamp"
    if dtype == "date":
        return "date"
    if dtype.startswith(("bool", "boolean")):
        return "boolean"
    return "text"


@cache
def _model_schema(model: type, key: tuple[str, ...] = ()) -> pa.DataFrameSchema:
    schema = model.to_schema()
    if key:
        schema.unique = list(key)
        schema.report_duplicates = "exclude_first"  # of rows sharing a key, the first is kept, the others fail
    return schema


def schema_for(source: Source) -> pa.DataFrameSchema:
    """The source's pandera schema, unique on its declared key (a repeated key quarantines the later rows)."""
    return _model_schema(source.schema.resolve(), tuple(source.key))


def columns_of(source: Source) -> Columns:
    schema = _model_schema(source.schema.resolve())
    return Columns({name: _kind(str(column.dtype)) for name, column in schema.columns.items()})


def check_columns(source: Source) -> dict[str, tuple[str, ...]]:
    """The columns each rule across columns reads, for quarantine reasons; the key for uniqueness."""
    return {"unique_key": tuple(source.key), **source.check_columns}


def file_for(landing_dir: str | Path, system: System, source: Source, partition_key: str) -> Path:
    """`<landing>/<system>/<source>/<partition key>.<format>`."""
    return Path(landing_dir) / system.name / source.name / f"{partition_key}.{source.format}"


def partition_times(source: Source, rows: pd.DataFrame) -> pd.Series:
    """The time that places each row in a partition: the declared column, or the declared function of the rows."""
    import pandas as pd

    by = source.partition_by
    values = rows[by] if isinstance(by, str) else by.resolve()(rows)
    return pd.to_datetime(values, errors="coerce", utc=False)
