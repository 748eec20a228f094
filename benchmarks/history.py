"""Many days of history, cheaply: the warehouse tables filled by the same core functions the daily assets call,
and the Dagster instance told about every partition with runless materialization events.

Replaying a day through the sensors and automation costs about 5 s (three or four runs, ten or eleven steps,
five sensor ticks); 300 days would take 25 minutes. The fill writes the same rows (core.landing ->
core.validation -> core.featurize -> the baseline's scores) in chunks of days, one transaction per chunk, and
records one materialization per asset and day (and the validation checks' results) without a run: about 0.2 s
a day (two worker processes prepare the days). Unlike the validation asset, which reads the raw day back from
DuckDB, the fill validates the landing frame as read (the same rows; a column with a NULL comes back from
DuckDB as float64 and validate_rows makes it Int64 again). What it leaves out: the history's runs, step events
and sensor ticks (the event log holds 13 records a day instead of the ~110 that a day's runs write), and the
monitoring tables (drift, live performance) of history days, which are a few rows a day. Call `fill_history`
before `InProcessDaemon.start()`: automation treats what it finds at its first evaluation as the baseline, as
the real daemon does when it starts on an existing store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlsys_assets.declaration import System

FILL_TAG = "benchmark history fill"
POOL_FROM_DAYS = 40  # more days than this: read, validate and build features in worker processes


def daily_assets(system: System) -> tuple[str, ...]:
    """The system's daily assets a day's runs materialize (names under the system's prefix): raw, validated and
    quarantined per source, features, each lookup's published rows, batch predictions."""
    return (*(f"raw_{s.name}" for s in system.sources),
            *(f"{kind}_{s.name}" for s in system.sources for kind in ("validated", "quarantined")),
            "features", *(f"online_{s.name}" for s in system.lookups), "batch_predictions")


def _chunks(days: Sequence[str], size: int) -> list[list[str]]:
    return [list(days[i:i + size]) for i in range(0, len(days), size)]


@dataclass
class PreparedDay:
    day: str
    raw: dict[str, pd.DataFrame]
    valid: dict[str, pd.DataFrame]
    quarantined: dict[str, pd.DataFrame]
    features: pd.DataFrame
    seconds: float


def prepare_day(system: System, landing_dir: str, day: str) -> PreparedDay:
    """One day's rows as the daily assets make them: the landing files read strictly (raw), validated by the
    pandera schemas (valid + quarantined), and the features built from the valid rows (the entity's rows, with
    the lookup sources' rows as context)."""
    import time
    from datetime import UTC, datetime

    from mlsys_assets.core.featurize import build_features
    from mlsys_assets.core.landing import read_landing_file
    from mlsys_assets.core.sources import file_for
    from mlsys_assets.core.validation import validate_rows

    began = time.perf_counter()
    raw, valid, quarantined = {}, {}, {}
    for source in system.sources:
        name = source.name
        raw[name] = read_landing_file(file_for(landing_dir, system, source, day), source).frame
        result = validate_rows(raw[name], system, source, day)
        valid[name], quarantined[name] = result.valid, result.quarantined
        raw[name] = raw[name].assign(ingested_at=datetime.now(UTC).replace(tzinfo=None), ingested_by_run=FILL_TAG)
    features = build_features(system, valid[system.prediction.entity],
                              {source.name: valid[source.name] for source in system.lookups})
    return PreparedDay(day, raw, valid, quarantined, features, time.perf_counter() - began)


def _prepared(system: System, days: Sequence[str], landing_dir: Path, chunk_days: int) -> Iterator[list[PreparedDay]]:
    """Chunks of prepared days in order; with many days, two worker processes prepare the next chunk while
    the caller writes the current one."""
    chunks = _chunks(days, chunk_days)
    if len(days) < POOL_FROM_DAYS:
        for part in chunks:
            yield [prepare_day(system, str(landing_dir), day) for day in part]
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = [pool.submit(prepare_day, system, str(landing_dir), day) for day in chunks[0]]
        for number in range(len(chunks)):
            current = pending
            pending = ([pool.submit(prepare_day, system, str(landing_dir), day) for day in chunks[number + 1]]
                       if number + 1 < len(chunks) else [])
            yield [future.result() for future in current]


def fill_history(system: System, days: Sequence[str], landing_dir: Path, instance,
                 chunk_days: int = 20) -> dict[str, float]:
    """Fill raw -> validated/quarantined -> features -> baseline-scored batch predictions (and the published
    lookups) of `system` for `days`, whose landing files are already in `landing_dir`; report each partition to
    `instance`. Returns seconds spent per part (preparing days runs in worker processes beside the rest for long
    fills)."""
    import time

    from mlsys_assets.core.model import fit_baseline, scores
    from mlsys_assets.core.online import lookup_path, publish_lookup
    from mlsys_assets.core.sources import columns_of
    from mlsys_assets.core.warehouse import PartitionWrite
    from mlsys_assets.resources import Warehouse

    warehouse = Warehouse.from_env()
    threshold = system.prediction.threshold
    key, time_column, label = system.features.id_column, system.features.time_column, system.prediction.label
    spent = {"prepare days (read, validate, features; summed over workers)": 0.0, "baseline scores": 0.0,
             "warehouse writes": 0.0, "instance events": 0.0, "wall": 0.0}
    history: list[pd.DataFrame] = []  # the baseline scoring a day is fitted on the days before it
    began = time.perf_counter()
    for part in _prepared(system, days, landing_dir, chunk_days):
        mark = time.perf_counter()
        writes: list[PartitionWrite] = []
        counts: dict[tuple[str, str], int] = {}
        baseline = fit_baseline(system, pd.concat(history, ignore_index=True) if history else
                                pd.DataFrame(columns=[*system.model.baseline_by, label]))
        for prepared in part:
            day = prepared.day
            spent["prepare days (read, validate, features; summed over workers)"] += prepared.seconds
            probability = scores(system, baseline, prepared.features)
            predictions = pd.DataFrame({
                key: prepared.features[key], time_column: prepared.features[time_column],
                "probability": probability, "predicted_label": (probability >= threshold).astype("int64"),
                "model_name": "baseline", "model_version": "baseline", "mlflow_run_id": None, "role": "champion",
                "is_fallback": True, "scored_by_run": FILL_TAG})
            for name in prepared.raw:
                writes += [PartitionWrite(f"raw_{name}", prepared.raw[name], day),
                           PartitionWrite(f"validated_{name}", prepared.valid[name], day),
                           PartitionWrite(f"quarantined_{name}", prepared.quarantined[name], day)]
            writes += [PartitionWrite("features", prepared.features, day),
                       PartitionWrite("batch_predictions", predictions, day)]
            for source in system.lookups:  # as the online_<lookup> assets publish them
                rows = prepared.valid[source.name]
                publish_lookup(lookup_path(system.name, source.name, day), rows, columns_of(source).names)
                counts[(f"online_{source.name}", day)] = len(rows)
            history.append(prepared.features)
        spent["baseline scores"] += time.perf_counter() - mark
        mark = time.perf_counter()
        with warehouse.get_connection(system.name) as con:
            append_partitions(con, writes)
        spent["warehouse writes"] += time.perf_counter() - mark
        counts.update({(w.table, w.day): len(w.frame) for w in writes})
        mark = time.perf_counter()
        _report(system, instance, [p.day for p in part], counts)
        spent["instance events"] += time.perf_counter() - mark
    spent["wall"] = time.perf_counter() - began
    return spent


def append_partitions(con, writes: list) -> None:
    """Append new days to existing tables (of the connection's schema, the system's): one INSERT per table for
    the whole chunk, in one transaction. The rows and their typing are replace_partitions' (its `_plain`); its
    DELETE of the day is left out because history days are new, which makes the fill ~5x faster than one replace
    per day and table."""
    from mlsys_assets.core.warehouse import PARTITION_COLUMN, _plain, transaction

    by_table: dict[str, list[pd.DataFrame]] = {}
    for write in writes:
        if len(write.frame):
            by_table.setdefault(write.table, []).append(
                _plain(write.frame).assign(**{PARTITION_COLUMN: pd.Timestamp(write.day).date()}))
    with transaction(con):
        for table, frames in by_table.items():
            con.register("_history", pd.concat(frames, ignore_index=True))
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _history")
            con.unregister("_history")


def _report(system: System, instance, days: Sequence[str], counts: dict[tuple[str, str], int]) -> None:
    """One runless materialization per asset and day, and the validation checks' results, as the runs would
    have recorded them (so sensors and automation see the partitions as materialized)."""
    from dagster import AssetCheckEvaluation, AssetKey, AssetMaterialization

    for day in days:
        for asset in daily_assets(system):
            instance.report_runless_asset_event(AssetMaterialization(
                asset_key=AssetKey([system.name, asset]), partition=day,
                metadata={"dagster/row_count": counts.get((asset, day), 0), "filled_by": FILL_TAG}))
        for name in (source.name for source in system.sources):
            raw, valid, quarantined = (counts[(f"{kind}_{name}", day)] for kind in ("raw", "validated", "quarantined"))
            for check, passed in (("no_rows_lost", raw == valid + quarantined),
                                  ("quarantine_rate_below_threshold", quarantined <= 0.01 * max(raw, 1))):
                instance.report_runless_asset_event(AssetCheckEvaluation(
                    asset_key=AssetKey([system.name, f"validated_{name}"]), check_name=check, passed=passed,
                    partition=day, metadata={"filled_by": FILL_TAG}))


@contextmanager
def no_fsync() -> Iterator[None]:
    """SQLite without fsync on commit (PRAGMA synchronous=OFF) for every connection opened meanwhile: the fill's
    ~13 runless events a day cost two commits each. Setup only; the measured days run with the normal setting."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def relaxed(connection, _record) -> None:
        connection.execute("PRAGMA synchronous=OFF")

    event.listen(Engine, "connect", relaxed)
    try:
        yield
    finally:
        event.remove(Engine, "connect", relaxed)
