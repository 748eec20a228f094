"""Data drift and prediction drift against a stored reference, as pure functions.

The reference statistics (bin edges and proportions, a quantile sample, std, missing rate, category shares)
are computed ONCE per reference dataset by `build_reference` and stored (`to_dict` is plain JSON), so
comparing a day costs O(rows of the day + sample_size), never a re-read of the reference data.

Drift rule: an effect size above its threshold that is also statistically significant. P-values alone fire
on negligible effects once a day has ~1000 rows; effect sizes alone fire on noise when a day is small (with
50 rows, PSI on 10 bins is ~0.2 from sampling alone and nearly every same-distribution day would "drift").
- numeric: ks_pvalue < t.ks_pvalue AND (psi > t.psi OR ks_statistic > t.ks_statistic
  OR wasserstein / reference std > t.wasserstein);
- categorical: chi2_pvalue < t.chi2_pvalue AND (psi > t.psi OR js_distance > t.js
  OR unseen_share > t.unseen_share);
- either kind, on its own: |missing rate change| > t.missing_rate.
Each test row carries its own flag; the "verdict" row per column applies the rule above. A day has drifted
when the share of drifted columns is above t.drifted_share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

TABLE_COLUMNS = ("column_name", "test", "value", "threshold", "drifted")
NAN = float("nan")


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    ks_pvalue: float = 0.01  # drift signal when p < threshold
    ks_statistic: float = 0.1
    wasserstein: float = 0.1  # in reference standard deviations
    js: float = 0.1
    chi2_pvalue: float = 0.01
    drifted_share: float = 0.15  # the day drifted when the share of drifted columns is above this
    missing_rate: float = 0.1  # absolute change of the share of missing values
    unseen_share: float = 0.05  # share of the day in categories the reference never saw


DEFAULT_THRESHOLDS = DriftThresholds()


@dataclass
class NumericReference:
    """Inner bin edges (outer edges are -inf/+inf, implied so the dict stays strict JSON), proportions per bin,
    a sorted quantile sample standing in for the reference values (KS, Wasserstein), std, missing rate."""

    column: str
    edges: list[float]
    proportions: list[float]
    sample: list[float]
    std: float
    missing_rate: float
    kind: str = field(default="numeric", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericReference:
        return cls(**{k: v for k, v in data.items() if k != "kind"})


@dataclass
class CategoricalReference:
    """Share of each category (as str) among non-missing values, and the missing rate."""

    column: str
    proportions: dict[str, float]
    missing_rate: float
    kind: str = field(default="categorical", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalReference:
        return cls(**{k: v for k, v in data.items() if k != "kind"})


Reference = NumericReference | CategoricalReference


def reference_from_dict(data: dict[str, Any]) -> Reference:
    """Load either kind of reference from its stored dict (dispatch on "kind")."""
    return (CategoricalReference if data.get("kind") == "categorical" else NumericReference).from_dict(data)


def _finite(values: pd.Series) -> tuple[np.ndarray, float]:
    """Finite numeric values and the missing rate (NaN, inf and non-numbers count as missing)."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    finite = x[np.isfinite(x)]
    return finite, (1.0 - finite.size / x.size) if x.size else 0.0


def _bin_proportions(edges: Sequence[float], values: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values, side="right"),
                         minlength=len(edges) + 1)
    return counts / max(values.size, 1)


def _numeric_reference(column: str, values: pd.Series, bins: int, sample_size: int,
                       edges: np.ndarray | None = None) -> NumericReference:
    finite, missing = _finite(values)
    if finite.size == 0:
        return NumericReference(column, [], [1.0], [], 0.0, missing)
    if edges is None:
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
        if finite.min() == finite.max():  # constant: isolate the value so any move shows in PSI
            edges = np.array([finite[0], np.nextafter(finite[0], np.inf)])
    if finite.size <= sample_size:
        sample = np.sort(finite)
    else:  # evenly spaced quantiles: deterministic and less noisy than a random sample
        sample = np.quantile(finite, (np.arange(sample_size) + 0.5) / sample_size)
    return NumericReference(column, [float(e) for e in edges], _bin_proportions(edges, finite).tolist(),
                            sample.tolist(), float(finite.std()), missing)


def build_reference(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str], bins: int = 10,
                    sample_size: int = 2000, seed: int = 0) -> dict[str, Reference]:
    """Everything later comparisons need, computed once. Deterministic: the numeric sample is evenly spaced
    quantiles, so `seed` is unused and kept only for a stable signature."""
    refs: dict[str, Reference] = {c: _numeric_reference(c, frame[c], bins, sample_size) for c in numeric}
    for c in categorical:
        present = frame[c].dropna().astype(str)
        shares = present.value_counts(normalize=True).sort_index()
        missing = 1.0 - len(present) / len(frame) if len(frame) else 0.0
        refs[c] = CategoricalReference(c, {str(k): float(v) for k, v in shares.items()}, missing)
    return refs


def build_score_reference(scores: np.ndarray | pd.Series, bins: int = 10, sample_size: int = 2000,
                          column: str = "score") -> NumericReference:
    """Scores are probabilities that can pile up near 0 or 1, so equal-width bins on [0, 1], not quantiles."""
    return _numeric_reference(column, pd.Series(np.asarray(scores, dtype=float)), bins, sample_size,
                              edges=np.linspace(0.0, 1.0, bins + 1)[1:-1])


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index sum((a - e) * ln(a / e)) on proportions; clipping at epsilon keeps empty
    bins (and categories absent on one side) finite instead of infinite."""
    e = np.clip(np.asarray(expected, dtype=float), epsilon, None)
    a = np.clip(np.asarray(actual, dtype=float), epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _row(column: str, test: str, value: float, threshold: float, below: bool = False) -> dict[str, Any]:
    drifted = value < threshold if below else value > threshold  # NaN compares False: no evidence, no drift
    return {"column_name": column, "test": test, "value": float(value), "threshold": float(threshold),
            "drifted": bool(drifted)}


def _numeric_rows(values: pd.Series, ref: NumericReference, t: DriftThresholds) -> list[dict[str, Any]]:
    finite, missing = _finite(values)
    psi_v = ks_stat = ks_p = wass = NAN
    if finite.size and ref.sample:
        psi_v = psi(np.asarray(ref.proportions), _bin_proportions(ref.edges, finite))
        ks = stats.ks_2samp(ref.sample, finite)
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
        wass = stats.wasserstein_distance(ref.sample, finite) / (ref.std if ref.std > 0 else 1.0)
    c = ref.column
    rows = [_row(c, "psi", psi_v, t.psi), _row(c, "ks_statistic", ks_stat, t.ks_statistic),
            _row(c, "ks_pvalue", ks_p, t.ks_pvalue, below=True), _row(c, "wasserstein", wass, t.wasserstein),
            _row(c, "missing_rate_change", abs(missing - ref.missing_rate), t.missing_rate)]
    f = {r["test"]: r["drifted"] for r in rows}
    verdict = (f["ks_pvalue"] and (f["psi"] or f["ks_statistic"] or f["wasserstein"])) or f["missing_rate_change"]
    return [*rows, _row(c, "verdict", float(verdict), NAN) | {"drifted": verdict}]


def _chi2_pvalue(observed: np.ndarray, expected_share: np.ndarray, epsilon: float) -> float:
    """Chi-square goodness of fit; buckets expected below 5 rows are pooled (the usual validity rule), and the
    epsilon floor keeps the pooled expectation positive, so the p-value is never NaN and never warns."""
    expected = np.clip(expected_share, epsilon, None)
    expected = expected / expected.sum() * observed.sum()
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    return float(stats.chisquare(observed, expected).pvalue) if observed.size >= 2 else 1.0


def _categorical_rows(values: pd.Series, ref: CategoricalReference, t: DriftThresholds,
                      epsilon: float = 1e-4) -> list[dict[str, Any]]:
    present = values.dropna().astype(str)
    missing = 1.0 - len(present) / len(values)
    counts = present.value_counts()
    cats = list(ref.proportions)
    observed = np.array([counts.get(k, 0) for k in cats] + [counts[~counts.index.isin(cats)].sum()], float)
    expected = np.array([ref.proportions[k] for k in cats] + [0.0])  # unseen bucket: 0 here, epsilon in psi
    psi_v = js = chi2_p = unseen = NAN
    if observed.sum() > 0 and cats:
        actual = observed / observed.sum()
        psi_v, unseen = psi(expected, actual, epsilon), actual[-1]
        with np.errstate(invalid="ignore"):  # rounding can leave -1e-17 under the square root: that is 0
            js = float(np.nan_to_num(jensenshannon(expected, actual, base=2)))
        chi2_p = _chi2_pvalue(observed, expected, epsilon)
    c = ref.column
    rows = [_row(c, "psi", psi_v, t.psi), _row(c, "js_distance", js, t.js),
            _row(c, "chi2_pvalue", chi2_p, t.chi2_pvalue, below=True),
            _row(c, "unseen_share", unseen, t.unseen_share),
            _row(c, "missing_rate_change", abs(missing - ref.missing_rate), t.missing_rate)]
    f = {r["test"]: r["drifted"] for r in rows}
    verdict = (f["chi2_pvalue"] and (f["psi"] or f["js_distance"] or f["unseen_share"])) or f["missing_rate_change"]
    return [*rows, _row(c, "verdict", float(verdict), NAN) | {"drifted": verdict}]


def column_drift(values: pd.Series, reference: Reference,
                 thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """One row per test plus a "verdict" row; no rows for an empty day (nothing to compare)."""
    if len(values) == 0:
        return []
    if isinstance(reference, CategoricalReference):
        return _categorical_rows(values, reference, thresholds)
    return _numeric_rows(values, reference, thresholds)


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return table.astype({"column_name": object, "test": object, "value": float, "threshold": float, "drifted": bool})


def drift_table(day: pd.DataFrame, references: dict[str, Reference],
                thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Every referenced column of the day against its stored reference. A referenced column absent from the
    day is compared as all-missing, so a vanished feature shows up as drift instead of silently passing."""
    rows: list[dict[str, Any]] = []
    for name, ref in references.items():
        values = day[name] if name in day.columns else pd.Series(np.nan, index=day.index)
        rows += column_drift(values, ref, thresholds)
    return _table(rows)


def day_verdict(table: pd.DataFrame, thresholds: DriftThresholds = DEFAULT_THRESHOLDS
                ) -> tuple[bool, float, list[str]]:
    """(drifted?, share of drifted columns, drifted column names) from the per-column verdict rows."""
    verdicts = table[table["test"] == "verdict"]
    if verdicts.empty:
        return False, 0.0, []
    names = [str(c) for c in verdicts.loc[verdicts["drifted"].astype(bool), "column_name"]]
    share = len(names) / len(verdicts)
    return share > thresholds.drifted_share, share, names


def score_drift(reference_scores: np.ndarray | NumericReference, day_scores: np.ndarray | pd.Series,
                thresholds: DriftThresholds = DEFAULT_THRESHOLDS) -> list[dict[str, Any]]:
    """Prediction drift with the numeric tests; pass a stored `build_score_reference` result to avoid
    re-summarising the reference scores each day (an array is summarised on the fly)."""
    ref = reference_scores if isinstance(reference_scores, NumericReference) else build_score_reference(
        reference_scores)
    return column_drift(pd.Series(np.asarray(day_scores, dtype=float)), ref, thresholds)
