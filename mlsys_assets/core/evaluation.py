"""Model metrics (overall, per slice, calibration) and the promotion gate's decision.

Monitoring reuses `classification_metrics` for live performance, so a model is judged by the same
numbers before promotion and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlsys_assets.declaration import METRICS

if TYPE_CHECKING:
    from mlsys_assets.declaration import System

HIGHER_IS_BETTER = {name: higher for metrics in METRICS.values() for name, higher in metrics.items()}


def regression_metrics(y: np.ndarray, v: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error and R² of predicted values."""
    y, v = np.asarray(y, dtype=float), np.asarray(v, dtype=float)
    out: dict[str, float] = {"rows": float(len(y)), "mean_label": float(y.mean()) if len(y) else float("nan")}
    error = v - y
    out["mae"] = float(np.abs(error).mean()) if len(y) else float("nan")
    out["rmse"] = float(np.sqrt((error ** 2).mean())) if len(y) else float("nan")
    variance = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    out["r2"] = float(1 - (error ** 2).sum() / variance) if variance > 0 else float("nan")
    return out


def metrics(system: System, y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    """The task's metrics: classification at the declared threshold, or regression."""
    if system.prediction.task == "binary":
        return classification_metrics(y, s, system.prediction.threshold)
    return regression_metrics(y, s)


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, average precision, log loss, Brier score, precision and recall at the operating threshold."""
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    out: dict[str, float] = {"rows": float(len(y)), "positive_rate": float(y.mean()) if len(y) else float("nan")}
    both_classes = len(np.unique(y)) == 2
    predicted = (p >= threshold).astype(int)
    out["roc_auc"] = float(roc_auc_score(y, p)) if both_classes else float("nan")
    out["average_precision"] = float(average_precision_score(y, p)) if both_classes else float("nan")
    out["log_loss"] = float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan")
    out["brier"] = float(brier_score_loss(y, p)) if len(y) else float("nan")
    out["precision"] = float(precision_score(y, predicted, zero_division=0))
    out["recall"] = float(recall_score(y, predicted, zero_division=0))
    return out


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability against the observed rate, per equal-width probability bin."""
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    frame["bin"] = np.minimum((frame["p"] * bins).astype(int), bins - 1)
    table = frame.groupby("bin").agg(rows=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"))
    table = table.reset_index()
    table["bin_low"], table["bin_high"] = table["bin"] / bins, (table["bin"] + 1) / bins
    return table[["bin_low", "bin_high", "rows", "mean_predicted", "observed_rate"]]


def slice_metrics(system: System, frame: pd.DataFrame, y: np.ndarray, p: np.ndarray) -> pd.DataFrame:
    """The same metrics per value of each of the gate's slice columns: one row per (slice, value)."""
    rows = []
    for column in system.gate.slices:
        values = frame[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            rows.append({"slice": column, "value": value,
                         **metrics(system, np.asarray(y)[mask], np.asarray(p)[mask])})
    return pd.DataFrame(rows, columns=["slice", "value", "rows"]) if not rows else pd.DataFrame(rows)


@dataclass(frozen=True)
class GatePolicy:
    primary_metric: str = "roc_auc"
    min_improvement: float = 0.002
    slice_tolerance: float = 0.05
    slice_min_rows: int = 500
    absolute_floor: float = 0.6

    @classmethod
    def of(cls, system: System) -> GatePolicy:
        gate = system.gate
        return cls(primary_metric=gate.metric, min_improvement=gate.min_improvement, slice_tolerance=gate.tolerance,
                   slice_min_rows=gate.slice_min_rows, absolute_floor=gate.floor)


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    candidate_value: float = float("nan")
    champion_value: float | None = None
    regressed_slices: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return ("promote: " if self.promote else "reject: ") + "; ".join(self.reasons)


def promotion_decision(candidate: dict[str, float], champion: dict[str, float] | None,
                       candidate_slices: pd.DataFrame, champion_slices: pd.DataFrame | None,
                       policy: GatePolicy) -> Decision:
    """Promote when the candidate beats the champion on the primary metric by the margin and no slice with
    enough rows regresses past the tolerance; a first model needs only to clear the absolute floor."""
    metric = policy.primary_metric
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    value = candidate[metric]
    decision = Decision(promote=True, candidate_value=value)
    if not np.isfinite(value):
        return Decision(False, [f"candidate {metric} is undefined on the holdout"], value)
    if champion is None:
        ok = sign * (value - policy.absolute_floor) >= 0
        decision.promote = ok
        decision.reasons.append(f"first model: {metric} {value:.4f} {'clears' if ok else 'misses'} the floor "
                                f"{policy.absolute_floor:.4f}")
        return decision
    decision.champion_value = champion[metric]
    gain = sign * (value - champion[metric])
    if gain < policy.min_improvement:
        decision.promote = False
        decision.reasons.append(f"{metric} {value:.4f} vs champion {champion[metric]:.4f}: improvement "
                                f"{gain:+.4f} < required {policy.min_improvement:.4f}")
    else:
        decision.reasons.append(f"{metric} {value:.4f} vs champion {champion[metric]:.4f}: improvement {gain:+.4f}")
    if champion_slices is not None and len(champion_slices):
        merged = candidate_slices.merge(champion_slices, on=["slice", "value"], suffixes=("", "_champion"))
        merged = merged[merged["rows"] >= policy.slice_min_rows]
        drop = sign * (merged[metric] - merged[f"{metric}_champion"])
        regressed = merged[drop < -policy.slice_tolerance]
        if len(regressed):
            decision.promote = False
            decision.regressed_slices = [f"{r.slice}={r.value}" for r in regressed.itertuples()]
            decision.reasons.append(f"slices regressed by more than {policy.slice_tolerance}: "
                                    + ", ".join(decision.regressed_slices))
    return decision
