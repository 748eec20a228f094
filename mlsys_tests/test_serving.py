"""`mlsys serve` started for real on 127.0.0.1 and spoken to over HTTP, against a temporary MLSYS_HOME."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey

from mlsys_assets.core.landing import read_landing_file
from mlsys_assets.core.online import lookup_path, publish_baseline
from mlsys_assets.core.server.command import ServerHandle, free_port, wait_until_ready
from mlsys_assets.core.server.command import start_server as start
from mlsys_assets.core.server.service import ServeConfig
from mlsys_assets.core.sources import file_for
from mlsys_assets.systems.flights.features import REQUEST_COLUMNS, WEATHER_FEATURES, flight_ids
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, query, run_day

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
# A small training run: the system's settings MLSYS_FLIGHTS_<FIELD>, read when the definitions are built.
PARAMS = '{"max_iter": 30}'  # the model factory's parameters: small, for speed
SMALL = {"WINDOW": "2", "HOLDOUT": "1", "SLICE_MIN_ROWS": "100", "FLOOR": "0.5", "PARAMS": PARAMS}
FLIGHTS = FLIGHTS_SYSTEM.source("flights")
ROW = {"year": 2013, "month": 2, "day": 12, "sched_dep_time": 1830, "sched_arr_time": 2105, "carrier": "B6",
       "flight": 1001, "origin": "JFK", "dest": "MCO", "distance": 944}


def post(url: str, payload: object, content_type: str = "application/json",
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as response:
        return response.status, response.read()


def health(url: str) -> dict:
    return json.loads(get(url, "/health")[1])


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def landing_rows(home: Path, day: str) -> pd.DataFrame:
    """The day's flights as landed, without outcome columns: what a client would send."""
    frame = read_landing_file(file_for(home / "landing", FLIGHTS_SYSTEM, FLIGHTS, day), FLIGHTS).frame
    rows = frame[list(REQUEST_COLUMNS)].copy()
    rows.insert(0, "flight_id", flight_ids(rows))
    return rows


def one_by_one(url: str, rows: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Each row in a request of its own, over one keep-alive connection: the answers, by flight_id."""
    import http.client

    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    answers = []
    try:
        for n, record in enumerate(records(rows)):
            connection.request("POST", "/invocations", json.dumps({"dataframe_records": [record]}).encode(),
                               {"Content-Type": "application/json", "X-Request-Id": f"{prefix}{n}"})
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, body
            answers += body["predictions"]
    finally:
        connection.close()
    return pd.DataFrame(answers).set_index("flight_id")


def logged_records(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def records(rows: pd.DataFrame) -> list[dict]:
    return json.loads(rows[list(REQUEST_COLUMNS)].to_json(orient="records"))


def split(rows: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(rows[list(REQUEST_COLUMNS)].to_json(orient="split", index=False))}


def materialize_one(defs, instance, name: str, day: str | None = None) -> None:
    """One of the flights system's assets, materialized on its own (as from the UI)."""
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[AssetKey([FLIGHTS_SYSTEM.name, name])], partition_key=day, instance=instance,
        run_config=QUIET)
    assert result.success


def config(**overrides) -> ServeConfig:
    return ServeConfig.from_env(port=0, poll_seconds=0.2, **overrides)


def start_server(config: ServeConfig, source: object = None) -> ServerHandle:
    """The flights system served on a free port (its settings from the environment, as `mlsys serve` reads them)."""
    from mlsys_assets.systems import system_named

    return start([system_named("flights")], config, sources={"flights": source} if source else None)


def log_folder(home: Path, day: str) -> Path:
    return home / "prediction_log" / "flights" / day


def read_log(home: Path, day: str) -> pd.DataFrame:
    from mlsys_assets.core.server.predictionlog import read_prediction_log

    spec = FLIGHTS_SYSTEM.features
    return read_prediction_log(day, home / "prediction_log" / "flights", spec.categorical, spec.numeric,
                               spec.id_column, "probability")[0]


@pytest.mark.slow
def test_served_scores_equal_batch_scores_and_follow_the_champion(instance, mlsys_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.resources import MlflowStore

    for name, value in SMALL.items():
        monkeypatch.setenv(f"MLSYS_FLIGHTS_{name}", value)
    defs = build_defs()
    for day in DAYS:
        assert run_day(defs, instance, day).success
    retrain = defs.resolve_job_def("flights_retraining").execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET)
    assert retrain.success
    materialize_one(defs, instance, "batch_predictions", DAYS[1])  # rescored by the new champion
    materialize_one(defs, instance, "online_weather", DAYS[1])
    materialize_one(defs, instance, "online_baseline")
    batch = pd.DataFrame(query(mlsys_home, "SELECT flight_id, probability, model_version FROM batch_predictions "
                                           "WHERE partition_date = ? AND role = 'champion'", [DAYS[1]]),
                         columns=["flight_id", "probability", "model_version"]).set_index("flight_id")
    assert set(batch["model_version"]) == {"1"}
    rows = landing_rows(mlsys_home, DAYS[1])
    rows = rows[rows["flight_id"].isin(batch.index)].reset_index(drop=True)
    assert len(rows) == len(batch) > 500

    with start_server(config()) as server:
        assert server.service.models.champion.compiled is not None  # the registered pipeline compiles row-wise
        status, answer = post(server.url, split(rows), headers={"X-Request-Id": "whole-day"})
        assert status == 200
        served = pd.DataFrame(answer["predictions"]).set_index("flight_id")
        assert len(served) == len(rows)
        assert (served["probability"] - batch.loc[served.index, "probability"]).abs().max() < 1e-9
        assert set(served["model_version"]) == {"1"} and not served["fallback"].any()
        assert set(served["model_name"]) == {"flight_delay"} and set(served["request_id"]) == {"whole-day"}
        assert (served["label"] == (served["probability"] >= 0.35)).all()
        # 893 rows: the table path
        assert (server.service.table.answered_rows, server.service.rows.answered_rows) == (len(rows), 0)

        # Every flight again, one per request: the row-wise path (row_features and the compiled model) gives the
        # same answers, and logs the same records, as the table path did for the whole day.
        alone = one_by_one(server.url, rows, "alone-")
        assert (server.service.table.answered_rows, server.service.rows.answered_rows) == (len(rows), len(rows))
        assert (alone["probability"] - batch.loc[alone.index, "probability"]).abs().max() < 1e-9
        pd.testing.assert_frame_equal(alone.drop(columns="request_id"),
                                      served.loc[alone.index].drop(columns="request_id"), rtol=0, atol=1e-12)
        assert server.service.flush()
        logged = logged_records(log_folder(mlsys_home, DAYS[1]))
        whole_day = {r["flight_id"]: r for r in logged if r["request_id"] == "whole-day"}
        one_each = {r["flight_id"]: r for r in logged if r["request_id"].startswith("alone-")}
        assert len(one_each) == len(whole_day) == len(rows)
        for flight_id, record in one_each.items():
            assert record["row"] == 0 and record["latency_ms"] > 0
            assert record["probability"] == pytest.approx(whole_day[flight_id]["probability"], abs=1e-12, rel=0)
            varying = {"request_id", "row", "served_at", "latency_ms", "probability"}
            assert {k: v for k, v in record.items() if k not in varying} == \
                {k: v for k, v in whole_day[flight_id].items() if k not in varying}, flight_id

        # Every protocol format, and weather carried by the request, give the same scores.
        few = rows.head(4)
        expected = batch.loc[few["flight_id"], "probability"].to_numpy()
        weather = pd.read_parquet(lookup_path("flights", "weather", DAYS[1], mlsys_home / "online"))
        keyed = few.assign(hour=few["sched_dep_time"] // 100).merge(weather, how="left",
                                                                     on=["origin", "year", "month", "day", "hour"])
        carried = json.loads(keyed[[*REQUEST_COLUMNS, *WEATHER_FEATURES]].to_json(orient="records"))
        columnar = {c: [r[c] for r in records(few)] for c in REQUEST_COLUMNS}
        for payload in (split(few), {"dataframe_records": records(few)}, {"inputs": records(few)},
                        {"inputs": columnar}, {"dataframe_records": carried}):
            status, answer = post(server.url, payload)
            assert status == 200, answer
            got = [p["probability"] for p in answer["predictions"]]
            assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-9, payload

        # Two rows of the same flight carrying different weather are each scored with their own.
        storm = {**carried[0], "wind_speed": 40.0, "visib": 0.5, "precip": 0.3}
        status, answer = post(server.url, {"dataframe_records": [carried[0], storm]})
        assert status == 200 and answer["predictions"][0]["probability"] == pytest.approx(expected[0], abs=1e-9)

        # A challenger is shadow-scored and logged; the answer carries only the champion.
        registry = MlflowStore.from_env().registry(FLIGHTS_SYSTEM)
        second = registry.register(registry.version_ref("1"), tags={"mlsys.test": "second version"})
        registry.set_alias("challenger", second)
        wait_for(lambda: (health(server.url)["challenger"] or {}).get("model_version") == second)
        status, answer = post(server.url, {"dataframe_records": records(few)}, headers={"X-Request-Id": "shadowed"})
        assert status == 200 and {p["model_version"] for p in answer["predictions"]} == {"1"}
        assert server.service.flush()
        logged = read_log(mlsys_home, DAYS[1])
        shadowed = logged[logged["request_id"] == "shadowed"]
        assert sorted(shadowed.groupby(["role", "model_version"]).size().items()) == \
            [(("challenger", second), 4), (("champion", "1"), 4)]

        # Promotion while requests keep coming: every request answered, versions switch once, no restart.
        seen: list[tuple[int, str]] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                code, body = post(server.url, {"inputs": [ROW]})
                seen.append((code, body["predictions"][0]["model_version"] if code == 200 else str(body)))

        client = threading.Thread(target=hammer)
        client.start()
        try:
            wait_for(lambda: len(seen) >= 3)
            registry.set_alias("champion", second)
            wait_for(lambda: any(version == second for _, version in seen))
            count = len(seen)
            wait_for(lambda: len(seen) >= count + 3)
        finally:
            stop.set()
            client.join()
        assert {code for code, _ in seen} == {200}
        versions = [version for _, version in seen]
        switch = versions.index(second)
        assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {second}
        assert health(server.url)["status"] == "ok" and health(server.url)["champion_alias"] == second
        registry.set_alias("champion", "1")  # and back, as a rollback would
        wait_for(lambda: post(server.url, {"inputs": [ROW]})[1]["predictions"][0]["model_version"] == "1")
        assert server.service.flush()

    # The log is ingested into the warehouse, idempotently per day.
    lines = sum(len(p.read_text().splitlines()) for p in log_folder(mlsys_home, DAYS[1]).glob("*.jsonl"))
    for _ in range(2):
        materialize_one(defs, instance, "served_predictions", DAYS[1])
        assert query(mlsys_home, "SELECT count(*) FROM served_predictions")[0][0] == lines
    assert query(mlsys_home, "SELECT count(*) FROM served_predictions WHERE role = 'challenger'")[0][0] >= 4
    joined = query(mlsys_home, "SELECT max(abs(s.probability - b.probability)) FROM served_predictions s "
                               "JOIN batch_predictions b USING (flight_id) WHERE s.request_id = 'whole-day'")
    assert joined[0][0] < 1e-9
    event = instance.get_latest_materialization_event(SERVED).asset_materialization
    assert event.metadata["dagster/row_count"].value == lines
    assert event.metadata["fallback_rate"].value == 0.0 and event.metadata["p50_latency_ms"].value > 0


SERVER_THREADS = {"http", "scorer-flights", "shadow-flights", "model-poller-flights", "prediction-log"}
SERVED = AssetKey([FLIGHTS_SYSTEM.name, "served_predictions"])


def test_without_a_champion_the_baseline_answers_and_health_is_degraded(defs, instance, mlsys_home: Path) -> None:
    from mlsys_assets.resources import MlflowStore

    MlflowStore.from_env().registry(FLIGHTS_SYSTEM).activate()  # an MLflow store that exists, with no registered model
    with start_server(config()) as server:
        assert get(server.url, "/ping")[0] == 200
        state = health(server.url)
        assert state["status"] == "degraded" and state["serving"]["fallback"]
        assert "has no @champion" in state["reason"] and state["baseline"] == "constant global rate"
        status, answer = post(server.url, {"inputs": [ROW]})
        assert status == 200
        assert answer["predictions"][0] | {"request_id": "-"} == {
            "probability": 0.2, "label": 0, "model_version": "baseline", "model_name": "baseline", "fallback": True,
            "request_id": "-", "flight_id": "2013-02-12-B61001-JFK-1830"}

        # Rates published while serving are picked up; unseen carrier x band gets the global rate.
        publish_baseline(pd.DataFrame({"carrier": ["B6"], "dep_hour_band": ["evening"], "rate": [0.9],
                                       "global_rate": [0.3]}), "flights", mlsys_home / "online")
        wait_for(lambda: health(server.url)["baseline"].startswith("published"))
        status, answer = post(server.url, {"dataframe_records": [ROW, {**ROW, "carrier": "UA"}]})
        assert [p["probability"] for p in answer["predictions"]] == [0.9, 0.3]
        assert [p["label"] for p in answer["predictions"]] == [1, 0]
        assert json.loads(get(server.url, "/version")[1])["model_version"] == "baseline"
        assert server.service.flush()

    assert not SERVER_THREADS & {t.name for t in threading.enumerate()}  # stopped means stopped

    materialize_one(defs, instance, "served_predictions", "2013-02-12")
    assert query(mlsys_home, "SELECT count(*), bool_and(is_fallback), min(model_version) FROM served_predictions"
                 ) == [(3, True, "baseline")]
    event = instance.get_latest_materialization_event(SERVED).asset_materialization
    assert event.metadata["fallback_rate"].value == 1.0
    materialize_one(defs, instance, "served_predictions", "2013-02-13")  # a day nobody asked about: empty, not an error
    assert query(mlsys_home, "SELECT count(*) FROM served_predictions WHERE partition_date = '2013-02-13'") == [(0,)]


class BrokenRegistry:
    """A registry whose champion exists but cannot be loaded."""

    model_name = "flight_delay"

    def alias_version(self, alias: str) -> str | None:
        return "7" if alias == "champion" else None

    def load(self, version: str) -> object:
        raise OSError(f"artifact of version {version} is gone")


def test_a_champion_that_cannot_be_loaded_falls_back_to_the_baseline(mlsys_home: Path) -> None:
    with start_server(config(), BrokenRegistry()) as server:
        state = health(server.url)
        assert state["status"] == "degraded" and state["champion_alias"] == "7"
        assert "version 7 but it could not be loaded: OSError: artifact of version 7 is gone" in state["reason"]
        status, answer = post(server.url, {"inputs": [ROW]})
        assert status == 200 and answer["predictions"][0]["fallback"] is True
        assert get(server.url, "/ping")[0] == 200


class UncompilableRegistry:
    """A registry whose champion is a model `core.rowmodel` cannot compile (here a RateBaseline)."""

    model_name = "flight_delay"

    def alias_version(self, alias: str) -> str | None:
        return "3" if alias == "champion" else None

    def load(self, version: str) -> object:
        from mlsys_assets.core.model import RateBaseline

        return Opaque(RateBaseline.from_frame(pd.DataFrame({"carrier": ["B6"], "dep_hour_band": ["evening"],
                                                            "rate": [0.7], "global_rate": [0.25]}),
                                              FLIGHTS_SYSTEM.model.baseline_by))


class Opaque:
    """A model the row path cannot compile (any estimator with `predict_proba` that is not a HistGradientBoosting
    pipeline)."""

    def __init__(self, model: object) -> None:
        self.model = model

    def predict_proba(self, matrix: pd.DataFrame) -> object:
        return self.model.predict_proba(matrix)


def test_a_champion_that_does_not_compile_is_scored_on_the_table_path(mlsys_home: Path) -> None:
    with start_server(config(), UncompilableRegistry()) as server:
        assert server.service.models.champion.compiled is None
        status, answer = post(server.url, {"inputs": [ROW, {**ROW, "carrier": "UA"}]})
        assert status == 200 and [p["probability"] for p in answer["predictions"]] == [0.7, 0.25]
        assert {(p["model_version"], p["fallback"]) for p in answer["predictions"]} == {("3", False)}
        assert (server.service.table.answered_rows, server.service.rows.answered_rows) == (2, 0)
        state = health(server.url)
        assert state["answered_rows"] == 2 and state["row_path"] is False and state["status"] == "ok"
        assert any("row path is off for this model: Opaque does not compile" in r for r in state["reasons"])
        assert 'mlsys_row_path_enabled{system="flights"} 0' in get(server.url, "/metrics")[1].decode()


def _without(row: dict, name: str) -> dict:
    return {k: v for k, v in row.items() if k != name}


BAD_REQUESTS = [
    pytest.param({"dataframe_split": {"columns": list(_without(ROW, "carrier")),
                                      "data": [list(_without(ROW, "carrier").values())]}},
                 400, "carrier", "missing column", id="missing-column"),
    pytest.param({"dataframe_records": [_without(ROW, "dest")]}, 400, "dest", "missing field", id="missing-field"),
    pytest.param({"inputs": [{**ROW, "distance": "far"}]}, 400, "distance", "expected a number, got 'far'",
                 id="wrong-type"),
    pytest.param({"inputs": [{**ROW, "flight": 12.5}]}, 400, "flight", "expected a whole number, got 12.5",
                 id="not-whole"),
    pytest.param({"inputs": [{**ROW, "carrier": None}]}, 400, "carrier", "missing value (null)", id="null"),
    pytest.param({"inputs": [{**ROW, "carrier": "ZZ"}]}, 400, "carrier", "unknown carrier 'ZZ'",
                 id="unknown-carrier"),
    pytest.param({"inputs": [{**ROW, "origin": "BOS"}]}, 400, "origin", "expected one of EWR, JFK, LGA",
                 id="not-an-origin"),
    pytest.param({"inputs": [{**ROW, "dest": "XYZ"}]}, 400, "dest", "unknown dest 'XYZ'", id="unknown-airport"),
    pytest.param({"inputs": [{**ROW, "sched_dep_time": 1275}]}, 400,
                 "sched_dep_time, sched_arr_time, dep_time, arr_time",
                 "breaks the rule times_are_clock_times (sched_dep_time=1275", id="impossible-minutes"),
    pytest.param({"inputs": [{**ROW, "sched_arr_time": 2500}]}, 400, "sched_arr_time", "must be at most 2359",
                 id="impossible-hour"),
    pytest.param({"inputs": [{**ROW, "day": 30}]}, 400, None, "day is out of range for month", id="no-such-date"),
    pytest.param({"inputs": [{**ROW, "wind_speed": 1048}]}, 400, "wind_speed", "must be at most 150",
                 id="impossible-weather"),
    pytest.param({"dataframe_split": {"columns": list(ROW), "data": [[1, 2]]}}, 400, None,
                 "expected a list of 10 values", id="short-row"),
    pytest.param({"rows": [ROW]}, 400, None, "exactly one of", id="unknown-format"),
    pytest.param(b'{"inputs": [', 400, None, "not valid JSON", id="malformed-json"),
    pytest.param(b'{"inputs": [{"distance": Infinity}]}', 400, None, "Infinity is not a number", id="infinity"),
    pytest.param({"inputs": [{**ROW, "temp": 30, "dewp": 80}]}, 400, "dewp, temp",
                 "breaks the rule dew_point_not_above_temperature (dewp=80.0, temp=30.0)", id="carried-dew-point"),
    pytest.param({"inputs": [{**ROW, "hour": 17, "minute": 30}]}, 400, "sched_dep_time, hour, minute",
                 "breaks the rule hour_and_minute_match_schedule", id="optional-columns-checked"),
    pytest.param({"inputs": [{**ROW, "distance": 10**400}]}, 400, "distance", "out of range for a 64-bit integer",
                 id="huge-number"),
    pytest.param({"inputs": [{**ROW, "distance": [944]}]}, 400, "distance", "expected a number, got a list",
                 id="list-value"),
    pytest.param(b'{"inputs": [{"carrier": "B6", "carrier": "UA"}]}', 400, None, "'carrier' appears twice",
                 id="repeated-key"),
    pytest.param({"dataframe_split": {"columns": [*ROW, "carrier"], "data": [[*ROW.values(), "UA"]]}}, 400, None,
                 "carrier", id="column-twice"),
    pytest.param({"dataframe_split": {"columns": [["year"], *list(ROW)[1:]], "data": [list(ROW.values())]}}, 400,
                 None, "column 0 of dataframe_split", id="column-as-list"),
    pytest.param(b"[" * 3_900, 400, None, "nested too deeply", id="deep-brackets"),
    pytest.param(b'{"inputs": ' + b"[" * 1900 + b"]" * 1900 + b"}", 400, None, "nested too deeply",
                 id="deep-inputs"),
    pytest.param({"inputs": [ROW] * 11}, 413, None, "11 rows in one request; the limit is 10", id="too-many-rows"),
    pytest.param({"inputs": [ROW] * 40}, 413, None, "the limit is 4000", id="too-large"),
]


@pytest.mark.parametrize(("payload", "status", "field", "problem"), BAD_REQUESTS)
def test_bad_input_is_refused_with_the_field_and_why(mlsys_home: Path, payload: object, status: int,
                                                     field: str | None, problem: str) -> None:
    with start_server(config(max_rows=10, max_body_bytes=4000)) as server:
        got, body = post(server.url, payload)
        assert got == status, body
        described = json.dumps(body)
        assert problem in described, described
        assert body["error_code"] in {"INVALID_PARAMETER_VALUE", "MALFORMED_REQUEST", "BAD_REQUEST",
                                      "RESOURCE_LIMIT_EXCEEDED"}
        if field:
            assert body["error_code"] == "INVALID_PARAMETER_VALUE"
            assert any(e["field"] == field and problem in e["problem"] for e in body["errors"]), body
        assert post(server.url, {"inputs": [ROW]})[0] == 200  # still up, still answering


def test_wrong_content_type_and_paths(mlsys_home: Path) -> None:
    with start_server(config()) as server:
        got, body = post(server.url, b"year,month\n2013,2\n", content_type="text/plain")
        assert got == 415 and "application/json" in body["message"] and "text/plain" in body["message"]
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(server.url, "/nowhere")
        assert missing.value.code == 404
        assert post(server.url, {"inputs": []}) == (200, {"predictions": []})
        got, body = post(server.url, {"inputs": [ROW] * 9000})  # ~1.5 MB: refused before it is parsed
        assert got == 413 and "the limit is 1048576" in body["message"]


@pytest.mark.slow
def test_mlsys_serve_serves_in_its_own_process_until_sigterm(mlsys_home: Path) -> None:
    """The documented command, `mlsys serve --port N`, in a process of its own: it answers, and SIGTERM stops it
    cleanly (exit 0, the log flushed)."""
    port = free_port()
    process = subprocess.Popen([str(Path(sys.executable).parent / "mlsys"), "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout=60)
        assert health(f"http://127.0.0.1:{port}")["status"] == "degraded"
        assert post(f"http://127.0.0.1:{port}", {"inputs": [ROW]})[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert f"on http://127.0.0.1:{port}" in output and "stopped" in output
    assert list(log_folder(mlsys_home, "2013-02-12").glob("*.jsonl"))
