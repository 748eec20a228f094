"""Materialization metadata shared by every stage: row counts, previews, schemas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagster import MetadataValue, TableColumn, TableSchema

if TYPE_CHECKING:
    import pandas as pd


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


class _Cost:
    """Wall time and peak resident memory of one step. Linux keeps a per-process peak (VmHWM) that writing "5" to
    /proc/self/clear_refs resets, so each step of an in-process run gets its own peak; elsewhere the process's
    lifetime peak (ru_maxrss) is reported instead, labelled as such."""

    def __enter__(self) -> _Cost:
        import time

        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.per_step = True
        except OSError:
            self.per_step = False
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        import time

        self.seconds = time.perf_counter() - self.started
        peak_kb = None
        if self.per_step:
            with open("/proc/self/status") as handle:
                peak_kb = next((int(line.split()[1]) for line in handle if line.startswith("VmHWM:")), None)
        if peak_kb is None:
            import resource

            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_mb = peak_kb / 1024

    def metadata(self) -> dict[str, Any]:
        key = "cost/peak_rss_mb" if self.per_step else "cost/process_peak_rss_mb"
        return {"cost/seconds": round(self.seconds, 3), key: round(self.peak_mb, 1)}


def _with_cost(item: Any, cost: _Cost, context: Any) -> Any:
    from dagster import MaterializeResult, Output

    if isinstance(item, MaterializeResult):
        if context is not None:  # added to the step's materialization of that asset
            context.add_asset_metadata(cost.metadata(), asset_key=item.asset_key)
        return item
    if isinstance(item, Output):
        return item.with_metadata({**(item.metadata or {}), **cost.metadata()})
    return item  # check results and the like carry no cost of their own


def _asset_context(args: tuple, kwargs: dict) -> Any:
    """The step's AssetExecutionContext: the one the function takes, else the one in scope; None when the function
    is invoked outside a run."""
    from dagster import AssetExecutionContext, DagsterInvariantViolationError

    given = next((a for a in (*args, *kwargs.values()) if isinstance(a, AssetExecutionContext)), None)
    if given is not None:
        return given
    try:
        return AssetExecutionContext.get()
    except DagsterInvariantViolationError:
        return None


def _plain_storage_errors() -> Any:
    """A step that hits a full disk or a read-only folder fails with a StorageError naming the path (the file the
    OS error names, else MLSYS_HOME) and what to do."""
    from mlsys_assets.core.storage import plain_storage_errors
    from mlsys_assets.settings import mlsys_home

    return plain_storage_errors(mlsys_home())


def accounted(fn: Any) -> Any:
    """Adds the step's wall time and peak memory to every materialization it returns or yields, so the UI plots
    what each asset costs over time. Goes between the asset decorator and the function."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            with _Cost() as cost, _plain_storage_errors():
                items = list(fn(*args, **kwargs))
            context = _asset_context(args, kwargs)
            yield from (_with_cost(item, cost, context) for item in items)

        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        with _Cost() as cost, _plain_storage_errors():
            result = fn(*args, **kwargs)
        context = _asset_context(args, kwargs)
        if type(result) is tuple:  # several results (a multi-asset); a MaterializeResult is a tuple subclass
            return tuple(_with_cost(item, cost, context) for item in result)
        return _with_cost(result, cost, context)

    return function
