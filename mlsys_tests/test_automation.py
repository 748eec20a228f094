"""Sensors and automation conditions evaluated against a real temporary instance, through the in-process daemon
(the same sensor code the Dagster daemon runs; runs launched here carry the daemon's tags)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlsys_assets.core.landing import land_default_data
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, query

FLIGHT_CHAIN = {"flights/validated_flights", "flights/quarantined_flights", "flights/features",
                "flights/batch_predictions"}
LANDING_SENSOR, RETRAINING_SENSOR = "flights_landing_files_sensor", "flights_retraining_sensor"


@pytest.fixture
def daemon(defs, instance):
    from mlsys_assets.replay import InProcessDaemon

    started = InProcessDaemon(defs, instance)
    started.start()
    return started


def launched(runs) -> list[tuple[str | None, tuple[str, ...]]]:
    return sorted((run.partition, tuple(sorted(run.assets))) for run in runs)


def change_file(path: Path, keep_rows: int) -> None:
    """A redelivered file: the same day with fewer rows (what an upstream correction looks like)."""
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: keep_rows + 1]))


def test_each_new_file_requests_one_run_and_a_repeated_tick_none(defs, instance, daemon, mlsys_home: Path) -> None:
    from mlsys_assets.replay import InProcessDaemon

    first = daemon.tick(LANDING_SENSOR)
    assert launched(first) == [(day, ("flights/raw_flights", "flights/raw_weather")) for day in DAYS]  # one run a day
    assert all(run.success for run in first)
    assert {run.tags["dagster/sensor_name"] for run in first} == {LANDING_SENSOR}
    assert all(run.tags["dagster/run_key"] and len(run.tags["mlsys/landing_files"].split(", ")) == 2
               for run in first)

    assert daemon.tick(LANDING_SENSOR) == []
    assert InProcessDaemon(defs, instance).tick(LANDING_SENSOR) == []  # the cursor survives a restart

    flights = mlsys_home / "landing" / "flights" / "flights" / f"{DAYS[1]}.csv"
    change_file(flights, keep_rows=100)
    again = daemon.tick(LANDING_SENSOR)
    assert launched(again) == [(DAYS[1], ("flights/raw_flights",))]
    assert query(mlsys_home, "SELECT count(*) FROM raw_flights WHERE partition_date = ?", [DAYS[1]]) == [(100,)]

    os.utime(flights, ns=(flights.stat().st_atime_ns, flights.stat().st_mtime_ns + 10**9))
    assert daemon.tick(LANDING_SENSOR) == []  # touched, not changed


def test_a_corrupt_file_is_reported_by_name_and_does_not_block_the_others(daemon, mlsys_home: Path) -> None:
    from mlsys_assets.core.alerts import read_alerts

    landing = mlsys_home / "landing"
    land_default_data(FLIGHTS_SYSTEM, landing, "2013-02-13", "2013-02-14")
    garbage = landing / "flights" / "flights" / "2013-02-13.csv"
    garbage.write_bytes(os.urandom(4096))
    empty = landing / "flights" / "weather" / "2013-02-14.csv"
    empty.write_text("")

    runs = daemon.tick(LANDING_SENSOR)
    requested = {(run.partition, asset) for run in runs for asset in run.assets}
    assert ("2013-02-13", "flights/raw_flights") not in requested
    assert ("2013-02-14", "flights/raw_weather") not in requested
    # the files after them
    assert {("2013-02-13", "flights/raw_weather"), ("2013-02-14", "flights/raw_flights")} <= requested
    assert len(requested) == 2 * len(DAYS) + 2 and all(run.success for run in runs)
    alerts = read_alerts()
    reported = dict(zip(alerts["subject"], alerts["message"], strict=True))
    assert set(reported) == {str(garbage), str(empty)}
    assert all(message for message in reported.values())

    assert daemon.tick(LANDING_SENSOR) == []  # reported once, not on every tick
    assert len(read_alerts()) == 2

    land_default_data(FLIGHTS_SYSTEM, landing, "2013-02-13", "2013-02-13")  # delivered again, readable this time
    assert launched(daemon.tick(LANDING_SENSOR)) == [("2013-02-13", ("flights/raw_flights",))]

    truncated = landing / "flights" / "flights" / "2013-02-15.csv"
    truncated.write_text("year,month,day\n2013,2,")  # alone in its tick: the tick itself names it
    assert daemon.tick(LANDING_SENSOR) == []
    origin = daemon._origin(LANDING_SENSOR)
    tick = daemon.instance.get_ticks(origin.get_id(), origin.get_selector().get_id(), limit=1)[0]
    assert tick.status.value == "SKIPPED" and str(truncated) in tick.skip_reason, tick.skip_reason


@pytest.mark.slow
def test_downstream_partitions_are_requested_when_an_upstream_partition_updates(daemon, mlsys_home: Path) -> None:
    daemon.tick(LANDING_SENSOR)
    runs = daemon.settle()
    assert runs and all(run.success for run in runs)
    per_day = {day: set().union(*(run.assets for run in runs if run.partition == day)) for day in DAYS}
    for day in DAYS:
        assert FLIGHT_CHAIN | {"flights/validated_weather", "flights/online_weather"} <= per_day[day]
    assert all(run.tags["dagster/sensor_name"] == "automation_sensor"
               and run.tags["dagster/from_automation_condition"] == "true" for run in runs)
    assert daemon.settle() == []  # nothing changed, nothing requested

    change_file(mlsys_home / "landing" / "flights" / "flights" / f"{DAYS[0]}.csv", keep_rows=200)
    assert launched(daemon.tick(LANDING_SENSOR)) == [(DAYS[0], ("flights/raw_flights",))]
    rerun = daemon.settle()
    assert {run.partition for run in rerun} == {DAYS[0]}
    assert set().union(*(run.assets for run in rerun)) >= FLIGHT_CHAIN
    assert not {"flights/validated_weather", "flights/quarantined_weather"} & set().union(
        *(run.assets for run in rerun))
    assert query(mlsys_home, "SELECT count(*) FROM features WHERE partition_date = ?", [DAYS[0]])[0][0] <= 200


@pytest.mark.slow
def test_a_drifted_day_triggers_one_retraining_and_the_cooldown_holds_the_next(
        instance, mlsys_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import AssetCheckKey, AssetKey

    from mlsys_assets import definitions
    from mlsys_assets.core.alerts import read_alerts
    from mlsys_assets.replay import QUIET, InProcessDaemon

    monkeypatch.setenv("MLSYS_MIN_HISTORY_DAYS", "2")
    small = {"MLSYS_FLIGHTS_WINDOW": "2", "MLSYS_FLIGHTS_HOLDOUT": "1", "MLSYS_FLIGHTS_SLICE_MIN_ROWS": "100",
             "MLSYS_FLIGHTS_FLOOR": "0.5",
             # this test is about drift: live performance never fails here;
             # the reference is one day (see test_monitoring), so a 0.2 bar
             "MLSYS_FLIGHTS_MIN_LIVE": "0.0", "MLSYS_FLIGHTS_MAX_DROP": "1.0", "MLSYS_FLIGHTS_DRIFTED_SHARE": "0.2",
             "MLSYS_FLIGHTS_PARAMS": '{"max_iter": 40}'}
    for name, value in small.items():
        monkeypatch.setenv(name, value)
    daemon = InProcessDaemon(definitions.build_defs(), instance)
    daemon.start()
    daemon.run_config = QUIET
    # Two February days arrive; with no champion the sensor requests the first training, which learns February.
    daemon.tick(LANDING_SENSOR)
    daemon.settle()
    first = daemon.tick(RETRAINING_SENSOR)
    assert [(run.job, run.success, run.tags["mlsys/trigger_check"]) for run in first] == [
        ("flights_retraining", True, "bootstrap")]
    assert "no champion yet: training on 2 days of features up to 2013-02-12" in first[0].tags["mlsys/retrain_reason"]
    assert {"flights/drift_reference"} <= set().union(*(run.assets for run in daemon.settle()))
    assert daemon.tick(RETRAINING_SENSOR) == []  # February is what the champion was trained on

    def arrive(day: str) -> None:
        land_default_data(FLIGHTS_SYSTEM, mlsys_home / "landing", day, day)
        assert len(daemon.tick(LANDING_SENSOR)) == 1
        assert all(run.success for run in daemon.settle())
        check = AssetCheckKey(AssetKey(["flights", "feature_drift"]), "features_within_drift_threshold")
        record = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)[0]
        assert (record.partition, record.status.value) == (day, "FAILED"), f"{day} should have drifted"

    arrive("2013-07-15")
    retrain = daemon.tick(RETRAINING_SENSOR)
    assert [run.job for run in retrain] == ["flights_retraining"]
    tags = retrain[0].tags
    assert tags["mlsys/trigger_check"] == "features_within_drift_threshold"
    assert tags["mlsys/trigger_day"] == "2013-07-15" and tags["dagster/sensor_name"] == RETRAINING_SENSOR
    assert daemon.tick(RETRAINING_SENSOR) == []

    from mlsys_assets.resources import MlflowStore

    registry = MlflowStore.from_env().registry(FLIGHTS_SYSTEM)
    registry.activate()
    experiment = registry.client.get_experiment_by_name("flight_delay").experiment_id
    runs = registry.client.search_runs([experiment], filter_string=f"tags.`dagster.run_id` = '{retrain[0].run_id}'")
    assert runs and runs[0].data.tags["mlsys.retrain_reason"] == tags["mlsys/retrain_reason"]  # in MLflow too

    arrive("2013-07-18")  # drifted too, but three data days after the last trigger
    assert daemon.tick(RETRAINING_SENSOR) == []

    arrive("2013-07-25")  # ten days after: the cooldown has passed
    later = daemon.tick(RETRAINING_SENSOR)
    assert [(run.job, run.tags["mlsys/trigger_day"]) for run in later] == [("flights_retraining", "2013-07-25")]

    assert [run.assets for run in daemon.tick("check_failure_alert_sensor")] == [[]]
    failed = read_alerts().query("kind == 'check_failure'")
    assert "flights/feature_drift:features_within_drift_threshold 2013-07-15" in set(failed["subject"])
    assert query(mlsys_home, "SELECT count(*) FROM alerts WHERE kind = 'check_failure'",
                 schema="main")[0][0] == len(failed)
