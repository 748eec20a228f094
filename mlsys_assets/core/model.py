"""Models: the estimator factories a declaration names, fitting and scoring through a system's feature matrix,
and the fallback baseline.

A factory returns one scikit-learn Pipeline (encoding + estimator), so nothing is fitted outside it and
serving cannot drift. scikit-learn is imported here, and this module only where a model is built or used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlsys_assets.core.featurize import feature_matrix

if TYPE_CHECKING:
    from mlsys_assets.declaration import System


def hist_gradient_boosting(categorical: Sequence[str], numeric: Sequence[str], task: str = "binary",
                           learning_rate: float = 0.08, max_iter: int = 200, max_leaf_nodes: int = 31,
                           l2_regularization: float = 1.0, random_state: int = 42) -> Pipeline:
    """Ordinal-encoded categoricals and numeric columns into histogram gradient boosting (classifier or regressor).

    Categorical columns come first, so the estimator's categorical indices hold whatever is dropped after them;
    constant numeric columns (one day's month, say) are dropped, which HGB's binning cannot take."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.feature_selection import VarianceThreshold

    encode = ColumnTransformer(
        [("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                        encoded_missing_value=-2, dtype=np.float64), list(categorical)),
         ("numeric", VarianceThreshold(0.0), list(numeric))],
        verbose_feature_names_out=False)
    estimator = HistGradientBoostingClassifier if task == "binary" else HistGradientBoostingRegressor
    model = estimator(learning_rate=learning_rate, max_iter=max_iter, max_leaf_nodes=max_leaf_nodes,
                      l2_regularization=l2_regularization, random_state=random_state, early_stopping=False,
                      categorical_features=list(range(len(categorical))))
    return Pipeline([("encode", encode), ("classify" if task == "binary" else "regress", model)])


def linear(categorical: Sequence[str], numeric: Sequence[str], task: str = "binary",
           l2_regularization: float = 1.0, random_state: int = 42) -> Pipeline:
    """One-hot categoricals and scaled numerics into logistic regression (binary) or ridge (regression)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encode = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", min_frequency=20), list(categorical)),
         ("numeric", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), list(numeric))])
    if task == "binary":
        return Pipeline([("encode", encode), ("classify", LogisticRegression(
            C=1.0 / max(l2_regularization, 1e-6), max_iter=1000, random_state=random_state))])
    return Pipeline([("encode", encode), ("regress", Ridge(alpha=l2_regularization))])


def effective_params(system: System, **overrides: object) -> dict[str, object]:
    """The factory's parameters as a candidate is trained with them: its own defaults, the declared ones over them,
    then any overrides (what MLflow logs; the defaults live in one place, the factory's signature)."""
    import inspect

    factory = system.model.factory.resolve()
    defaults = {name: p.default for name, p in inspect.signature(factory).parameters.items()
                if name not in ("categorical", "numeric", "task") and p.default is not inspect.Parameter.empty}
    return {**defaults, **system.model.params, **overrides}


def build_pipeline(system: System, **overrides: object) -> Pipeline:
    """The system's declared factory with its declared parameters (and any overrides)."""
    spec = system.features
    params = {**system.model.params, **overrides}
    return system.model.factory.resolve()(categorical=spec.categorical, numeric=spec.numeric,
                                          task=system.prediction.task, **params)


def fit_pipeline(system: System, features: pd.DataFrame, **overrides: object) -> Pipeline:
    """A pipeline fitted on labelled feature rows."""
    import warnings

    pipeline = build_pipeline(system, **overrides)
    labels = features[system.prediction.label]
    target = labels.astype("int64") if system.prediction.task == "binary" else labels.astype("float64")
    with warnings.catch_warnings():
        # a column never observed in the window (a calm week's gusts) is all NaN: VarianceThreshold drops it, as
        # intended, after NumPy warns about the empty variance
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        pipeline.fit(feature_matrix(system, features), target.to_numpy())
    return pipeline


def scores(system: System, model: object, features: pd.DataFrame) -> np.ndarray:
    """What the model says of each feature row: P(positive) for a binary task, the value for regression."""
    if len(features) == 0:
        return np.zeros(0)
    matrix = feature_matrix(system, features)
    if system.prediction.task == "binary":
        return np.asarray(model.predict_proba(matrix)[:, 1], dtype=np.float64)
    return np.asarray(model.predict(matrix), dtype=np.float64)


class RateBaseline(ClassifierMixin, BaseEstimator):
    """The historical rate (binary) or mean (regression) per group of the declared `baseline_by` columns, shrunk
    toward the overall one: the fallback when no champion can be loaded, cheap, always available, and honest
    about what it is."""

    def __init__(self, by: Sequence[str] = (), smoothing: float = 50.0) -> None:
        self.by = by
        self.smoothing = smoothing

    def _keys(self, X: pd.DataFrame) -> pd.Series:
        if not self.by:
            return pd.Series("", index=X.index)
        keys = X[self.by[0]].astype(str)
        for column in self.by[1:]:
            keys = keys + "|" + X[column].astype(str)
        return keys

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RateBaseline:
        frame = pd.DataFrame({"key": self._keys(X).to_numpy(), "y": np.asarray(y, dtype=float)})
        self.global_rate_ = float(frame["y"].mean()) if len(frame) else 0.2
        grouped = frame.groupby("key")["y"].agg(["sum", "count"])
        rates = (grouped["sum"] + self.smoothing * self.global_rate_) / (grouped["count"] + self.smoothing)
        self.rates_ = {str(k): float(r) for k, r in rates.items()}
        self.classes_ = np.array([0, 1])
        return self

    def value_of(self, row: Mapping[str, Any]) -> float:
        """`values` for one feature row (a mapping), in plain Python: the server's row path."""
        return self.rates_.get("|".join(str(row[c]) for c in self.by), self.global_rate_)

    def values(self, X: pd.DataFrame) -> np.ndarray:
        return self._keys(X).map(self.rates_).fillna(self.global_rate_).to_numpy(dtype=float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        positive = self.values(X)
        return np.column_stack([1 - positive, positive])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The group's mean (what a regression baseline predicts; for a binary task, the rate)."""
        return self.values(X)

    def to_frame(self) -> pd.DataFrame:
        """The fitted rates as a table (one column per `by` column), so the pipeline can publish the baseline."""
        keys = list(self.rates_)
        parts = [k.split("|") for k in keys]
        frame = pd.DataFrame({column: [p[i] for p in parts] for i, column in enumerate(self.by)})
        frame["rate"] = list(self.rates_.values())
        frame["global_rate"] = self.global_rate_
        return frame

    @classmethod
    def from_frame(cls, table: pd.DataFrame, by: Sequence[str], smoothing: float = 50.0) -> RateBaseline:
        baseline = cls(by=tuple(by), smoothing=smoothing)
        baseline.global_rate_ = float(table["global_rate"].iloc[0]) if len(table) else 0.2
        keys = baseline._keys(table) if len(table) else pd.Series([], dtype=str)
        baseline.rates_ = {str(k): float(r) for k, r in zip(keys, table.get("rate", []), strict=True)}
        baseline.classes_ = np.array([0, 1])
        return baseline


def fit_baseline(system: System, features: pd.DataFrame) -> RateBaseline:
    label = system.prediction.label
    labelled = features[features[label].notna()] if label in features else features.iloc[0:0]
    return RateBaseline(by=system.model.baseline_by).fit(
        labelled.reindex(columns=list(system.model.baseline_by)), labelled.get(label, pd.Series(dtype=float))
        .astype(float).to_numpy())
