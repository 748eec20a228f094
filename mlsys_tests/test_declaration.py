"""The declaration API (mlsys_assets/declaration.py): a declaration that cannot work is refused when it is built,
the error naming the field; every tunable number is a setting `MLSYS_<SYSTEM>_<FIELD>`; and the partition keys
computed without Dagster are Dagster's own."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mlsys_assets.declaration import TUNABLE, DeclarationError, Partitions, System
from mlsys_tests.conftest import FLIGHTS_SYSTEM

FLIGHTS = FLIGHTS_SYSTEM


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MLSYS_* variable from outside (MLSYS_SYSTEMS, MLSYS_FLIGHTS_*) changes what the declared systems are."""
    import os

    for name in list(os.environ):
        if name.startswith("MLSYS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _replace(section: str, **changes) -> System:
    """The flights declaration with some fields of one section changed (checked again, as any declaration)."""
    return dataclasses.replace(FLIGHTS, **{section: dataclasses.replace(getattr(FLIGHTS, section), **changes)})


def test_the_flights_declaration_is_valid_and_rebuilding_it_changes_nothing() -> None:
    assert dataclasses.replace(FLIGHTS) == FLIGHTS
    assert FLIGHTS.entity.name == "flights"
    assert [s.name for s in FLIGHTS.lookups] == ["weather"]


# (what is changed, the field the error must name, what it must say)
BAD_DECLARATIONS = {
    "unknown entity": (lambda: _replace("prediction", entity="orders"),
                       "prediction.entity", "'orders' is not a declared source (sources: flights, weather)"),
    "lookup as entity": (lambda: _replace("prediction", entity="weather"),
                         "prediction.entity", "'weather' is a lookup source"),
    "metric of the other task": (lambda: _replace("gate", metric="rmse"),
                                 "gate.metric", "'rmse' is not a binary metric"),
    "unknown metric": (lambda: _replace("gate", metric="accuracy_ish"),
                       "gate.metric", "'accuracy_ish' is not a binary metric"),
    "feature declared twice": (lambda: _replace("features", numeric=(*FLIGHTS.features.numeric, "distance")),
                               "features", "column 'distance' is declared twice"),
    "feature in both lists": (lambda: _replace("features", numeric=(*FLIGHTS.features.numeric, "carrier")),
                              "features", "column 'carrier' is declared twice"),
    "outcome column as a feature": (lambda: _replace("features", numeric=(*FLIGHTS.features.numeric, "dep_delay")),
                                    "features", "'dep_delay' is an outcome column"),
    "label as a feature": (lambda: _replace("features", numeric=(*FLIGHTS.features.numeric, "is_delayed")),
                           "features", "'is_delayed' is a key, the label or an engine column"),
    "Ref to a missing module": (lambda: _replace("features", build="mlsys_assets.systems.flights.nosuch:features"),
                                "features.build", "module 'mlsys_assets.systems.flights.nosuch'"),
    "Ref to a missing package": (lambda: _replace("model", factory="no_such_package.models:make"),
                                 "model.factory", "module 'no_such_package.models'"),
    "Ref without an attribute": (lambda: _replace("prediction", label_from="mlsys_assets.core.featurize"),
                                 "prediction.label_from",
                                 "'mlsys_assets.core.featurize' is not a dotted path 'package.module:attribute'"),
    "Ref that is not callable": (lambda: _replace("features", row=42),
                                 "features.row", "is not callable"),
    "end before start": (lambda: _replace("partitions", start="2013-02-01", end="2013-01-31"),
                         "partitions.end", "2013-01-31 is before partitions.start 2013-02-01"),
    "not a date": (lambda: _replace("partitions", end="2013-13-01"),
                   "partitions", "start and end must be dates YYYY-MM-DD"),
    "unknown grain": (lambda: _replace("partitions", grain="monthly"),
                      "partitions.grain", "'monthly' is not one of"),
}


@pytest.mark.parametrize("case", list(BAD_DECLARATIONS), ids=list(BAD_DECLARATIONS))
def test_a_declaration_that_cannot_work_is_refused_naming_the_field(case: str) -> None:
    build, field, problem = BAD_DECLARATIONS[case]
    with pytest.raises(DeclarationError) as raised:
        build()
    message = str(raised.value)
    assert message.startswith("System 'flights': "), message
    assert f"{field}: {problem}" in message, message


def test_every_problem_of_a_declaration_is_reported_at_once() -> None:
    with pytest.raises(DeclarationError) as raised:
        dataclasses.replace(FLIGHTS, prediction=dataclasses.replace(FLIGHTS.prediction, entity="orders"),
                            partitions=Partitions("daily", "2013-02-01", "2013-01-31"))
    assert "prediction.entity: " in str(raised.value) and "partitions.end: " in str(raised.value)


# --- settings ----------------------------------------------------------------------------------------------------

FLIGHTS_SETTINGS = {
    "MLSYS_FLIGHTS_START", "MLSYS_FLIGHTS_END", "MLSYS_FLIGHTS_THRESHOLD", "MLSYS_FLIGHTS_LABEL_DELAY",
    "MLSYS_FLIGHTS_PARAMS", "MLSYS_FLIGHTS_WINDOW", "MLSYS_FLIGHTS_HOLDOUT", "MLSYS_FLIGHTS_MIN_IMPROVEMENT",
    "MLSYS_FLIGHTS_FLOOR",
    "MLSYS_FLIGHTS_TOLERANCE", "MLSYS_FLIGHTS_SLICE_MIN_ROWS", "MLSYS_FLIGHTS_SLICES", "MLSYS_FLIGHTS_IGNORE",
    "MLSYS_FLIGHTS_DAY_LEVEL", "MLSYS_FLIGHTS_DRIFTED_SHARE",
    "MLSYS_FLIGHTS_DAY_LEVEL_WASSERSTEIN", "MLSYS_FLIGHTS_DAY_LEVEL_MISSING_RATE", "MLSYS_FLIGHTS_ROLLING_DAYS",
    "MLSYS_FLIGHTS_MIN_LIVE", "MLSYS_FLIGHTS_MAX_DROP", "MLSYS_FLIGHTS_COST_MISSED",
    "MLSYS_FLIGHTS_COST_FALSE_ALARM", "MLSYS_FLIGHTS_COST_PER_UNIT", "MLSYS_FLIGHTS_PERFORMANCE_WINDOW",
}


def test_with_env_applies_a_setting_and_checks_the_result() -> None:
    tuned = FLIGHTS.with_env({"MLSYS_FLIGHTS_WINDOW": "30", "MLSYS_FLIGHTS_THRESHOLD": "0.5",
                              "MLSYS_FLIGHTS_PERFORMANCE_WINDOW": "day", "MLSYS_FLIGHTS_FLOOR": "",
                              "MLSYS_WINDOW_DAYS": "10"})  # the old name means nothing any more
    assert tuned.model.window == 30 and isinstance(tuned.model.window, int)
    assert tuned.prediction.threshold == 0.5
    assert tuned.monitoring.performance_window == "day"
    assert tuned.gate.floor == FLIGHTS.gate.floor  # an empty variable is unset
    assert tuned.model.holdout == FLIGHTS.model.holdout and tuned.model.factory == FLIGHTS.model.factory
    assert FLIGHTS.model.window == 60  # the declaration itself is unchanged
    assert FLIGHTS.with_env({}) is FLIGHTS


def test_with_env_rejects_a_value_naming_the_variable() -> None:
    with pytest.raises(DeclarationError, match=r"MLSYS_FLIGHTS_WINDOW='abc': expected int"):
        FLIGHTS.with_env({"MLSYS_FLIGHTS_WINDOW": "abc"})
    with pytest.raises(DeclarationError, match=r"MLSYS_FLIGHTS_THRESHOLD='high': expected float"):
        FLIGHTS.with_env({"MLSYS_FLIGHTS_THRESHOLD": "high"})
    with pytest.raises(DeclarationError, match=r"prediction\.threshold: must be strictly between 0 and 1"):
        FLIGHTS.with_env({"MLSYS_FLIGHTS_THRESHOLD": "1.5"})  # parsed, then the declaration is checked again


def test_declared_systems_read_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    from mlsys_assets.systems import declared_systems, system_named

    monkeypatch = clean_env
    monkeypatch.setenv("MLSYS_FLIGHTS_WINDOW", "30")
    assert [s.name for s in declared_systems()] == ["flights", "traffic"]
    assert system_named("flights").model.window == 30
    monkeypatch.setenv("MLSYS_FLIGHTS_WINDOW", "abc")
    with pytest.raises(DeclarationError, match="MLSYS_FLIGHTS_WINDOW"):
        declared_systems()


def test_settings_rows_list_every_tunable(clean_env: pytest.MonkeyPatch) -> None:
    from mlsys_assets.settings import settings_rows

    rows = FLIGHTS.settings_rows()
    assert len(rows) == len(TUNABLE)
    assert {env for env, _, _ in rows} == FLIGHTS_SETTINGS
    for (section, name), (env, default, meaning) in zip(TUNABLE, rows, strict=True):
        assert env == f"MLSYS_FLIGHTS_{name.upper()}"
        value = getattr(getattr(FLIGHTS, section), name)
        assert default == (json.dumps(value) if isinstance(value, dict) else ",".join(value)
                           if isinstance(value, tuple) else str(value))
        assert meaning
    # each one is applied by with_env: the variable changes its field
    for (section, name), (env, _, _) in zip(TUNABLE, rows, strict=True):
        value = getattr(getattr(FLIGHTS, section), name)
        if isinstance(value, dict):
            raw, want = '{"max_iter": 7}', {**value, "max_iter": 7}
        elif isinstance(value, tuple):
            raw, want = "carrier, origin", ("carrier", "origin")
        elif isinstance(value, float):
            raw, want = "0.25", 0.25
        elif isinstance(value, int):
            raw, want = str(value + 1), value + 1
        else:
            continue  # dates and words: covered above
        assert getattr(getattr(FLIGHTS.with_env({env: raw}), section), name) == want, env
    everything = settings_rows()  # what `mlsys settings` prints and docs/settings.md holds
    names = [env for env, _, _ in everything]
    assert set(names) >= FLIGHTS_SETTINGS
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert set(rows) <= set(everything)


# --- partitions --------------------------------------------------------------------------------------------------

RANGES = [
    ("hourly", "2013-03-09", "2013-03-11"),  # spans the spring DST change (keys are UTC-free wall hours)
    ("hourly", "2013-12-31", "2014-01-01"),
    ("daily", "2013-01-01", "2013-01-01"),
    ("daily", "2013-02-25", "2013-03-03"),
    ("daily", "2012-02-27", "2012-03-01"),  # a leap day
    ("daily", "2013-12-30", "2014-01-02"),
    ("weekly", "2013-01-07", "2013-02-17"),  # a Monday to a Sunday: whole weeks
    ("weekly", "2013-01-02", "2013-02-20"),  # starts and ends mid-week
    ("weekly", "2013-01-07", "2013-02-18"),  # ends on a Monday: that week starts within the range
    ("weekly", "2013-01-01", "2013-12-31"),
]


@pytest.mark.parametrize(("grain", "start", "end"), RANGES, ids=[f"{g}-{s}-{e}" for g, s, e in RANGES])
def test_partition_keys_are_dagsters(grain: str, start: str, end: str) -> None:
    from mlsys_assets.core.partitioning import is_key, key_in_range, keys_between
    from mlsys_assets.partitions import partitions_def

    ours = keys_between(grain, start, end)
    dagsters = partitions_def(Partitions(grain, start, end)).get_partition_keys()
    assert ours == dagsters
    assert ours and all(is_key(grain, key) and key_in_range(grain, key, start, end) for key in ours)
    assert ours[0][:10] >= start and ours[-1][:10] <= end  # every partition starts within the dates


def test_a_list_setting_is_checked_against_the_declaration() -> None:
    tuned = FLIGHTS.with_env({"MLSYS_FLIGHTS_SLICES": "carrier"})
    assert tuned.gate.slices == ("carrier",)
    wrong = r"gate\.slices: 'tailnum' is not a feature column .*MLSYS_FLIGHTS_SLICES"
    with pytest.raises(DeclarationError, match=wrong):
        FLIGHTS.with_env({"MLSYS_FLIGHTS_SLICES": "carrier,tailnum"})
