"""`mlsys serve` against `mlflow models serve` on the same @champion: single-row latency and throughput, 64
concurrent clients, a keep-alive client among 300 slow connections, and memory under 1 MB requests.

Run by hand, not by pytest:

    .venv/bin/python -m benchmarks.serving [--home DIR] [--requests 400] [--concurrency 1,8,32]

`--home` is an MLSYS_HOME whose registry has a @champion and whose online store has the day's weather; without it a
temporary one is prepared (two landed days, the daily pipeline, a retrained champion, the published weather: ~15 s).
Each server runs in its own process on 127.0.0.1 with one worker (`python -m mlsys_assets.core.server.command`, what
`mlsys serve` runs; `mlflow models serve --env-manager local`). Clients are keep-alive `http.client` connections:
threads of this process for one client, threads spread over up to 4 spawned processes otherwise (so the clients'
own interpreter lock is not what limits a run), on the same 2 cores as the servers. Our
server gets the raw flight (single-row requests take its row path: the declared row-wise features and the champion
compiled by `core.rowmodel`; big requests the table path); MLflow's gets the feature row its signature wants. Each
single-row level alternates between the servers in rounds; the other measurements run on one server at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.serving_load import CpuMeter, LoadSpec, Outcome, RssMonitor, SlowConnections, SlowStats, run_load

# A small training run: the flights system's settings, read when the definitions are built (the model keeps its
# declared parameters: 200 boosting iterations).
SMALL_TRAINING = {"MLSYS_FLIGHTS_WINDOW": "2", "MLSYS_FLIGHTS_HOLDOUT": "1", "MLSYS_FLIGHTS_SLICE_MIN_ROWS": "100",
                  "MLSYS_FLIGHTS_FLOOR": "0.5"}
DAYS = ("2013-02-11", "2013-02-12")
ROUNDS = 2  # each single-row level alternates between the servers this many times
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
OURS, THEIRS = "mlsys serve", "mlflow models serve"
LANDING_ONLY = ("parse_errors", "extra_fields", "source_file", "source_row")  # the reader's columns, not the file's


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


@dataclass
class Bodies:
    """Request bodies for both servers, the same flights in the same order."""

    ours: list[bytes]  # one flight each, raw (dataframe_records of the request columns)
    theirs: list[bytes]  # one flight each, its feature row (dataframe_split)
    big_ours: bytes  # `big_rows` landed flight rows and their flight_id (dataframe_split, the day's flights repeated)
    big_theirs: bytes  # their feature rows
    big_rows: int


def day_flights(day: str):
    """The day's parsed flights as landed (every column of the landing file)."""
    from mlsys_assets.core.landing import read_landing_file
    from mlsys_assets.resources import LandingZone

    system = flights_system()
    source = system.source("flights")
    flights = read_landing_file(LandingZone.from_env().file_for(system, source, day), source).frame
    return flights[flights["parse_errors"].isna()].drop(columns=list(LANDING_ONLY)).reset_index(drop=True)


def request_bodies(day: str, big_rows: int) -> Bodies:
    import pandas as pd

    from mlsys_assets.core.featurize import feature_matrix
    from mlsys_assets.core.online import lookup_path
    from mlsys_assets.systems.flights.features import REQUEST_COLUMNS, build_features, flight_ids

    system = flights_system()
    landed = day_flights(day)
    flights = landed[list(REQUEST_COLUMNS)]
    features = feature_matrix(system, build_features(flights, pd.read_parquet(lookup_path(system.name, "weather",
                                                                                           day))))
    ours = [json.dumps({"dataframe_records": json.loads(flights.iloc[[i]].to_json(orient="records"))}).encode()
            for i in range(len(flights))]
    theirs = [split_body(features.iloc[[i]]) for i in range(len(features))]
    repeat = list(range(len(landed))) * (big_rows // len(landed) + 1)
    big = repeat[:big_rows]
    keyed = landed.copy()
    keyed.insert(0, "flight_id", flight_ids(landed))  # each row with its key, as the test suite's clients send it
    return Bodies(ours, theirs, split_body(keyed.iloc[big]), split_body(features.iloc[big]), big_rows)


def split_body(frame) -> bytes:
    split = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
    return json.dumps({"dataframe_split": split}, separators=(",", ":")).encode()


def start(command: list[str], env: dict[str, str], port: int, timeout: float = 120.0) -> tuple[subprocess.Popen, float]:
    """Start a server in its own process group (SIGTERM then reaches MLflow's uvicorn child too) and wait for /ping.
    Its output goes to a file: a pipe nobody reads would fill up with access logs and stall the server."""
    from mlsys_assets.core.server.command import wait_until_ready

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
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Measurement:
    version: str
    flights: int
    levels: list[int]
    results: dict[str, list[Outcome]]  # per server, one per level (single-row requests)
    crowd: dict[str, Outcome]  # per server: `crowd_clients` clients, single-row requests
    crowd_clients: int
    cpu: dict[str, CpuMeter]  # per server, over its crowd rounds
    plain: dict[str, Outcome]  # per server: 1 client (the slow runs' comparison)
    slow: dict[str, Outcome]  # per server: 1 client among the slow connections
    slow_stats: dict[str, SlowStats]
    big: dict[str, Outcome]  # per server: 64 clients of big requests
    memory: dict[str, dict[str, float]]  # per server: before_mb, peak_mb, hwm_mb, after_mb, body_mb
    extras: dict[str, dict[str, float]]
    answers: dict[str, list[bytes]]
    batch_rows: int
    big_rows: int
    header_timeout: float
    big_seconds: float
    settings: dict[str, str] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--home", type=Path, help="an MLSYS_HOME with a @champion (default: prepare a temporary one)")
    add_arguments(parser)
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
        measured = measure(home, args)
        if measured is None:
            return 2
        from benchmarks.report import print_table
        from benchmarks.serving_summary import results, single_row_costs

        print_table(results(measured, single_row_costs(args.day), args), details=True)
        return 0
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--day", default=DAYS[-1], help="the day whose flights are sent (its weather published)")
    parser.add_argument("--requests", type=int, default=400, help="single-row requests per level and server")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--crowd", type=int, default=64, help="clients of the crowd run (single-row requests)")
    parser.add_argument("--crowd-requests", type=int, default=3000, help="requests of the crowd run, both rounds")
    parser.add_argument("--slow", type=int, default=300, help="slow connections open during the slow run")
    parser.add_argument("--slow-seconds", type=float, default=12.0, help="length of the slow run (ours; MLflow's "
                                                                         "a third): longer than the header deadline")
    parser.add_argument("--big-rows", type=int, default=6500, help="rows of each big request")
    parser.add_argument("--big-seconds", type=float, default=15.0, help="no new big request after this")
    parser.add_argument("--batch-rows", type=int, default=500, help="rows of the one multi-row request timed")
    parser.add_argument("--processes", type=int, default=4, help="client processes of a run with several clients")


def measure(home: Path, args: argparse.Namespace) -> Measurement | None:
    """Both servers up; every measurement; None without a @champion."""
    from mlsys_assets.core.server.command import free_port
    from mlsys_assets.core.server.service import ServeConfig
    from mlsys_assets.resources import MlflowStore

    registry = MlflowStore.from_env().registry(flights_system())
    version = registry.alias_version("champion")
    if version is None:
        where = registry.tracking_uri.split("@")[-1]  # never print a password the URI may hold
        print(f"{registry.model_name!r} has no @champion in {where}; run the pipeline and retraining first, or "
              "leave out --home", file=sys.stderr)
        return None
    bodies = request_bodies(args.day, args.big_rows)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLSYS_HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": registry.tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLSYS_SERVE_MAX_ROWS": str(max(10_000, args.batch_rows, args.big_rows)),
           "MLSYS_PREDICTION_LOG_DIR": tempfile.mkdtemp(prefix="mlsys-bench-log-")}  # not the home's real log
    saved = {k: os.environ.get(k) for k in ("MLSYS_SERVE_MAX_ROWS", "MLSYS_PREDICTION_LOG_DIR")}
    os.environ.update({k: env[k] for k in saved})
    try:
        config = ServeConfig.from_env()  # the server's settings, as it reads them
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.update({name: value})
    settings = {"max body": f"{config.max_body_bytes} bytes", "max rows": str(config.max_rows),
                "max in flight": f"{config.max_inflight_bytes} bytes, {config.max_inflight_rows} rows",
                "header deadline": f"{config.header_timeout_seconds:g} s"}
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = {
        OURS: ([sys.executable, "-m", "mlsys_assets.core.server.command", "--port"], bodies.ours, bodies.big_ours),
        THEIRS: ([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", f"models:/{registry.model_name}@champion",
                  "--env-manager", "local", "-h", "127.0.0.1", "-p"], bodies.theirs, bodies.big_theirs),
    }
    print(f"model {registry.model_name} version {version}; {len(bodies.ours)} flights of {args.day}; "
          f"{args.requests} requests per level and server, in {ROUNDS} alternating rounds; {os.cpu_count()} CPUs",
          flush=True)
    processes, ports, extras = {}, {}, {}
    began = time.monotonic()

    def say(text: str) -> None:
        print(f"  [{time.monotonic() - began:3.0f} s] {text}", flush=True)

    m = Measurement(version, len(bodies.ours), levels, {n: [] for n in servers}, {}, args.crowd, {}, {}, {}, {}, {},
                    {}, extras, {}, min(args.batch_rows, len(bodies.ours)), bodies.big_rows,
                    config.header_timeout_seconds, args.big_seconds, settings)
    try:
        for name, (command, _, _) in servers.items():  # both up at once, so load on the machine hits both alike
            ports[name] = free_port()
            processes[name], took = start([*command, str(ports[name])], env, ports[name])
            extras[name] = {"start_s": took}
        for name, (_, single, _) in servers.items():
            run_load(LoadSpec(ports[name], single, 1, 30, 30))  # warm up: first requests import and compile lazily
        for clients in [*levels, args.crowd]:
            crowd = clients == args.crowd
            total = max(args.crowd_requests if crowd else args.requests, clients * 10) // ROUNDS
            for round_ in range(ROUNDS):
                for name, (_, single, _) in servers.items():
                    spec = LoadSpec(ports[name], single, clients, max(1, total // clients), 4.0 if crowd else 20.0,
                                    offset=round_ * total, sample=50 if round_ == 0 else 0)
                    meter = m.cpu.setdefault(name, CpuMeter(processes[name].pid)) if crowd else None
                    outcome = run_load(spec, args.processes if clients > 1 else 1, meter)
                    check(outcome, name, f"{clients} clients")
                    if crowd:
                        m.crowd[name] = m.crowd[name].add(outcome) if name in m.crowd else outcome
                    elif round_ == 0:
                        m.results[name].append(outcome)
                        m.answers.setdefault(name, outcome.samples)
                    else:
                        m.results[name][-1] = m.results[name][-1].add(outcome)
            for name in servers:
                level = m.crowd[name] if crowd else m.results[name][-1]
                say(f"{name:20} {clients:>3} clients: p50 {level.p50_ms:7.2f} ms  p99 {level.p99_ms:7.2f} ms  "
                    f"{level.rows_per_s:8.1f} rows/s")
        for name, (_, single, _) in servers.items():
            seconds = args.slow_seconds if name == OURS else args.slow_seconds / 3
            m.plain[name] = run_load(LoadSpec(ports[name], single, 1, 100_000, min(2.0, seconds / 2)))
            with SlowConnections(ports[name], args.slow, config.header_timeout_seconds) as slow:
                m.slow[name] = run_load(LoadSpec(ports[name], single, 1, 100_000, seconds))
            m.slow_stats[name] = slow.stats
            check(m.slow[name], name, "the slow run")
            say(f"{name:20} 1 client, {args.slow} slow connections: p50 {m.slow[name].p50_ms:.2f} ms (without "
                f"them {m.plain[name].p50_ms:.2f} ms); {slow.stats.cut_by_deadline} cut by the deadline, "
                f"at least {slow.stats.min_open} open")
        for name in servers:
            batch = multi_row(servers[name][1], m.batch_rows)
            run_load(LoadSpec(ports[name], [batch], 1, 1, 60))
            timed = run_load(LoadSpec(ports[name], [batch], 1, 5, 60))
            extras[name]["batch_ms"] = timed.p50_ms
        for name, (_, _, big) in servers.items():  # last: what memory a server keeps afterwards stays with it
            spec = LoadSpec(ports[name], [big], args.crowd, 1, args.big_seconds, rows_per_body=bodies.big_rows,
                            retry_busy=True, timeout=120)
            with RssMonitor(processes[name].pid) as rss:
                m.big[name] = run_load(spec, args.processes)
            time.sleep(2)
            m.memory[name] = {"before_mb": rss.before_mb, "peak_mb": max(rss.peak_mb, rss.hwm_mb() if rss.reset
                                                                           else 0), "polled_mb": rss.peak_mb,
                              "hwm_mb": rss.hwm_mb(), "after_mb": rss.rss_mb(), "body_mb": len(big) / 1e6,
                              "processes": len(rss.pids), "reset": float(rss.reset)}
            big_outcome = m.big[name]
            say(f"{name:20} {args.crowd} clients x {len(big) / 1e6:.2f} MB ({bodies.big_rows} rows): peak RSS "
                f"{m.memory[name]['peak_mb']:.0f} MB, after {m.memory[name]['after_mb']:.0f} MB; "
                f"{big_outcome.statuses.get(200, 0)} x 200, {big_outcome.statuses.get(503, 0)} x 503; "
                f"{big_outcome.rows_per_s:.0f} rows/s")
    finally:
        for process in processes.values():
            stop(process)
        shutil.rmtree(env["MLSYS_PREDICTION_LOG_DIR"], ignore_errors=True)
        say("servers stopped")
    return m


def check(outcome: Outcome, name: str, what: str) -> None:
    """Single-row runs must be answered in full: a failure is a broken benchmark, not a figure."""
    failed = sum(n for status, n in outcome.statuses.items() if status != 200)
    if failed or not outcome.latencies_ms:
        raise RuntimeError(f"{name}, {what}: {failed} failed requests of {outcome.statuses.total()}, e.g. "
                           f"{outcome.errors[:1]}")


def multi_row(single: list[bytes], rows: int) -> bytes:
    """`rows` of the one-row bodies as one request, in the same format."""
    parts = [json.loads(b) for b in single[:rows]]
    key = next(iter(parts[0]))
    if key == "dataframe_records":
        return json.dumps({key: [r for part in parts for r in part[key]]}).encode()
    return json.dumps({key: {"columns": parts[0][key]["columns"],
                             "data": [r for p in parts for r in p[key]["data"]]}}).encode()


if __name__ == "__main__":
    raise SystemExit(main())
