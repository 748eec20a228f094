"""The model: one scikit-learn Pipeline (encoding + classifier) over `FEATURE_COLUMNS`, and the baseline.

The pipeline takes the feature rows `core.features` produces, so batch scoring and the online server
call the same code. scikit-learn is imported here, and this module only where a model is built or used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlsys_assets.core.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES, feature_matrix

ESTIMATORS = ("hist_gradient_boosting", "logistic_regression")


@dataclass(frozen=True)
class ModelParams:
    """What a candidate is trained with; every field is logged to MLflow as a parameter."""

    estimator: str = "hist_gradient_boosting"
    learning_rate: float = 0.08
    max_iter: int = 200
    max_leaf_nodes: int = 31
    l2_regularization: float = 1.0
    random_state: int = 42


def build_pipeline(params: ModelParams) -> Pipeline:
    """Encoding and classifier in one Pipeline, so nothing is fitted outside it and serving cannot drift."""
    if params.estimator == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.feature_selection import VarianceThreshold

        # Categorical columns come first, so the classifier's categorical indices hold whatever is dropped after
        # them; constant numeric columns (one day's month, say) are dropped, which HGB's binning cannot take.
        encode = ColumnTransformer(
            [("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                            encoded_missing_value=-2, dtype=np.float64), list(CATEGORICAL_FEATURES)),
             ("numeric", VarianceThreshold(0.0), list(NUMERIC_FEATURES))],
            verbose_feature_names_out=False)
        classifier = HistGradientBoostingClassifier(
            learning_rate=params.learning_rate, max_iter=params.max_iter, max_leaf_nodes=params.max_leaf_nodes,
            l2_regularization=params.l2_regularization, random_state=params.random_state, early_stopping=False,
            categorical_features=list(range(len(CATEGORICAL_FEATURES))))
        return Pipeline([("encode", encode), ("classify", classifier)])
    if params.estimator == "logistic_regression":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        encode = ColumnTransformer(
            [("categorical", OneHotEncoder(handle_unknown="ignore", min_frequency=20), list(CATEGORICAL_FEATURES)),
             ("numeric", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
              list(NUMERIC_FEATURES))])
        classifier = LogisticRegression(C=1.0 / max(params.l2_regularization, 1e-6), max_iter=1000,
                                        random_state=params.random_state)
        return Pipeline([("encode", encode), ("classify", classifier)])
    raise ValueError(f"unknown estimator {params.estimator!r}; choose one of {ESTIMATORS}")


def fit_pipeline(features: pd.DataFrame, labels: pd.Series, params: ModelParams) -> Pipeline:
    import warnings

    pipeline = build_pipeline(params)
    with warnings.catch_warnings():
        # a weather column never observed in the window (wind_gust in a calm week) is all NaN: VarianceThreshold
        # drops it, as intended, after NumPy warns about the empty variance
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        pipeline.fit(feature_matrix(features), labels.astype("int64").to_numpy())
    return pipeline


def delay_probability(model: object, features: pd.DataFrame) -> np.ndarray:
    """P(is_delayed) for each feature row, from the pipeline or the baseline."""
    if len(features) == 0:
        return np.zeros(0)
    return np.asarray(model.predict_proba(feature_matrix(features))[:, 1], dtype=np.float64)


class RateBaseline(ClassifierMixin, BaseEstimator):
    """Historical delay rate by carrier and departure-hour band, shrunk toward the overall rate.

    The fallback when no champion can be loaded: cheap, always available, and honest about what it is.
    """

    def __init__(self, smoothing: float = 50.0) -> None:
        self.smoothing = smoothing

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> RateBaseline:
        frame = pd.DataFrame({"carrier": X["carrier"].astype(str).to_numpy(),
                              "band": X["dep_hour_band"].astype(str).to_numpy(), "y": np.asarray(y, dtype=float)})
        self.global_rate_ = float(frame["y"].mean()) if len(frame) else 0.2
        grouped = frame.groupby(["carrier", "band"])["y"].agg(["sum", "count"])
        rates = (grouped["sum"] + self.smoothing * self.global_rate_) / (grouped["count"] + self.smoothing)
        self.rates_ = {f"{c}|{b}": float(r) for (c, b), r in rates.items()}
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        keys = X["carrier"].astype(str) + "|" + X["dep_hour_band"].astype(str)
        positive = keys.map(self.rates_).fillna(self.global_rate_).to_numpy(dtype=float)
        return np.column_stack([1 - positive, positive])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def to_frame(self) -> pd.DataFrame:
        """The fitted rates as a table, so the warehouse can publish the baseline beside the model."""
        keys = list(self.rates_)
        return pd.DataFrame({"carrier": [k.split("|")[0] for k in keys],
                             "dep_hour_band": [k.split("|")[1] for k in keys],
                             "delay_rate": list(self.rates_.values()), "global_rate": self.global_rate_})

    @classmethod
    def from_frame(cls, table: pd.DataFrame, smoothing: float = 50.0) -> RateBaseline:
        baseline = cls(smoothing=smoothing)
        baseline.global_rate_ = float(table["global_rate"].iloc[0]) if len(table) else 0.2
        baseline.rates_ = {f"{c}|{b}": float(r) for c, b, r in
                           zip(table["carrier"], table["dep_hour_band"], table["delay_rate"], strict=True)}
        baseline.classes_ = np.array([0, 1])
        return baseline


def fit_baseline(features: pd.DataFrame) -> RateBaseline:
    labelled = features[features["is_delayed"].notna()]
    return RateBaseline().fit(labelled[list(FEATURE_COLUMNS)], labelled["is_delayed"].astype(int).to_numpy())
