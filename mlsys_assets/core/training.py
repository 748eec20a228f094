"""The training set: a time-ordered window of feature days, split by time (never at random)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlsys_assets.declaration import System


def window_days(available: list[str], window: int) -> list[str]:
    """The most recent `window` days among those available, oldest first."""
    return sorted(available)[-window:] if window > 0 else []


def split_by_time(system: System, features: pd.DataFrame, holdout_days: int) -> pd.DataFrame:
    """Mark the labelled rows of the most recent `holdout_days` days as holdout and the rest as train."""
    time, key = system.features.time_column, system.features.id_column
    days = sorted(features[time].unique())
    if len(days) < 2:
        raise ValueError(f"a time split needs at least 2 days of features, found {len(days)}")
    holdout_days = min(max(holdout_days, 1), len(days) - 1)
    cutoff = days[-holdout_days]
    labelled = features[features[system.prediction.label].notna()].copy()
    labelled["split"] = (labelled[time] >= cutoff).map({True: "holdout", False: "train"})
    return labelled.sort_values([time, key], kind="stable").reset_index(drop=True)


def dataset_digest(frame: pd.DataFrame, key: str) -> str:
    """A content digest of a dataset, independent of row order in storage: its data version."""
    ordered = frame.sort_values(key, kind="stable")
    hashed = pd.util.hash_pandas_object(ordered.drop(columns=["partition_date"], errors="ignore"), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def mlflow_dataset(frame: pd.DataFrame, name: str, targets: str, source: str) -> object:
    """`mlflow.data.from_pandas(...)`, with its schema worked out column by column.

    MLflow infers a dataset's schema when it is logged, and finds which columns are required by testing every
    value for None or NaN in Python: 1.5 s for 50,000 training rows, more than fitting the model. The column
    types come from a sample (they follow the dtypes), whether a column is required from one vectorised `isna`
    over all rows: the same Schema (mlsys_tests/test_training.py compares them), given to the dataset before
    MLflow computes its own (the dataset caches `schema`; were that to change, MLflow would infer it as before).
    """
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.types import ColSpec, Schema

    dataset = mlflow.data.from_pandas(frame, name=name, targets=targets, source=source)
    sampled = infer_signature(frame.head(1000)).inputs
    if sampled is None or not sampled.has_input_names():
        return dataset
    missing = frame.isna().any()
    schema = Schema([ColSpec(type=spec.type, name=spec.name, required=not bool(missing[spec.name]))
                     for spec in sampled.inputs])
    dataset.__dict__["schema"] = schema
    return dataset
