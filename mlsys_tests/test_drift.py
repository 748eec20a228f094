"""Drift against a stored reference, on hand-made data whose answer is known."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from mlsys_assets.core.drift import (
    TABLE_COLUMNS,
    CategoricalReference,
    DriftThresholds,
    NumericReference,
    build_reference,
    build_score_reference,
    column_drift,
    day_verdict,
    drift_table,
    psi,
    reference_from_dict,
    score_drift,
)

# Any RuntimeWarning (log of 0, sqrt of a negative, chi-square on a zero expectation) is a bug here.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

T = DriftThresholds()


def by_test(rows: list[dict]) -> dict[str, dict]:
    return {r["test"]: r for r in rows}


def numeric_rows(reference: np.ndarray, day: np.ndarray) -> dict[str, dict]:
    refs = build_reference(pd.DataFrame({"x": reference}), ["x"], [])
    return by_test(column_drift(pd.Series(day), refs["x"], T))


def test_same_distribution_is_not_drift() -> None:
    rng = np.random.default_rng(1)
    rows = numeric_rows(rng.normal(0, 1, 1000), rng.normal(0, 1, 1000))
    assert rows["psi"]["value"] < 0.1
    assert rows["ks_pvalue"]["value"] > 0.01
    assert not rows["verdict"]["drifted"]


def test_shifted_mean_is_drift() -> None:
    rng = np.random.default_rng(2)
    rows = numeric_rows(rng.normal(0, 1, 1000), rng.normal(1, 1, 1000))
    assert rows["psi"]["value"] > 0.2 and rows["psi"]["drifted"]
    assert rows["ks_pvalue"]["value"] < 0.01 and rows["ks_pvalue"]["drifted"]
    assert rows["wasserstein"]["value"] == pytest.approx(1.0, abs=0.15)
    assert rows["verdict"]["drifted"]


def test_wasserstein_is_in_reference_standard_deviations() -> None:
    rng = np.random.default_rng(2)
    reference, day = rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)
    unit, scaled = numeric_rows(reference, day), numeric_rows(10 * reference + 5, 10 * day + 5)
    for test in ("psi", "ks_statistic", "wasserstein"):
        assert scaled[test]["value"] == pytest.approx(unit[test]["value"], rel=1e-9)


def test_a_small_day_needs_significance_not_just_a_large_effect_size() -> None:
    rng = np.random.default_rng(11)
    reference = rng.normal(0, 1, 5000)
    noise = numeric_rows(reference, rng.normal(0, 1, 40))
    assert noise["wasserstein"]["drifted"]  # 40 rows: sampling noise alone crosses the effect threshold
    assert not noise["ks_pvalue"]["drifted"] and not noise["verdict"]["drifted"]
    assert numeric_rows(reference, rng.normal(1.5, 1, 40))["verdict"]["drifted"]


def test_psi_matches_the_formula_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3
    assert psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(0.25 * math.log(3), rel=1e-12)
    assert psi(np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5])) == 0.0
    # An empty bin is clipped at epsilon instead of giving an infinite PSI.
    assert psi(np.array([0.5, 0.5]), np.array([1.0, 0.0]), epsilon=1e-4) == pytest.approx(
        0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5))


def categorical_day(rng: np.random.Generator, n: int, categories: list[str], shares: list[float]) -> pd.Series:
    return pd.Series(rng.choice(categories, size=n, p=shares))


def test_categorical_same_shares_is_not_drift_and_a_new_category_is() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"carrier": categorical_day(rng, 2000, ["AA", "B6", "UA"], [0.5, 0.3, 0.2])})
    ref = build_reference(reference, [], ["carrier"])["carrier"]
    assert isinstance(ref, CategoricalReference)

    same = by_test(column_drift(categorical_day(rng, 1000, ["AA", "B6", "UA"], [0.5, 0.3, 0.2]), ref, T))
    assert same["psi"]["value"] < 0.1 and same["js_distance"]["value"] < T.js
    assert same["unseen_share"]["value"] == 0.0
    assert not same["verdict"]["drifted"]

    # 30% of the day is a carrier the reference never saw; the rest keeps the reference shares.
    new = by_test(column_drift(categorical_day(rng, 1000, ["AA", "B6", "UA", "ZZ"], [0.35, 0.21, 0.14, 0.3]),
                               ref, T))
    assert new["unseen_share"]["value"] == pytest.approx(0.3, abs=0.05) and new["unseen_share"]["drifted"]
    assert new["psi"]["value"] > 1.0  # the unseen bucket has reference share epsilon, so it dominates PSI
    assert new["js_distance"]["value"] > T.js
    assert new["chi2_pvalue"]["value"] < 0.01
    assert new["verdict"]["drifted"]


def test_rare_unseen_category_keeps_chi_square_finite() -> None:
    ref = CategoricalReference("c", {"a": 0.999, "b": 0.001}, 0.0)
    rows = by_test(column_drift(pd.Series(["a"] * 998 + ["new"] * 2), ref, T))
    # Expected counts of 1 ("b") and 0.1 (unseen) are pooled: 2 rows there are no evidence (unpooled, p ~ 1e-9).
    assert 0.05 < rows["chi2_pvalue"]["value"] <= 1.0
    assert rows["unseen_share"]["value"] == pytest.approx(0.002)
    assert not rows["verdict"]["drifted"]


def mixed_frame(rng: np.random.Generator, n: int, shift: float = 0.0, new_share: float = 0.0) -> pd.DataFrame:
    cats = rng.choice(["JFK", "LGA", "EWR"], size=n, p=[0.4, 0.35, 0.25]).astype(object)
    cats[rng.random(n) < new_share] = "XXX"
    frame = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(shift, 1, n),
                          "origin": cats, "c": rng.exponential(2, n)})
    frame.loc[rng.random(n) < 0.05, "a"] = np.nan  # NaN is ignored by the distribution tests
    return frame


def test_reference_round_trip_through_json_gives_identical_tables() -> None:
    rng = np.random.default_rng(4)
    frame = mixed_frame(rng, 3000)
    frame["empty"] = np.nan
    frame["flat"] = 7.0
    refs = build_reference(frame, ["a", "b", "c", "empty", "flat"], ["origin"])
    text = json.dumps({k: r.to_dict() for k, r in refs.items()}, allow_nan=False)  # strict JSON: no inf, no NaN
    loaded = {k: reference_from_dict(v) for k, v in json.loads(text).items()}
    assert loaded == refs
    day = mixed_frame(rng, 1000, shift=0.5, new_share=0.1)
    pd.testing.assert_frame_equal(drift_table(day, loaded, T), drift_table(day, refs, T))


def test_drift_table_and_day_verdict_name_the_shifted_columns() -> None:
    rng = np.random.default_rng(5)
    refs = build_reference(mixed_frame(rng, 3000), ["a", "b", "c"], ["origin"])
    table = drift_table(mixed_frame(rng, 1000, shift=1.0, new_share=0.3), refs, T)
    assert tuple(table.columns) == TABLE_COLUMNS
    assert set(table["column_name"]) == {"a", "b", "c", "origin"}
    assert table.groupby("column_name")["test"].apply(lambda t: t.is_unique).all()
    drifted, share, names = day_verdict(table, T)
    assert drifted and share == 0.5 and sorted(names) == ["b", "origin"]

    calm, calm_share, calm_names = day_verdict(drift_table(mixed_frame(rng, 1000), refs, T), T)
    assert not calm and calm_share == 0.0 and calm_names == []


def test_score_drift_uses_fixed_bins_on_the_unit_interval() -> None:
    rng = np.random.default_rng(6)
    reference = rng.beta(2, 5, 5000)
    stored = build_score_reference(reference)
    assert stored.edges == pytest.approx(np.linspace(0, 1, 11)[1:-1].tolist())
    assert not by_test(score_drift(reference, rng.beta(2, 5, 1000)))["verdict"]["drifted"]
    assert not by_test(score_drift(stored, rng.beta(2, 5, 1000)))["verdict"]["drifted"]
    flipped = by_test(score_drift(stored, rng.beta(5, 2, 1000)))
    assert flipped["verdict"]["drifted"] and flipped["psi"]["value"] > 1.0


def test_reference_is_built_once_and_a_day_never_needs_the_reference_frame() -> None:
    rng = np.random.default_rng(7)
    frame = mixed_frame(rng, 200_000)
    refs = build_reference(frame, ["a", "b", "c"], ["origin"], sample_size=2000)
    before = drift_table(mixed_frame(np.random.default_rng(8), 1000), refs, T)
    frame.loc[:, ["a", "b", "c"]] = 1e9  # if the comparison read the frame again, the table would change
    frame["origin"] = "XXX"
    del frame
    # The stored summary has a bounded size, whatever the size of the reference data.
    assert all(len(r.sample) == 2000 and len(r.proportions) <= 10 for r in refs.values()
               if isinstance(r, NumericReference))
    day = mixed_frame(np.random.default_rng(8), 1000)
    started = time.perf_counter()
    after = drift_table(day, refs, T)
    print(f"drift_table on a 1000-row day, 4 columns: {1000 * (time.perf_counter() - started):.1f} ms")
    pd.testing.assert_frame_equal(before, after)


def test_empty_day_gives_no_rows_and_no_drift() -> None:
    refs = build_reference(mixed_frame(np.random.default_rng(9), 500), ["a", "b"], ["origin"])
    table = drift_table(mixed_frame(np.random.default_rng(9), 0), refs, T)
    assert table.empty and tuple(table.columns) == TABLE_COLUMNS
    assert day_verdict(table, T) == (False, 0.0, [])
    assert score_drift(np.array([0.1, 0.2]), np.array([])) == []


def test_all_missing_day_column_is_drift_by_missing_rate_only() -> None:
    ref = build_reference(pd.DataFrame({"x": np.arange(100.0)}), ["x"], [])["x"]
    rows = by_test(column_drift(pd.Series([np.nan] * 50), ref, T))
    assert math.isnan(rows["psi"]["value"]) and not rows["psi"]["drifted"]
    assert rows["missing_rate_change"]["value"] == 1.0 and rows["missing_rate_change"]["drifted"]
    assert rows["verdict"]["drifted"]
    # A referenced column missing from the day frame is treated the same way.
    table = drift_table(pd.DataFrame({"y": [1, 2]}), {"x": ref}, T)
    assert day_verdict(table, T) == (True, 1.0, ["x"])


def test_all_missing_reference_column_gives_no_distribution_verdict() -> None:
    ref = build_reference(pd.DataFrame({"x": [np.nan] * 10, "k": [None] * 10}), ["x"], ["k"])
    numeric = by_test(column_drift(pd.Series([np.nan] * 10), ref["x"], T))
    assert not numeric["verdict"]["drifted"] and numeric["missing_rate_change"]["value"] == 0.0
    categorical = by_test(column_drift(pd.Series([None] * 10), ref["k"], T))
    assert not categorical["verdict"]["drifted"]


def test_constant_reference_column() -> None:
    ref = build_reference(pd.DataFrame({"x": np.full(500, 3.0)}), ["x"], [])["x"]
    assert isinstance(ref, NumericReference) and ref.std == 0.0
    assert not by_test(column_drift(pd.Series(np.full(200, 3.0)), ref, T))["verdict"]["drifted"]
    moved = by_test(column_drift(pd.Series(np.full(200, 3.5)), ref, T))
    assert moved["psi"]["drifted"] and moved["verdict"]["drifted"]
    assert moved["wasserstein"]["value"] == pytest.approx(0.5)  # zero std: the raw distance, not inf


def test_nan_values_are_ignored_by_the_distribution_tests() -> None:
    rng = np.random.default_rng(10)
    day = rng.normal(0, 1, 1000)
    day[rng.random(1000) < 0.05] = np.nan
    rows = numeric_rows(rng.normal(0, 1, 2000), day)
    assert not math.isnan(rows["psi"]["value"]) and not rows["verdict"]["drifted"]
    assert rows["missing_rate_change"]["value"] == pytest.approx(0.05, abs=0.02)
