"""End to end through the real Dagster UI server: `dagster-webserver` over a temporary instance, driven through its
GraphQL API with nothing but the standard library (the asset graph, the history of an in-process run, and a run
launched on demand and executed by the real `dagster-daemon`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlsys_assets.core.sources import file_for
from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, query

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# the workspace `make dev` loads: code location "mlsys", repository "__repository__" (a Definitions object)
WORKSPACE = ROOT / "workspace.yaml"
LOCATION, REPOSITORY = "mlsys", "__repository__"
STARTUP_TIMEOUT = 90
RUN_TIMEOUT = 120

SYSTEM = FLIGHTS_SYSTEM.name
LANDING_SENSOR = f"{SYSTEM}_landing_files_sensor"
# raw data to monitoring, as (upstream, downstream); asset keys are [system, name], "flights/name" once joined
EXPECTED_EDGES = {(f"{SYSTEM}/{upstream}", f"{SYSTEM}/{downstream}") for upstream, downstream in (
    ("raw_flights", "validated_flights"), ("validated_flights", "features"),
    ("features", "batch_predictions"), ("batch_predictions", "prediction_drift"),
    ("features", "feature_drift"), ("features", "training_set"), ("training_set", "candidate_model"),
    ("candidate_model", "model_evaluation"), ("model_evaluation", "champion_model"),
    ("champion_model", "drift_reference"), ("drift_reference", "feature_drift"),
)}

# no proxy from the environment may stand between the test and 127.0.0.1
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return f"\n--- last lines of {path.name} ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Server:
    port: int
    log: Path

    def graphql(self, document: str, variables: dict | None = None, timeout: float = 60) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql", method="POST",
            data=json.dumps({"query": document, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        with _OPENER.open(request, timeout=timeout) as response:
            body = json.loads(response.read())
        assert not body.get("errors"), f"GraphQL errors: {body['errors']}{tail(self.log)}"
        return body["data"]


def start(command: list[str], log: Path) -> subprocess.Popen:
    """A subprocess in its own process group (its code servers and run workers are stopped with it), logging to a
    file: a PIPE nobody reads would fill up and block the server."""
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the process group started by `start`, SIGKILL to whatever is left of it after `timeout`."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):  # code servers or run workers that outlived their parent
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def wait_until_loaded(server: Server, process: subprocess.Popen) -> None:
    """Until the server answers and the code location has loaded; a load error fails with its message."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    document = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"""
    last = "no answer yet"
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster-webserver exited with {process.returncode}{tail(server.log)}"
        try:
            with _OPENER.open(f"http://127.0.0.1:{server.port}/server_info", timeout=10) as response:
                assert response.status == 200
            entries = server.graphql(document)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = repr(exc)
        else:
            last = json.dumps(entries)
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                assert loaded.get("__typename") == "RepositoryLocation", f"code location failed to load: {last}"
                return
        time.sleep(1)
    pytest.fail(f"dagster-webserver not ready after {STARTUP_TIMEOUT} s (last: {last}){tail(server.log)}")


@pytest.fixture
def materialized_day(defs, instance, mlsys_home: Path, tmp_path: Path) -> dict[str, str]:
    """DAYS[0] replayed in-process before any server starts: the landing sensor's tick ingests it and automation
    runs its downstream chain (DAYS[1] is held back, so only the run launched through the API can produce it).
    The run ids by sensor."""
    from mlsys_assets.replay import InProcessDaemon

    held = tmp_path / "held"
    landed = {source.name: file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, source, DAYS[1])
              for source in FLIGHTS_SYSTEM.sources}
    for source, path in landed.items():
        (held / source).mkdir(parents=True)
        path.rename(held / source / path.name)
    daemon = InProcessDaemon(defs, instance)
    daemon.start()
    landing = daemon.tick(LANDING_SENSOR)
    automation = daemon.settle()
    for source, path in landed.items():
        (held / source / path.name).rename(path)
    assert [run.success for run in landing] == [True] and automation and all(run.success for run in automation)
    chain = [run for run in automation if f"{SYSTEM}/validated_flights" in run.assets]
    assert len(chain) == 1
    return {LANDING_SENSOR: landing[0].run_id, "automation_sensor": chain[0].run_id}


def assert_replayed_ticks_visible(server: Server, runs: dict[str, str]) -> None:
    """The in-process daemon's ticks and cursors are where the real daemon and the UI look for them."""
    for name, run_id in runs.items():
        sensor = server.graphql("""query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
            __typename ... on Sensor { sensorState { ticks(limit: 10) { status runIds }
                typeSpecificData { ... on SensorData { lastCursor } } } } } }""", {"selector": {
            "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}})["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        ticks = sensor["sensorState"]["ticks"]
        assert any(t["status"] == "SUCCESS" and run_id in t["runIds"] for t in ticks), (name, ticks)
        cursor = sensor["sensorState"]["typeSpecificData"]["lastCursor"]
        assert cursor, name
        if name == LANDING_SENSOR:  # the daemon would continue from here: DAYS[0] seen, DAYS[1] not
            assert f"{DAYS[0]}.csv" in cursor and f"{DAYS[1]}.csv" not in cursor
    run = server.graphql("""query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }""",
                         {"id": runs["automation_sensor"]})["runOrError"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/sensor_name"] == "automation_sensor" and tags["dagster/from_automation_condition"] == "true"


@pytest.fixture
def server(materialized_day: dict[str, str], mlsys_home: Path, tmp_path: Path) -> Iterator[Server]:
    """`dagster-webserver` on 127.0.0.1 over the test's MLSYS_HOME and DAGSTER_HOME (inherited environment)."""
    port = free_port()
    log = tmp_path / "webserver.log"
    process = start([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(WORKSPACE)], log)
    try:
        running = Server(port, log)
        wait_until_loaded(running, process)
        yield running
    finally:
        stop(process)


def assert_graph_reaches_monitoring(server: Server) -> None:
    nodes = server.graphql("{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]
    edges = {("/".join(dep["path"]), "/".join(node["assetKey"]["path"])) for node in nodes
             for dep in node["dependencyKeys"]}
    assert edges >= EXPECTED_EDGES, f"missing edges: {sorted(EXPECTED_EDGES - edges)}"


def assert_history_visible(server: Server, run_id: str) -> None:
    data = server.graphql("""query($key: AssetKeyInput!, $check: String!) {
        assetOrError(assetKey: $key) { __typename ... on Asset { assetMaterializations(limit: 5) { partition runId } } }
        assetCheckExecutions(assetKey: $key, checkName: $check, limit: 5) {
            runId partition status evaluation { success } } }""",
                          {"key": {"path": [SYSTEM, "validated_flights"]}, "check": "no_rows_lost"})
    assert data["assetOrError"]["__typename"] == "Asset"
    assert data["assetOrError"]["assetMaterializations"] == [{"partition": DAYS[0], "runId": run_id}]
    assert data["assetCheckExecutions"] == [
        {"runId": run_id, "partition": DAYS[0], "status": "SUCCEEDED", "evaluation": {"success": True}}]


def stop_all_sensors(server: Server) -> None:
    """Every sensor of the code location starts RUNNING by default: the landing sensor would request raw runs for
    both landed days and the automation sensor everything downstream of them, racing the run under test."""
    document = """query($repo: RepositorySelector!) { sensorsOrError(repositorySelector: $repo) {
        __typename ... on Sensors { results { id name sensorState { status } } } } }"""
    repo = {"repo": {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}}
    sensors = server.graphql(document, repo)["sensorsOrError"]["results"]
    assert {LANDING_SENSOR, "automation_sensor"} <= {s["name"] for s in sensors}
    for sensor in sensors:
        if sensor["sensorState"]["status"] == "RUNNING":
            stopped = server.graphql("""mutation($id: String!) { stopSensor(id: $id) { __typename
                ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }""",
                                     {"id": sensor["id"]})["stopSensor"]
            assert stopped.get("instigationState") == {"status": "STOPPED"}, f"{sensor['name']}: {stopped}"
    after = server.graphql(document, repo)["sensorsOrError"]["results"]
    states = {s["name"]: s["sensorState"]["status"] for s in after}
    assert set(states.values()) == {"STOPPED"}, states


def launch_asset_run(server: Server, asset: list[str], partition: str) -> str:
    launched = server.graphql("""mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId status } } ... on Error { message } } }""", {"params": {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": "__ASSET_JOB",
                     "assetSelection": [{"path": asset}]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    # the instance has no `run_coordinator` entry, so Dagster's default QueuedRunCoordinator applies: the run
    # waits in the queue until a daemon dequeues it
    assert launched["run"]["status"] == "QUEUED", launched
    return launched["run"]["runId"]


def wait_for_run(server: Server, run_id: str, daemon_log: Path) -> None:
    document = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status
        eventConnection(limit: 500) { events { __typename ... on MessageEvent { message }
            ... on ExecutionStepFailureEvent { error { message } }
            ... on RunFailureEvent { error { message } } } } } } }"""
    deadline = time.monotonic() + RUN_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        run = server.graphql(document, {"id": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        status = run["status"]
        if status == "SUCCESS":
            return
        if status in ("FAILURE", "CANCELED"):
            break
        time.sleep(2)
    messages = "\n".join(
        f"{e['__typename']}: {e.get('message')}" + (f" {e['error']['message']}" if e.get("error") else "")
        for e in run["eventConnection"]["events"])
    pytest.fail(f"run {run_id} ended {status} (SUCCESS expected within {RUN_TIMEOUT} s)\n{messages}"
                f"{tail(daemon_log)}{tail(server.log, 20)}")


@pytest.mark.slow
def test_webserver_shows_graph_and_history_and_materializes_on_demand(
        server: Server, materialized_day: dict[str, str], mlsys_home: Path, tmp_path: Path) -> None:
    assert_graph_reaches_monitoring(server)
    assert_history_visible(server, materialized_day["automation_sensor"])
    assert_replayed_ticks_visible(server, materialized_day)

    # On demand, the way the UI's "Materialize" button does it: the implicit asset job with the partition tag.
    # The real configuration needs the daemon to dequeue runs (`make dev` runs `dagster dev`, webserver + daemon),
    # so the test runs the real `dagster-daemon` rather than rewriting dagster.yaml to launch runs directly; the
    # sensors are stopped through the API first so that nothing but the run under test is launched.
    stop_all_sensors(server)
    day = DAYS[1]  # not materialized yet: its materialization can only come from the launched run
    run_id = launch_asset_run(server, [SYSTEM, "raw_flights"], day)
    daemon_log = tmp_path / "daemon.log"
    daemon = start([str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)], daemon_log)
    try:
        wait_for_run(server, run_id, daemon_log)
    finally:
        stop(daemon)

    data = server.graphql("""query($key: AssetKeyInput!) { assetOrError(assetKey: $key) {
        ... on Asset { assetMaterializations(limit: 5) { partition runId } } } }""",
                          {"key": {"path": [SYSTEM, "raw_flights"]}})
    assert {"partition": day, "runId": run_id} in data["assetOrError"]["assetMaterializations"]
    landed_file = file_for(mlsys_home / "landing", FLIGHTS_SYSTEM, FLIGHTS_SYSTEM.source("flights"), day)
    landed = len(landed_file.read_text().splitlines()) - 1
    assert query(mlsys_home, "SELECT count(*) FROM raw_flights WHERE partition_date = ?", [day])[0][0] == landed
