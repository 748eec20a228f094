"""The row-wise model: the same probabilities as the pipeline's `predict_proba`, or None when it cannot promise so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsys_assets.core.featurize import build_features
from mlsys_assets.core.landing import read_landing_file
from mlsys_assets.core.model import RateBaseline, build_pipeline, fit_baseline, fit_pipeline
from mlsys_assets.core.rowmodel import RowModel, compile_pipeline
from mlsys_assets.core.sources import file_for
from mlsys_assets.systems.flights.data import known_airports, known_carriers
from mlsys_assets.systems.flights.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, WEATHER_FEATURES
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM

PARAMS = {"max_iter": 80}
FLIGHTS, WEATHER = FLIGHTS_SYSTEM.source("flights"), FLIGHTS_SYSTEM.source("weather")


def _features(landing: Path, day: str) -> pd.DataFrame:
    flights = read_landing_file(file_for(landing, FLIGHTS_SYSTEM, FLIGHTS, day), FLIGHTS).frame
    weather = read_landing_file(file_for(landing, FLIGHTS_SYSTEM, WEATHER, day), WEATHER).frame
    return build_features(FLIGHTS_SYSTEM, flights[flights["parse_errors"].isna()], {"weather": weather})


@pytest.fixture(scope="module")
def training(landed_days: Path) -> pd.DataFrame:
    return _features(landed_days, DAYS[0])


@pytest.fixture(scope="module")
def scored(landed_days: Path) -> pd.DataFrame:
    """Every flight of the next day, and the same flights again with what a model has not seen: no weather, NaN
    in numeric columns, categories unknown to training (real carriers and airports, other hour bands), strings
    never seen anywhere, and missing categories."""
    day = _features(landed_days, DAYS[1])
    rng = np.random.default_rng(7)
    variants = [day]
    no_weather = day.copy()
    no_weather[list(WEATHER_FEATURES)] = np.nan
    no_weather["weather_missing"] = 1.0
    variants.append(no_weather)
    holes = day.copy()
    for column in ("distance", "sched_dep_minute", "temp", "wind_gust", "visib", "day_of_year"):
        holes.loc[rng.random(len(holes)) < 0.3, column] = np.nan
    variants.append(holes)
    others = {"carrier": [*sorted(known_carriers()), "ZZ", "never seen"],
              "origin": ["EWR", "JFK", "LGA", "BOS", "xyz"],
              "dest": [*sorted(known_airports()), "???"],
              "dep_hour_band": ["night", "morning", "afternoon", "evening", "dawn", "nan"]}
    for column, values in others.items():
        unknown = day.copy()
        unknown[column] = [values[i % len(values)] for i in range(len(unknown))]
        variants.append(unknown)
    missing = day.copy().astype({c: object for c in CATEGORICAL_FEATURES})
    for column in CATEGORICAL_FEATURES:
        missing.loc[rng.random(len(missing)) < 0.25, column] = None
    variants.append(missing)
    return pd.concat(variants, ignore_index=True)


def feature_rows(features: pd.DataFrame) -> list[dict]:
    """Feature rows as the server holds them: Python strings and floats, None for a missing category."""
    frame = features[list(FEATURE_COLUMNS)]
    return [{c: (None if c in CATEGORICAL_FEATURES and (v is None or v != v) else v)
             for c, v in zip(FEATURE_COLUMNS, values, strict=True)}
            for values in frame.astype(object).itertuples(index=False)]


def assert_same_probabilities(pipeline: object, features: pd.DataFrame) -> RowModel:
    from mlsys_assets.core.model import scores

    compiled = compile_pipeline(pipeline)
    assert compiled is not None
    expected = scores(FLIGHTS_SYSTEM, pipeline, features)
    got = np.array(compiled.probabilities(feature_rows(features)))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-12
    return compiled


def test_compiled_pipeline_gives_predict_proba_on_every_row(training: pd.DataFrame, scored: pd.DataFrame) -> None:
    pipeline = fit_pipeline(FLIGHTS_SYSTEM, training, **PARAMS)
    encode = pipeline.named_steps["encode"]
    assert not encode.named_transformers_["numeric"].get_support().all()  # one day: month is dropped as constant
    compiled = assert_same_probabilities(pipeline, scored)
    assert sum(c for c in compiled.forest.categorical) > 0  # categorical splits were taken
    rows = feature_rows(scored)
    probabilities = compiled.probabilities(rows)
    assert len(set(probabilities)) > 100 and all(0 < p < 1 for p in probabilities)


def test_missing_categories_seen_in_training_are_encoded_as_missing(training: pd.DataFrame,
                                                                    scored: pd.DataFrame) -> None:
    """Trained with missing carriers and bands, the encoder has a missing category (-2), which the classifier's
    own encoder knows as a category of its own; the row-wise model follows both."""
    gappy = training.copy().astype({"carrier": object, "dep_hour_band": object})
    gappy.loc[gappy.index % 5 == 0, "carrier"] = None
    gappy.loc[gappy.index % 7 == 0, "dep_hour_band"] = None
    pipeline = fit_pipeline(FLIGHTS_SYSTEM, gappy, **PARAMS)
    assert any(pd.isna(c) for c in pipeline.named_steps["encode"].named_transformers_["categorical"].categories_[0])
    assert_same_probabilities(pipeline, scored)


def test_what_cannot_be_compiled_gives_none(training: pd.DataFrame) -> None:
    linear = dataclasses.replace(FLIGHTS_SYSTEM, model=dataclasses.replace(
        FLIGHTS_SYSTEM.model, factory="mlsys_assets.core.model:linear", params={}))
    logistic = fit_pipeline(linear, training)
    hgb = fit_pipeline(FLIGHTS_SYSTEM, training, **PARAMS)
    assert compile_pipeline(logistic) is None
    assert compile_pipeline(fit_baseline(FLIGHTS_SYSTEM, training)) is None
    assert compile_pipeline(RateBaseline.from_frame(pd.DataFrame(
        {"carrier": [], "dep_hour_band": [], "rate": [], "global_rate": []}), by=("carrier", "dep_hour_band"))) is None
    assert compile_pipeline(hgb.named_steps["classify"]) is None  # the classifier without its encoding
    assert compile_pipeline(object()) is None
    assert compile_pipeline(build_pipeline(FLIGHTS_SYSTEM, **PARAMS)) is None  # not fitted


def test_a_pipeline_of_other_columns_compiles_too() -> None:
    """The compiled model reads its columns off the fitted pipeline: any declared system's binary model compiles,
    and gives predict_proba's probabilities."""
    import numpy as np

    from mlsys_assets.core.model import hist_gradient_boosting

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"shop": rng.choice(["a", "b", "c"], 600), "price": rng.normal(10, 3, 600),
                          "stock": rng.integers(0, 50, 600).astype("float64")})
    frame.loc[::17, "price"] = np.nan
    target = ((frame["price"].fillna(10) > 10) ^ (frame["shop"] == "b")).astype(int)
    pipeline = hist_gradient_boosting(["shop"], ["price", "stock"], max_iter=30).fit(frame, target)
    compiled = compile_pipeline(pipeline)
    assert compiled is not None
    rows = [*frame.astype(object).where(frame.notna(), None).to_dict("records")[:50],
            {"shop": "never seen", "price": None, "stock": 3.0}]
    expected = pipeline.predict_proba(pd.DataFrame(rows).astype({"shop": "str", "price": "float64",
                                                                  "stock": "float64"}))[:, 1]
    assert max(abs(a - b) for a, b in zip(compiled.probabilities(rows), expected, strict=True)) <= 1e-12


def test_a_regressor_compiles_to_its_predictions() -> None:
    """A declared regression system's HistGradientBoosting regressor compiles too (the identity link): the row path
    gives `predict`'s values, on numbers of the size real targets have."""
    from mlsys_assets.core.model import hist_gradient_boosting

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"zone": rng.choice(["n", "s", "e", "w"], 800), "hour": rng.integers(0, 24, 800) * 1.0,
                          "temp": rng.normal(280, 10, 800)})
    frame.loc[::13, "temp"] = np.nan
    target = 3000 + 1500 * np.sin(frame["hour"] / 24 * 2 * np.pi) + 20 * frame["temp"].fillna(280) - 5600 \
        + (frame["zone"] == "s") * 400 + rng.normal(0, 50, 800)
    pipeline = hist_gradient_boosting(["zone"], ["hour", "temp"], task="regression", max_iter=60).fit(frame, target)
    compiled = compile_pipeline(pipeline)
    assert compiled is not None and compiled.link == "identity"
    rows = [*frame.astype(object).where(frame.notna(), None).to_dict("records")[:200],
            {"zone": "never seen", "hour": 3.0, "temp": None}]
    expected = pipeline.predict(pd.DataFrame(rows).astype({"zone": "str", "hour": "float64", "temp": "float64"}))
    got = compiled.probabilities(rows)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= 1e-9 and max(got) > 1000
