"""A system the tests declare themselves (mlsys_tests/meters_system.py: other column names, hourly partitions, a
regression task, Parquet files, a lookup source), in Python and again in YAML through the Dagster component, run
through real Dagster materializations of the generated graph: ingest, validate and quarantine, features, train,
gate, batch predictions, drift, live performance."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetKey

from mlsys_tests.conftest import fresh_home, query, uncommented

HERE = Path(__file__).resolve().parent
DECLARATIONS = {"python": "mlsys_tests.meters_system:meters", "yaml": str(HERE / "meters_defs" / "defs.yaml")}
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture(params=sorted(DECLARATIONS))
def meters_home(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MLSYS_HOME whose code location serves only the meters system, declared one way or the other."""
    return fresh_home(tmp_path, monkeypatch, systems=DECLARATIONS[request.param])


def test_the_yaml_declaration_is_the_python_one() -> None:
    from mlsys_assets.component import system_from_yaml
    from mlsys_tests.meters_system import meters

    from_yaml = system_from_yaml(DECLARATIONS["yaml"])
    assert from_yaml == meters  # every field; references are equal when they name the same code
    assert from_yaml.features.build.resolve() is meters.features.build.resolve()
    assert from_yaml != dataclasses.replace(meters, gate=dataclasses.replace(meters.gate, floor=4.0))


def test_a_yaml_mistake_names_the_field(tmp_path: Path) -> None:
    from mlsys_assets.component import system_from_yaml
    from mlsys_assets.declaration import DeclarationError

    text = Path(DECLARATIONS["yaml"]).read_text()
    wrong_type = tmp_path / "wrong_type.yaml"
    wrong_type.write_text(text.replace("window: 30", "window: thirty"))
    with pytest.raises(DeclarationError, match=r"window"):
        system_from_yaml(wrong_type)
    wrong_rule = tmp_path / "wrong_rule.yaml"
    wrong_rule.write_text(text.replace("entity: readings", "entity: orders"))
    with pytest.raises(DeclarationError, match=r"prediction\.entity: 'orders' is not a declared source"):
        system_from_yaml(wrong_rule)


def _land(home: Path, system, keys: list[str], shift_from: str) -> None:
    """The generated feed for the keys, the temperature shifted from `shift_from` on, as Parquet/CSV files."""
    from mlsys_assets.core.landing import encode_rows
    from mlsys_assets.core.sources import file_for
    from mlsys_tests.meters_system import generate

    shipped = generate([s.name for s in system.sources], keys, shift_from=shift_from)
    for source in system.sources:
        for key, rows in shipped[source.name].items():
            path = file_for(home / "landing", system, source, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_rows(rows, source))


def _run(defs, instance, job: str, key: str | None = None):
    result = defs.resolve_job_def(f"meters_{job}").execute_in_process(
        partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET)
    failures = [e.event_specific_data.error.to_string() for e in result.all_events
                if e.event_type_value == "STEP_FAILURE"]
    assert result.success, f"meters_{job} {key or ''} failed:\n" + "\n".join(failures)
    return result


def _materialize(defs, instance, asset: str, key: str | None = None):
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=key, asset_selection=[AssetKey(["meters", asset])], raise_on_error=False,
        run_config=QUIET)


def _check_passed(instance, asset: str, check: str, key: str) -> bool:
    from mlsys_assets.dagster_internal import check_executions

    records = [r for r in check_executions(instance, AssetCheckKey(AssetKey(["meters", asset]), check), limit=100)
               if r.partition == key]
    assert records, f"no {check} result for {key}"
    return records[0].status.value == "SUCCEEDED"


@pytest.mark.slow
def test_a_declared_hourly_regression_system_runs_end_to_end(meters_home: Path) -> None:
    from dagster import DagsterInstance

    from mlsys_assets.core.landing import partition_keys
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.systems import system_named

    system = system_named(None)
    assert system.name == "meters" and system.partitions.grain == "hourly"
    keys = partition_keys(system, "2024-03-01", "2024-03-02")[:38]
    shifted = keys[35]
    _land(meters_home, system, keys, shift_from=shifted)
    defs = build_defs()
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} >= {
        "meters/raw_readings", "meters/raw_prices", "meters/validated_readings", "meters/quarantined_readings",
        "meters/features", "meters/online_prices", "meters/batch_predictions", "meters/live_performance"}

    with DagsterInstance.get() as instance:
        for key in keys[:30]:
            _run(defs, instance, "daily_pipeline", key)
        # nothing lost: every raw row of every hour is validated or quarantined, the hostile one with its reason
        lost = query(meters_home, "SELECT count(*) FROM (SELECT partition_date, count(*) AS n FROM raw_readings "
                                  "GROUP BY ALL) r LEFT JOIN (SELECT partition_date, count(*) AS n FROM "
                                  "validated_readings GROUP BY ALL) v USING (partition_date) LEFT JOIN (SELECT "
                                  "partition_date, count(*) AS n FROM quarantined_readings GROUP BY ALL) q "
                                  "USING (partition_date) WHERE r.n <> coalesce(v.n, 0) + coalesce(q.n, 0)",
                     schema="meters")
        assert lost == [(0,)]
        assert query(meters_home, "SELECT count(DISTINCT partition_date), count(*) FROM raw_readings",
                     schema="meters") == [(30, 30 * 24)]
        reasons = query(meters_home, "SELECT reason FROM quarantined_readings", schema="meters")
        assert len(reasons) == 1 and "load_kw" in reasons[0][0] and "-1.0" in reasons[0][0]
        # typed for a SQL user: hourly partitions are timestamps, the lookup's time too
        types = dict(query(meters_home, "SELECT column_name, data_type FROM information_schema.columns WHERE "
                                        "table_schema = 'meters' AND table_name = 'validated_prices'", schema=""))
        assert types["partition_date"] == "TIMESTAMP" and types["price_at"].startswith("TIMESTAMP")
        # the features joined the lookup: every reading has its zone's price of the hour
        assert query(meters_home, "SELECT count(*), count(price_eur) FROM features", schema="meters") == \
            [(30 * 24 - 1, 30 * 24 - 1)]

        # the first model is gated on the floor of a lower-is-better metric
        _run(defs, instance, "retraining")
        history = query(meters_home, "SELECT action, primary_metric, candidate_value, reason FROM "
                                     "promotion_history", schema="meters")
        assert [(h[0], h[1]) for h in history] == [("promote", "mae")]
        assert history[0][2] < system.gate.floor and "clears the floor" in history[0][3]
        assert _materialize(defs, instance, "drift_reference").success

        for key in keys[30:]:
            _run(defs, instance, "daily_pipeline", key)
        scored = query(meters_home, "SELECT DISTINCT model_version, model_name FROM batch_predictions WHERE "
                                    "partition_date = ?", [keys[31].replace("-", " ", 3)[:10] + " " + keys[31][11:]],
                       schema="meters")
        assert scored == [("1", system.model_name)]
        columns = {c for (c,) in query(meters_home, "SELECT column_name FROM information_schema.columns WHERE "
                                                    "table_schema = 'meters' AND table_name = 'batch_predictions'",
                                       schema="")}
        assert "prediction" in columns and "probability" not in columns and "predicted_label" not in columns

        # drift: an ordinary hour passes, an hour 20 degrees hotter fails on the temperature
        for key in (keys[32], keys[36]):
            assert _materialize(defs, instance, "feature_drift", key).success
        assert _check_passed(instance, "feature_drift", "features_within_drift_threshold", keys[32])
        assert not _check_passed(instance, "feature_drift", "features_within_drift_threshold", keys[36])
        drifted = query(meters_home, "SELECT DISTINCT column_name FROM feature_drift WHERE test = 'verdict' AND "
                                     "drifted AND strftime(partition_date, '%Y-%m-%d-%H:%M') = ?", [keys[36]],
                        schema="meters")
        assert drifted == [("outdoor_c",)]

        # live performance once the labels landed (the next hour): regression metrics and the cost of errors
        assert _materialize(defs, instance, "live_performance", keys[32]).success
        live = query(meters_home, "SELECT span, rows, mae, rmse, roc_auc, expected_cost FROM live_performance "
                                  "WHERE role = 'champion' AND model_version = '1' ORDER BY 1", schema="meters")
        day = next(row for row in live if row[0] == "day")
        assert day[1] == 24 and 0 < day[2] < system.monitoring.min_live and day[4] is None
        assert day[5] == pytest.approx(day[2] * 24 * system.monitoring.cost_per_unit)
        assert _check_passed(instance, "live_performance", "performance_above_floor", keys[32])
        assert _materialize(defs, instance, "monitoring_report").success
    # every table and column says what it holds, to a SQL user
    assert uncommented(meters_home) == []
    _serve_one_row(meters_home, keys[33])
    comment = query(meters_home, "SELECT comment FROM duckdb_columns() WHERE schema_name = 'meters' AND table_name = "
                                 "'features' AND column_name = 'load_kw'", schema="")[0][0]
    assert "label (regression)" in comment


@pytest.mark.slow
def test_two_systems_live_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landed_days: Path) -> None:
    """Flights and meters in one code location: every name namespaced, each run writes only its own schema."""
    from dagster import DagsterInstance

    from mlsys_assets.definitions import build_defs
    from mlsys_assets.systems import declared_systems
    from mlsys_tests.conftest import DAYS

    home = fresh_home(tmp_path, monkeypatch, landing=landed_days,
                      systems=f"mlsys_assets.systems.flights.declaration:flights,{DECLARATIONS['yaml']}")
    flights, meters = declared_systems()
    _land(home, meters, ["2024-03-01-00:00"], shift_from="2099-01-01-00:00")

    defs = build_defs()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"flights/features", "meters/features", "flights/batch_predictions", "meters/batch_predictions"} <= keys
    for key in graph.get_all_asset_keys():  # no edge crosses systems
        if key.path[0] in ("flights", "meters"):
            assert {parent.path[0] for parent in graph.get(key).parent_keys} <= {key.path[0]}
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert {"flights_daily_pipeline", "meters_daily_pipeline", "flights_retraining", "meters_retraining"} <= jobs
    sensors = {sensor.name for sensor in defs.sensors}
    assert {"flights_landing_files_sensor", "meters_landing_files_sensor", "flights_retraining_sensor",
            "meters_retraining_sensor", "automation_sensor"} <= sensors
    assert {flights.model_name, meters.model_name} == {"flight_delay", "meters_model"}

    with DagsterInstance.get() as instance:
        for job, key in (("flights_daily_pipeline", DAYS[0]), ("meters_daily_pipeline", "2024-03-01-00:00")):
            assert defs.resolve_job_def(job).execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET).success
    tables = query(home, "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name IN "
                         "('features', 'batch_predictions') ORDER BY ALL", schema="")
    assert tables == [("flights", "batch_predictions"), ("flights", "features"),
                      ("meters", "batch_predictions"), ("meters", "features")]
    assert query(home, "SELECT count(*) FROM meters.features")[0][0] == 23  # one hostile reading quarantined
    assert query(home, "SELECT count(*) FROM flights.features")[0][0] > 900
    assert uncommented(home) == []
    words = dict(query(home, "SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = 'flights' AND "
                             "table_name = 'validated_flights'", schema=""))
    assert words["time_hour"] == "The scheduled hour, in UTC." and "partition" in words["partition_date"]


def _serve_one_row(home: Path, key: str) -> None:
    """`mlsys serve --system meters` answers a raw request row with the value batch scoring stored for it, and
    refuses a row its schema would quarantine, naming the column."""
    import json
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from mlsys_assets.core.server.command import free_port, wait_until_ready

    hour = f"{key[:10]} {key[11:]}:00"
    rows = query(home, "SELECT v.meter, v.zone, strftime(v.reading_at, '%Y-%m-%dT%H:%M:%S'), v.outdoor_c, "
                       "p.prediction, p.model_version FROM validated_readings v JOIN features f ON f.reading_id = "
                       "v.meter || '@' || strftime(v.reading_at, '%Y-%m-%dT%H') JOIN batch_predictions p USING "
                       "(reading_id) WHERE v.partition_date = CAST(? AS TIMESTAMP) AND p.role = 'champion' "
                       "ORDER BY v.meter LIMIT 2", [hour], schema="meters")
    assert len(rows) == 2 and rows[0][5] == "1"
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlsys_assets.cli", "serve", "--system", "meters", "--port",
                               str(port)], cwd=HERE.parent, env=dict(os.environ), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def post(payload: object) -> tuple[int, dict, dict]:
        request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                    json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(error.read())

    try:
        wait_until_ready(url, timeout=120)
        status, headers, body = post({"dataframe_records": [
            {"meter": m, "zone": z, "reading_at": at, "outdoor_c": c} for m, z, at, c, _, _ in rows]})
        assert status == 200, body
        assert headers["x-model-version"] == "1" and headers["x-model-alias"] == "champion"
        assert {(p["model_version"], p["fallback"]) for p in body["predictions"]} == {("1", False)}
        assert [p["prediction"] for p in body["predictions"]] == pytest.approx([r[4] for r in rows], abs=1e-9)
        meter, zone, at, _, _, _ = rows[0]
        status, _, body = post({"dataframe_split": {"columns": ["meter", "zone", "reading_at", "outdoor_c"],
                                                    "data": [[meter, zone, at, 99.0]]}})
        assert status == 400 and any(e["field"] == "outdoor_c" and "must be at most 50" in e["problem"]
                                     for e in body["errors"]), body
        status, _, body = post({"dataframe_records": [{"meter": meter, "zone": zone, "reading_at": at}]})
        assert status == 400 and "outdoor_c" in json.dumps(body)
        status, _, body = post({"inputs": "[" * 5000})
        assert status == 400
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output
