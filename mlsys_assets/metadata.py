"""Materialization metadata shared by every stage: row counts, previews, schemas."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema


def column_schema(frame: pd.DataFrame) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=str(c), type=str(t)) for c, t in frame.dtypes.items()])


def markdown_table(frame: pd.DataFrame, max_rows: int = 10) -> MetadataValue:
    if frame.empty:
        return MetadataValue.md("_no rows_")
    shown = frame.head(max_rows).copy()
    for column in shown.columns:
        if shown[column].dtype == object or str(shown[column].dtype) == "str":
            shown[column] = shown[column].astype(str).str.slice(0, 80)
    return MetadataValue.md(shown.to_markdown(index=False))


def table_metadata(frame: pd.DataFrame, preview_rows: int = 5) -> dict[str, Any]:
    """Dagster's standard row count and column schema, plus a preview of the first rows."""
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame),
        "preview": markdown_table(frame, preview_rows),
    }
