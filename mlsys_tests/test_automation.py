"""Sensors and automation conditions evaluated against a real temporary instance, through the in-process daemon
(the same sensor code the Dagster daemon runs; runs launched here carry the daemon's tags)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlsys_assets.core.landing import land_default_data
from mlsys_tests.conftest import DAYS, query

FLIGHT_CHAIN = {"validated_flights", "quarantined_flights", "flight_features", "batch_predictions"}


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

    first = daemon.tick("landing_files_sensor")
    assert launched(first) == [(day, ("raw_flights", "raw_weather")) for day in DAYS]  # one run per day
    assert all(run.success for run in first)
    assert {run.tags["dagster/sensor_name"] for run in first} == {"landing_files_sensor"}
    assert all(run.tags["dagster/run_key"] and len(run.tags["mlsys/landing_files"].split(", ")) == 2
               for run in first)

    assert daemon.tick("landing_files_sensor") == []
    assert InProcessDaemon(defs, instance).tick("landing_files_sensor") == []  # the cursor survives a restart

    flights = mlsys_home / "landing" / "flights" / f"{DAYS[1]}.csv"
    change_file(flights, keep_rows=100)
    again = daemon.tick("landing_files_sensor")
    assert launched(again) == [(DAYS[1], ("raw_flights",))]
    assert query(mlsys_home, "SELECT count(*) FROM raw_flights WHERE partition_date = ?", [DAYS[1]]) == [(100,)]

    os.utime(flights, ns=(flights.stat().st_atime_ns, flights.stat().st_mtime_ns + 10**9))
    assert daemon.tick("landing_files_sensor") == []  # touched, not changed


def test_a_corrupt_file_is_reported_by_name_and_does_not_block_the_others(daemon, mlsys_home: Path) -> None:
    from mlsys_assets.core.alerts import read_alerts

    landing = mlsys_home / "landing"
    land_default_data(landing, "2013-02-13", "2013-02-14")
    garbage = landing / "flights" / "2013-02-13.csv"
    garbage.write_bytes(os.urandom(4096))
    empty = landing / "weather" / "2013-02-14.csv"
    empty.write_text("")

    runs = daemon.tick("landing_files_sensor")
    requested = {(run.partition, asset) for run in runs for asset in run.assets}
    assert ("2013-02-13", "raw_flights") not in requested and ("2013-02-14", "raw_weather") not in requested
    assert {("2013-02-13", "raw_weather"), ("2013-02-14", "raw_flights")} <= requested  # the files after them
    assert len(requested) == 2 * len(DAYS) + 2 and all(run.success for run in runs)
    alerts = read_alerts()
    reported = dict(zip(alerts["subject"], alerts["message"], strict=True))
    assert set(reported) == {str(garbage), str(empty)}
    assert all(message for message in reported.values())

    assert daemon.tick("landing_files_sensor") == []  # reported once, not on every tick
    assert len(read_alerts()) == 2

    land_default_data(landing, "2013-02-13", "2013-02-13")  # delivered again, readable this time
    assert launched(daemon.tick("landing_files_sensor")) == [("2013-02-13", ("raw_flights",))]

    truncated = landing / "flights" / "2013-02-15.csv"
    truncated.write_text("year,month,day\n2013,2,")  # alone in its tick: the tick itself names it
    assert daemon.tick("landing_files_sensor") == []
    origin = daemon._origin("landing_files_sensor")
    tick = daemon.instance.get_ticks(origin.get_id(), origin.get_selector().get_id(), limit=1)[0]
    assert tick.status.value == "SKIPPED" and str(truncated) in tick.skip_reason, tick.skip_reason


@pytest.mark.slow
def test_downstream_partitions_are_requested_when_an_upstream_partition_updates(daemon, mlsys_home: Path) -> None:
    daemon.tick("landing_files_sensor")
    runs = daemon.settle()
    assert runs and all(run.success for run in runs)
    per_day = {day: set().union(*(run.assets for run in runs if run.partition == day)) for day in DAYS}
    for day in DAYS:
        assert FLIGHT_CHAIN | {"validated_weather", "online_weather"} <= per_day[day]
    assert all(run.tags["dagster/sensor_name"] == "automation_sensor"
               and run.tags["dagster/from_automation_condition"] == "true" for run in runs)
    assert daemon.settle() == []  # nothing changed, nothing requested

    change_file(mlsys_home / "landing" / "flights" / f"{DAYS[0]}.csv", keep_rows=200)
    assert launched(daemon.tick("landing_files_sensor")) == [(DAYS[0], ("raw_flights",))]
    rerun = daemon.settle()
    assert {run.partition for run in rerun} == {DAYS[0]}
    assert set().union(*(run.assets for run in rerun)) >= FLIGHT_CHAIN
    assert not {"validated_weather", "quarantined_weather"} & set().union(*(run.assets for run in rerun))
    assert query(mlsys_home, "SELECT count(*) FROM flight_features WHERE partition_date = ?", [DAYS[0]])[0][0] <= 200


@pytest.mark.slow
def test_a_drifted_day_triggers_one_retraining_and_the_cooldown_holds_the_next(
        instance, mlsys_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import AssetCheckKey, AssetKey

    from mlsys_assets.core.alerts import read_alerts
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.replay import QUIET, InProcessDaemon

    monkeypatch.setenv("MLSYS_MIN_HISTORY_DAYS", "2")
    daemon = InProcessDaemon(build_defs(), instance)
    daemon.start()
    small = {"window_days": 2, "holdout_days": 1, "max_iter": 40, "slice_min_rows": 100, "absolute_floor": 0.5}
    daemon.run_config = {**QUIET, "resources": {"training": {"config": small},
                                                # this test is about drift: live performance never fails here;
                                                # the reference is one day (see test_monitoring), so a 0.2 bar
                                                "monitoring": {"config": {"min_live_roc_auc": 0.0,
                                                                          "max_auc_drop": 1.0,
                                                                          "drifted_share": 0.2}}}}
    # Two February days arrive; with no champion the sensor requests the first training, which learns February.
    daemon.tick("landing_files_sensor")
    daemon.settle()
    first = daemon.tick("retraining_sensor")
    assert [(run.job, run.success, run.tags["mlsys/trigger_check"]) for run in first] == [
        ("retraining", True, "bootstrap")]
    assert "no champion yet: training on 2 days of features up to 2013-02-12" in first[0].tags["mlsys/retrain_reason"]
    assert {"drift_reference"} <= set().union(*(run.assets for run in daemon.settle()))
    assert daemon.tick("retraining_sensor") == []  # February is what the champion was trained on

    def arrive(day: str) -> None:
        land_default_data(mlsys_home / "landing", day, day)
        assert len(daemon.tick("landing_files_sensor")) == 1
        assert all(run.success for run in daemon.settle())
        check = AssetCheckKey(AssetKey("feature_drift"), "features_within_drift_threshold")
        record = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)[0]
        assert (record.partition, record.status.value) == (day, "FAILED"), f"{day} should have drifted"

    arrive("2013-07-15")
    retrain = daemon.tick("retraining_sensor")
    assert [run.job for run in retrain] == ["retraining"]
    tags = retrain[0].tags
    assert tags["mlsys/trigger_check"] == "features_within_drift_threshold"
    assert tags["mlsys/trigger_day"] == "2013-07-15" and tags["dagster/sensor_name"] == "retraining_sensor"
    assert daemon.tick("retraining_sensor") == []

    from mlsys_assets.resources import MlflowStore

    registry = MlflowStore.from_env().registry()
    registry.activate()
    experiment = registry.client.get_experiment_by_name("flight_delay").experiment_id
    runs = registry.client.search_runs([experiment], filter_string=f"tags.`dagster.run_id` = '{retrain[0].run_id}'")
    assert runs and runs[0].data.tags["mlsys.retrain_reason"] == tags["mlsys/retrain_reason"]  # in MLflow too

    arrive("2013-07-18")  # drifted too, but three data days after the last trigger
    assert daemon.tick("retraining_sensor") == []

    arrive("2013-07-25")  # ten days after: the cooldown has passed
    later = daemon.tick("retraining_sensor")
    assert [(run.job, run.tags["mlsys/trigger_day"]) for run in later] == [("retraining", "2013-07-25")]

    assert [run.assets for run in daemon.tick("check_failure_alert_sensor")] == [[]]
    failed = read_alerts().query("kind == 'check_failure'")
    assert "feature_drift:features_within_drift_threshold 2013-07-15" in set(failed["subject"])
    assert query(mlsys_home, "SELECT count(*) FROM alerts WHERE kind = 'check_failure'")[0][0] == len(failed)
