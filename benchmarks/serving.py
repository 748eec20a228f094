"""Single-row latency and throughput of `mlsys serve` against `mlflow models serve`, on the same @champion.

Run by hand, not by pytest:

    .venv/bin/python -m benchmarks.serving [--home DIR] [--requests 400] [--concurrency 1,8,32]

`--home` is an MLSYS_HOME whose registry has a @champion and whose online store has the day's weather;
without it a temporary one is prepared (two landed days, the daily pipeline, a retrained champion, the
published weather: about half a minute). Each server runs in its own process on 127.0.0.1 with one worker;
clients are threads of this process, each with a keep-alive connection, sending one flight per request. Our
server gets the raw flight (and builds features itself: single-row requests take its row path, `row_features` and
the champion compiled by `core.rowmodel`; the one multi-row request timed takes the table path); MLflow's gets
the feature row its signature wants. The flights system (mlsys_assets/systems/flights/declaration.py) is served.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A small training run: the flights system's settings, read when the definitions are built (the model keeps its
# declared parameters: 200 boosting iterations).
SMALL_TRAINING = {"MLSYS_FLIGHTS_WINDOW": "2", "MLSYS_FLIGHTS_HOLDOUT": "1", "MLSYS_FLIGHTS_SLICE_MIN_ROWS": "100",
                  "MLSYS_FLIGHTS_FLOOR": "0.5"}
DAYS = ("2013-02-11", "2013-02-12")
ROUNDS = 2  # each level alternates between the servers this many times
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def flights_system():
    """The served system's declaration (as declared: its settings do not change what serving reads)."""
    from mlsys_assets.systems.flights.declaration import flights

    return flights


def prepare_home(home: Path) -> None:
    """A fresh MLSYS_HOME with a champion and the served day's published weather (the test suite's recipe)."""
    os.environ["MLSYS_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    from dagster import DagsterInstance

    from mlsys_assets.core.landing import land_default_data
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.instance import prepare_dagster_home
    from mlsys_assets.naming import Names

    prepare_dagster_home()
    names = Names(flights_system())
    land_default_data(names.system, home / "landing", DAYS[0], DAYS[-1])
    saved = {name: os.environ.get(name) for name in SMALL_TRAINING}
    os.environ.update(SMALL_TRAINING)  # the system's settings are read when the definitions are built
    try:
        defs = build_defs()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assets = defs.resolve_implicit_global_asset_job_def()
    with DagsterInstance.get() as instance:
        for day in DAYS:
            assert defs.resolve_job_def(names.job("daily_pipeline")).execute_in_process(
                partition_key=day, instance=instance, run_config=QUIET).success, day
        assert defs.resolve_job_def(names.job("retraining")).execute_in_process(
            instance=instance, run_config=QUIET).success
        for asset, day in (("online_weather", DAYS[-1]), ("online_baseline", None)):
            assert assets.execute_in_process(asset_selection=[names.key(asset)], partition_key=day,
                                             instance=instance, run_config=QUIET).success, asset


def request_bodies(home: Path, day: str) -> tuple[list[bytes], list[bytes]]:
    """The day's flights as one-row requests: raw rows for mlsys, feature rows for MLflow's signature."""
    import pandas as pd

    from mlsys_assets.core.featurize import feature_matrix
    from mlsys_assets.core.landing import read_landing_file
    from mlsys_assets.core.online import weather_path
    from mlsys_assets.resources import LandingZone
    from mlsys_assets.systems.flights.features import REQUEST_COLUMNS, build_features

    system = flights_system()
    source = system.source("flights")
    flights = read_landing_file(LandingZone.from_env().file_for(system, source, day), source).frame
    flights = flights[flights["parse_errors"].isna()][list(REQUEST_COLUMNS)].reset_index(drop=True)
    features = feature_matrix(system, build_features(flights, pd.read_parquet(weather_path(day))))
    ours = [json.dumps({"dataframe_records": json.loads(flights.iloc[[i]].to_json(orient="records"))}).encode()
            for i in range(len(flights))]
    theirs = [json.dumps({"dataframe_split": json.loads(features.iloc[[i]].to_json(orient="split", index=False))})
              .encode() for i in range(len(features))]
    return ours, theirs


def start(command: list[str], env: dict[str, str], port: int, timeout: float = 120.0) -> tuple[subprocess.Popen, float]:
    """Start a server in its own process group (SIGTERM then reaches uvicorn's child too) and wait for /ping.
    Its output goes to a file: a pipe nobody reads would fill up with access logs and stall the server."""
    from mlsys_assets.core.serving import wait_until_ready

    started = time.monotonic()
    with tempfile.TemporaryFile() as output:  # the child keeps its own descriptor of it
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", timeout)
        except TimeoutError:
            stop(process)
            output.seek(0)
            raise RuntimeError(f"{command[0]} did not start: {output.read().decode()[-2000:]}") from None
    return process, time.monotonic() - started


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Level:
    clients: int
    latencies_ms: list[float]
    seconds: float

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99))

    @property
    def rows_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def add(self, other: Level) -> Level:
        return Level(self.clients, self.latencies_ms + other.latencies_ms, self.seconds + other.seconds)


def load(port: int, bodies: list[bytes], clients: int, requests: int, offset: int = 0) -> tuple[Level, list[bytes]]:
    """`requests` one-row requests from `clients` keep-alive connections; latency per request, rows/s overall."""
    per_client = max(1, requests // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    answers: list[bytes] = []
    failures: list[str] = []
    ready = threading.Barrier(clients + 1)

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/json"}
        ready.wait()
        for i in range(per_client):
            body = bodies[(offset + number * per_client + i) % len(bodies)]
            began = time.perf_counter()
            connection.request("POST", "/invocations", body, headers)
            response = connection.getresponse()
            data = response.read()
            latencies[number].append((time.perf_counter() - began) * 1000)
            if response.status != 200:
                failures.append(f"{response.status}: {data[:200]!r}")
            elif number == 0 and i < 50:
                answers.append(data)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, e.g. {failures[0]}")
    return Level(clients, [x for part in latencies for x in part], wall), answers


def one_request(port: int, body: bytes) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    began = time.perf_counter()
    connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200, response.status
    return (time.perf_counter() - began) * 1000


def batch_body(bodies: list[bytes], key: str, rows: int) -> bytes:
    """`rows` of the one-row bodies as one request, in the same format."""
    parts = [json.loads(b)[key] for b in bodies[:rows]]
    if key == "dataframe_records":
        return json.dumps({key: [r for part in parts for r in part]}).encode()
    return json.dumps({key: {"columns": parts[0]["columns"], "data": [r for p in parts for r in p["data"]]}}).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--home", type=Path, help="an MLSYS_HOME with a @champion (default: prepare a temporary one)")
    parser.add_argument("--day", default=DAYS[-1], help="the day whose flights are sent (its weather published)")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level and server")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--batch-rows", type=int, default=500, help="rows of the one multi-row request timed")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    temporary = None
    if args.home is None:
        temporary = Path(tempfile.mkdtemp(prefix="mlsys-bench-"))
        print(f"preparing a temporary MLSYS_HOME in {temporary} ...", flush=True)
        prepare_home(temporary / "home")
        home = temporary / "home"
    else:
        home = args.home.expanduser().absolute()
        os.environ["MLSYS_HOME"] = str(home)
    try:
        return run(home, args)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


@dataclass
class Measurement:
    version: str
    flights: int
    levels: list[int]
    results: dict[str, list[Level]]
    extras: dict[str, dict[str, float]]
    answers: dict[str, list[bytes]]
    batch_rows: int


def run(home: Path, args: argparse.Namespace) -> int:
    measured = measure(home, args)
    if measured is None:
        return 2
    report(measured.results, measured.extras, measured.levels, measured.batch_rows)
    agreement(measured.answers)
    return 0


def measure(home: Path, args: argparse.Namespace) -> Measurement | None:
    """Both servers up, every concurrency level in alternating rounds, one multi-row request; None without a
    @champion."""
    from mlsys_assets.core.serving import free_port
    from mlsys_assets.resources import MlflowStore

    registry = MlflowStore.from_env().registry(flights_system())
    version = registry.alias_version("champion")
    if version is None:
        where = registry.tracking_uri.split("@")[-1]  # never print a password the URI may hold
        print(f"{registry.model_name!r} has no @champion in {where}; run the pipeline and retraining first, or "
              "leave out --home", file=sys.stderr)
        return None
    ours, theirs = request_bodies(home, args.day)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLSYS_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": registry.tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLSYS_SERVE_MAX_ROWS": str(max(10_000, args.batch_rows)),
           "MLSYS_PREDICTION_LOG_DIR": tempfile.mkdtemp(prefix="mlsys-bench-log-")}  # not the home's real log
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = {
        "mlsys serve": ([sys.executable, "-m", "mlsys_assets.core.serving", "--port"], ours, "dataframe_records"),
        "mlflow models serve": ([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m",
                                 f"models:/{registry.model_name}@champion", "--env-manager", "local",
                                 "-h", "127.0.0.1", "-p"], theirs, "dataframe_split"),
    }
    print(f"model {registry.model_name} version {version}; {len(ours)} flights of {args.day}; "
          f"{args.requests} requests per level and server, in {ROUNDS} alternating rounds; {os.cpu_count()} CPUs",
          flush=True)
    processes, ports, extras = {}, {}, {}
    try:
        for name, (command, _, _) in servers.items():  # both up at once, so load on the machine hits both alike
            ports[name] = free_port()
            processes[name], took = start([*command, str(ports[name])], env, ports[name])
            extras[name] = {"start_s": took}
        for name, (_, bodies, _) in servers.items():
            load(ports[name], bodies, 1, 30)  # warm up: first requests import and compile lazily
        results: dict[str, list[Level]] = {name: [] for name in servers}
        answers: dict[str, list[bytes]] = {}
        for clients in levels:
            requests = max(args.requests, clients * 10) // ROUNDS
            for round_ in range(ROUNDS):
                for name, (_, bodies, _) in servers.items():
                    level, sample = load(ports[name], bodies, clients, requests, offset=round_ * requests)
                    if round_ == 0:
                        results[name].append(level)
                        answers.setdefault(name, sample)
                    else:
                        results[name][-1] = results[name][-1].add(level)
            for name in servers:
                level = results[name][-1]
                print(f"  {name:20} {clients:>3} clients: p50 {level.p50_ms:7.2f} ms  p99 {level.p99_ms:7.2f} ms  "
                      f"{level.rows_per_s:8.1f} rows/s", flush=True)
        batch_rows = min(args.batch_rows, len(ours))
        for name, (_, bodies, key) in servers.items():
            batch = batch_body(bodies, key, batch_rows)
            one_request(ports[name], batch)
            extras[name]["batch_ms"] = float(np.median([one_request(ports[name], batch) for _ in range(5)]))
    finally:
        for process in processes.values():
            stop(process)
        shutil.rmtree(env["MLSYS_PREDICTION_LOG_DIR"], ignore_errors=True)
    return Measurement(version, len(ours), levels, results, extras, answers, batch_rows)


def report(results: dict[str, list[Level]], extras: dict[str, dict[str, float]], levels: list[int],
           batch_rows: int) -> None:
    ours, theirs = results["mlsys serve"], results["mlflow models serve"]
    print("\nsingle-row requests (ratio > 1: mlsys serve is better)")
    print(f"{'clients':>7} | {'mlsys p50':>9} {'p99':>8} {'rows/s':>8} | {'mlflow p50':>10} {'p99':>8} {'rows/s':>8} | "
          f"{'p50 ratio':>9} {'p99 ratio':>9} {'rows/s ratio':>12}")
    for clients, a, b in zip(levels, ours, theirs, strict=True):
        print(f"{clients:>7} | {a.p50_ms:9.2f} {a.p99_ms:8.2f} {a.rows_per_s:8.1f} | {b.p50_ms:10.2f} {b.p99_ms:8.2f} "
              f"{b.rows_per_s:8.1f} | {b.p50_ms / a.p50_ms:9.2f} {b.p99_ms / a.p99_ms:9.2f} "
              f"{a.rows_per_s / b.rows_per_s:12.2f}")
    a, b = extras["mlsys serve"], extras["mlflow models serve"]
    print(f"one {batch_rows}-row request: mlsys {a['batch_ms']:.1f} ms, mlflow {b['batch_ms']:.1f} ms "
          f"(ratio {b['batch_ms'] / a['batch_ms']:.2f}); start to first /ping: mlsys {a['start_s']:.1f} s, "
          f"mlflow {b['start_s']:.1f} s")


def agreement(answers: dict[str, list[bytes]]) -> None:
    """MLflow's pyfunc answers labels (predict: P > 0.5); ours answers probabilities of the same model."""
    ours = [json.loads(a)["predictions"][0]["probability"] for a in answers["mlsys serve"]]
    theirs = [json.loads(a)["predictions"][0] for a in answers["mlflow models serve"]]
    same = sum(int(p > 0.5) == int(label) for p, label in zip(ours, theirs, strict=False))
    print(f"the two servers agree on {same}/{min(len(ours), len(theirs))} labels (P > 0.5) of the same flights")


if __name__ == "__main__":
    raise SystemExit(main())
