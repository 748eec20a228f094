"""Benchmark 6 for the runner: benchmarks/serving.py's measurements, as rows of the results table.

Targets, each against `mlflow models serve` measured in the same run on the same champion: single-row p50 at most
1/10 of MLflow's (ratio mlflow p50 / ours >= 10) and at least 3x its rows/s at 1, 8 and 32 clients; with 64 clients
of single-row requests at least 1,500 rows/s and p99 at most 100 ms; one keep-alive client's p50 under 5 ms while 300
connections trickle their request heads a byte a second (reopened as the header deadline closes them); peak RSS of
the server at most 600 MB while 64 clients send 1 MB requests (retrying after a 503 as Retry-After says). The
in-process cost of one row on the row path (request parsing and validation, the declared row-wise features with the
published weather, the compiled champion, the answer's JSON), against the table path (`core.featurize
.build_features`, `core.model.scores`) and the bare `predict_proba`, says where time goes.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import Result, median, quiet_libraries, temporary_root

P50_TARGET, ROWS_TARGET = 10.0, 3.0
CROWD_ROWS_TARGET, CROWD_P99_TARGET = 1500.0, 100.0
SLOW_P50_TARGET = 5.0
PEAK_MB_TARGET = 600.0


def single_row_costs(day: str, count: int = 200) -> dict[str, float]:
    """Median ms, in-process, for one flight, on the server's own code: the row path (parse_request and the request
    schema, the declared row-wise `row` with the weather index of a refreshed LookupStore, the compiled champion,
    the answer as JSON) and the table path (`core.featurize.build_features` with the published weather, `scores`),
    and the bare predict_proba on the ready feature row (what MLflow's server calls)."""
    from benchmarks.serving import day_flights, flights_system
    from mlsys_assets.core.featurize import build_features, feature_matrix
    from mlsys_assets.core.model import scores
    from mlsys_assets.core.online import online_dir
    from mlsys_assets.core.rowmodel import compile_pipeline
    from mlsys_assets.core.server.lookups import LookupStore
    from mlsys_assets.core.server.protocol import parse_request
    from mlsys_assets.core.server.schema import RequestSchema
    from mlsys_assets.resources import MlflowStore
    from mlsys_assets.systems.flights.features import REQUEST_COLUMNS, row

    system = flights_system()
    registry = MlflowStore.from_env().registry(system)
    registry.activate()
    model = registry.load(registry.alias_version("champion"))
    compiled = compile_pipeline(model)
    if compiled is None:
        raise RuntimeError("the champion did not compile for the row path")
    flights = day_flights(day)[list(REQUEST_COLUMNS)]
    store = LookupStore(system, online_dir())  # as the server opens it
    store.refresh()
    schema = RequestSchema.of(system)
    bodies = [json.dumps({"dataframe_records": json.loads(flights.iloc[[i]].to_json(orient="records"))}).encode()
              for i in range(len(flights))]
    names = ("parse + validate", "row features", "compiled model", "answer JSON", "build_features", "scores",
             "bare predict_proba")
    timings: dict[str, list[float]] = {name: [] for name in names}
    # The paths in separate loops: scikit-learn's OpenMP threads keep spinning for a while after a predict_proba,
    # which would slow whatever Python runs next on a 2-core machine (the server's row path never calls it).
    for i in range(count):
        began = time.perf_counter()
        parsed = parse_request(bodies[i % len(bodies)], "application/json", 10_000, schema.required)
        rows = schema.rows(parsed.records, parsed.columns, parsed.text)
        validated = time.perf_counter()
        features = row(rows.records[0], {"weather": store.index("weather")})
        built = time.perf_counter()
        value = compiled.probability(features)
        scored = time.perf_counter()
        json.dumps({"predictions": [{"probability": value, "label": int(value >= 0.5), "model_version": "1",
                                     "model_name": system.model_name, "fallback": False, "request_id": "x" * 32,
                                     "flight_id": features["flight_id"]}]}, separators=(",", ":"))
        answered = time.perf_counter()
        if i:  # the first call warms caches
            for name, ms in zip(names, (validated - began, built - validated, scored - built, answered - scored),
                                strict=False):
                timings[name].append(ms * 1000)
    context = {"weather": store.frames("weather", [day])}
    for i in range(min(count, 50)):
        began = time.perf_counter()
        table = build_features(system, flights.iloc[[i % len(flights)]], context)
        built = time.perf_counter()
        scores(system, model, table)
        scored = time.perf_counter()
        matrix = feature_matrix(system, table)
        ready = time.perf_counter()
        model.predict_proba(matrix)
        done = time.perf_counter()
        if i:
            timings["build_features"].append((built - began) * 1000)
            timings["scores"].append((scored - built) * 1000)
            timings["bare predict_proba"].append((done - ready) * 1000)
    return {k: median(v) for k, v in timings.items()}


def run(quick: bool = False) -> list[Result]:
    from benchmarks import serving

    quiet_libraries()
    parser = argparse.ArgumentParser()
    serving.add_arguments(parser)
    args = parser.parse_args([])
    if quick:
        args.requests, args.crowd_requests, args.slow_seconds, args.big_seconds = 100, 600, 11.0, 8.0
    with temporary_root("mlsys-bench-serving-") as root:
        home = root / "home"
        print("  serving: preparing a home with a champion (two days, retraining) ...", flush=True)
        began = time.monotonic()
        serving.prepare_home(home)
        print(f"  serving: home prepared in {time.monotonic() - began:.0f} s", flush=True)
        measured = serving.measure(home, args)
        if measured is None:
            raise RuntimeError("no @champion in the serving benchmark's home")
        began = time.monotonic()
        costs = single_row_costs(args.day)
        print(f"  serving: in-process costs measured in {time.monotonic() - began:.0f} s", flush=True)
    return results(measured, costs, args)


def _n(x: float) -> str:
    return f"{x:,.0f}"


def results(m, costs: dict[str, float] | None, args: argparse.Namespace) -> list[Result]:
    from benchmarks.serving import OURS, ROUNDS, THEIRS

    out = []
    for clients, a, b in zip(m.levels, m.results[OURS], m.results[THEIRS], strict=True):
        p50_ratio, rows_ratio = b.p50_ms / a.p50_ms, a.rows_per_s / b.rows_per_s
        met = p50_ratio >= P50_TARGET and rows_ratio >= ROWS_TARGET
        why = "" if met else _latency_why(a, b, clients, costs)
        out.append(Result(
            f"6. serving, {clients} client{'s' if clients > 1 else ''}",
            f"p50 {a.p50_ms:.1f} ms (p99 {a.p99_ms:.1f}), {_n(a.rows_per_s)} rows/s",
            f"mlflow models serve: p50 {b.p50_ms:.1f} ms (p99 {b.p99_ms:.1f}), {_n(b.rows_per_s)} rows/s",
            p50_ratio, f"p50 ratio >= {P50_TARGET:.0f}x and rows/s >= {ROWS_TARGET:.0f}x (rows/s ratio "
                       f"{rows_ratio:.2f}x)", met, why))
    out[0].details += [
        f"ratio column: mlflow p50 / mlsys p50 (above 1: mlsys serve is faster); {args.requests} single-row "
        f"requests per level and server in {ROUNDS} alternating rounds, keep-alive connections, one "
        f"process and worker per server, clients on threads spread over up to {args.processes} client processes on "
        f"the same machine; model version {m.version}, {m.flights} flights of {args.day}; server settings: "
        + ", ".join(f"{k} {v}" for k, v in m.settings.items()),
        f"one {m.batch_rows}-row request: mlsys {m.extras[OURS]['batch_ms']:.1f} ms, mlflow "
        f"{m.extras[THEIRS]['batch_ms']:.1f} ms; start to first /ping: mlsys {m.extras[OURS]['start_s']:.1f} s, "
        f"mlflow {m.extras[THEIRS]['start_s']:.1f} s",
        f"the two servers agree on {_agreement(m.answers)} labels (P > 0.5) of the same flights"]
    if costs:
        out[0].details.append("in-process, one row (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                                                costs.items()))
    out.append(_crowd(m, costs))
    out.append(_slow(m))
    out.append(_big(m))
    return out


def _latency_why(a, b, clients: int, costs: dict[str, float] | None) -> str:
    row_path = "" if not costs else (
        f"of our p50 {a.p50_ms:.2f} ms, the row path's own Python is {sum(costs[k] for k in ROW_PATH):.2f} ms "
        f"in-process (" + ", ".join(f"{k} {costs[k]:.2f}" for k in ROW_PATH) + ") and the client's http.client "
        f"{1000 * a.client_cpu_s / max(a.requests, 1):.2f} ms of CPU a request; ")
    return (f"{row_path}the rest is the server's HTTP stack (uvicorn's httptools protocol, Starlette) and the "
            f"prediction log's thread, woken by every answer, taking the interpreter lock in turn with the event "
            f"loop; MLflow's p50 is {b.p50_ms:.1f} ms (at {clients} client{'s' if clients > 1 else ''}: "
            f"{1000 / a.rows_per_s:.2f} ms of wall time per answered row against MLflow's "
            f"{1000 / b.rows_per_s:.1f} ms)")


ROW_PATH = ("parse + validate", "row features", "compiled model", "answer JSON")


def _crowd(m, costs: dict[str, float] | None) -> Result:
    from benchmarks.serving import OURS, THEIRS

    a, b = m.crowd[OURS], m.crowd[THEIRS]
    cpu = m.cpu[OURS]
    met = a.rows_per_s >= CROWD_ROWS_TARGET and a.p99_ms <= CROWD_P99_TARGET
    per_row = 1000 * cpu.cores / a.rows_per_s  # CPU ms of the server per answered row
    clients_cores = a.client_cpu_s / a.seconds
    others = max(cpu.machine_cores - cpu.cores - clients_cores, 0.0)
    why = ""
    if not met:
        python = sum(costs[k] for k in ROW_PATH) if costs else 0.0
        why = (f"the server is one process whose Python runs under one interpreter lock: {per_row:.2f} ms of its "
               f"CPU per answered row, so one full core answers at most ~{1000 / per_row:,.0f} rows/s, and it used "
               f"{cpu.cores:.2f} cores (the machine {cpu.machine_cores:.2f} of {_cpus()}: clients {clients_cores:.2f},"
               f" other processes {others:.2f}; the rest of the server's wall time its threads waited for a CPU or "
               f"for the lock). Of the {per_row:.2f} ms, the row path's own Python is {python:.2f} ms in-process (" +
               (", ".join(f"{k} {costs[k]:.2f}" for k in ROW_PATH) if costs else "not measured") +
               f"); the other {max(per_row - python, 0):.2f} ms is the HTTP stack (uvicorn's httptools "
               f"protocol with the header deadline, Starlette's routing and responses, the asyncio loop), the "
               f"request id and the prediction log's records, built and written by its thread. "
               f"{_n(CROWD_ROWS_TARGET)} rows/s needs at most {1000 / CROWD_ROWS_TARGET:.2f} ms a row")
    return Result(
        f"6. serving, {m.crowd_clients} clients",
        f"{_n(a.rows_per_s)} rows/s, p50 {a.p50_ms:.1f} ms, p99 {a.p99_ms:.1f} ms",
        f"mlflow models serve: {_n(b.rows_per_s)} rows/s, p50 {b.p50_ms:.0f} ms, p99 {b.p99_ms:.0f} ms",
        a.rows_per_s / b.rows_per_s, f">= {_n(CROWD_ROWS_TARGET)} rows/s and p99 <= {CROWD_P99_TARGET:.0f} ms "
                                     f"(ratio: rows/s against MLflow's)", met, why,
        [f"{m.crowd_clients} keep-alive clients of single-row requests over {a.processes} client processes, two "
         f"rounds per server ({len(a.latencies_ms)} requests to mlsys serve, {len(b.latencies_ms)} to MLflow's); "
         f"mlsys serve used {cpu.cores:.2f} cores ({per_row:.2f} ms CPU per row), its clients {clients_cores:.2f}, "
         f"the machine {cpu.machine_cores:.2f} of {_cpus()}; mlflow models serve used {m.cpu[THEIRS].cores:.2f} "
         f"cores"])


def _slow(m) -> Result:
    from benchmarks.serving import OURS, THEIRS

    a, stats = m.slow[OURS], m.slow_stats[OURS]
    b, their_stats = m.slow[THEIRS], m.slow_stats[THEIRS]
    met = a.p50_ms < SLOW_P50_TARGET and stats.min_open >= stats.wanted * 0.9
    why = "" if met else (f"p50 {a.p50_ms:.2f} ms (p99 {a.p99_ms:.1f}) against {m.plain[OURS].p50_ms:.2f} ms without "
                          f"the slow connections" + ("" if stats.min_open >= stats.wanted * 0.9 else
                                                     f"; only {stats.min_open} were open at the lowest"))
    ages = sorted(stats.cut_ages_s)
    return Result(
        f"6. serving, 1 client among {stats.wanted} slow connections",
        f"p50 {a.p50_ms:.2f} ms (p99 {a.p99_ms:.2f}), {stats.cut_by_deadline} slow connections cut by the "
        f"{m.header_timeout:g} s header deadline",
        f"the same client without them: p50 {m.plain[OURS].p50_ms:.2f} ms; mlflow models serve among them: p50 "
        f"{b.p50_ms:.1f} ms ({their_stats.cut_by_deadline} cut)",
        a.p50_ms / m.plain[OURS].p50_ms, f"p50 < {SLOW_P50_TARGET:.0f} ms (ratio: against no slow connections)",
        met, why,
        [f"{stats.wanted} connections each sending a request head one byte a second (a head longer than the run), "
         f"from a separate process, reopened at once when closed; one keep-alive client measured for "
         f"{a.seconds:.0f} s ({len(a.latencies_ms)} requests), MLflow's for {b.seconds:.0f} s "
         f"({len(b.latencies_ms)})",
         f"mlsys serve: {stats.opened} opened, {stats.cut_by_deadline} cut by the deadline (after "
         f"{ages[0] if ages else 0:.1f}-{ages[-1] if ages else 0:.1f} s), {stats.closed_early} closed sooner, "
         f"{stats.answered} answered, {stats.connect_failures} connects failed; at least {stats.min_open} open "
         f"throughout",
         f"mlflow models serve (uvicorn's defaults): {their_stats.opened} opened, {their_stats.cut_by_deadline} cut "
         f"after 10 s or more, {their_stats.closed_early} closed sooner, at least {their_stats.min_open} open; p50 "
         f"{b.p50_ms:.1f} ms against {m.plain[THEIRS].p50_ms:.1f} ms without them"])


def _big(m) -> Result:
    from benchmarks.serving import OURS, THEIRS

    a, b = m.big[OURS], m.big[THEIRS]
    mem, their = m.memory[OURS], m.memory[THEIRS]
    met = mem["peak_mb"] <= PEAK_MB_TARGET
    ok, busy = a.statuses.get(200, 0), a.statuses.get(503, 0)
    other = {k: v for k, v in a.statuses.items() if k not in (200, 503)}
    why = ""
    if not met:
        why = (f"peak {mem['peak_mb']:.0f} MB from {mem['before_mb']:.0f} MB before the run "
               f"(+{mem['peak_mb'] - mem['before_mb']:.0f} MB; 2 s after: {mem['after_mb']:.0f} MB): {ok} of "
               f"{a.requests} requests answered, {busy} attempts refused with 503")
        if a.busy.get("rows"):
            why += (f"; {a.busy['rows']} of the 503s named the rows in flight, a limit the server checks only once "
                    f"it has read and parsed the body (up to {m.settings.get('max in flight', '?')} in flight: the "
                    f"bytes admit ~{bytes_admitted(m):.0f} bodies of this size while the rows admit "
                    f"~{rows_admitted(m):.0f}), so most of what it parsed, it then refused, and the parsed rows "
                    f"of every admitted body are in memory at once")
        elif a.busy.get("bytes"):
            why += f" ({a.busy['bytes']} by the bytes in flight, before reading the body)"
    def served(o) -> str:
        return (f"{o.statuses.get(200, 0)} of {o.requests} requests answered (200), {o.statuses.get(503, 0)} "
                f"attempts refused (503), {_n(o.rows_per_s)} rows/s over "
                f"{o.seconds:.1f} s; answered requests p50 {o.p50_ms:,.0f} ms, p99 {o.p99_ms:,.0f} ms (from the "
                f"first attempt: p50 {o.percentile(50, o.end_to_end_ms):,.0f} ms, p99 "
                f"{o.percentile(99, o.end_to_end_ms):,.0f} ms)")

    return Result(
        f"6. serving, {a.clients} clients x {mem['body_mb']:.2f} MB requests",
        f"peak RSS {mem['peak_mb']:.0f} MB (after: {mem['after_mb']:.0f} MB); {ok} of {a.requests} requests "
        f"answered (200), {busy} attempts refused (503)",
        f"mlflow models serve: peak RSS {their['peak_mb']:.0f} MB (after: {their['after_mb']:.0f} MB)",
        mem["peak_mb"] / their["peak_mb"], f"peak RSS <= {PEAK_MB_TARGET:.0f} MB (ratio: against MLflow's)", met,
        why,
        [f"{a.clients} clients over {a.processes} processes, each sending one request of {m.big_rows:,} landed "
         f"flight rows with their flight_id ({mem['body_mb']:.2f} MB, dataframe_split; MLflow gets the same "
         f"flights' feature rows, {their['body_mb']:.2f} MB), retried after a 503 once its Retry-After has "
         f"passed, no new attempt after {m.big_seconds:g} s",
         f"mlsys serve: {served(a)}; 503s by the limit named: "
         f"{', '.join(f'{k} {v}' for k, v in a.busy.items()) or 'none'}" + (f"; other: {other}" if other else ""),
         f"mlflow models serve: {served(b)}",
         f"RSS (MB): mlsys serve before {mem['before_mb']:.0f}, peak {mem['peak_mb']:.0f} (VmHWM {mem['hwm_mb']:.0f}, "
         f"polled every 20 ms {mem['polled_mb']:.0f}), 2 s after {mem['after_mb']:.0f}; MLflow's "
         f"{their['processes']:.0f} processes (CLI and uvicorn) summed: before {their['before_mb']:.0f}, peak "
         f"{their['peak_mb']:.0f}, after {their['after_mb']:.0f}"])


def bytes_admitted(m) -> float:
    limit = int(m.settings["max in flight"].split()[0])
    return limit / (m.memory["mlsys serve"]["body_mb"] * 1e6)


def rows_admitted(m) -> float:
    return int(m.settings["max in flight"].split(", ")[1].split()[0]) / m.big_rows


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _agreement(answers) -> str:
    from benchmarks.serving import OURS, THEIRS

    ours = [json.loads(a)["predictions"][0]["probability"] for a in answers[OURS]]
    theirs = [json.loads(a)["predictions"][0] for a in answers[THEIRS]]
    same = sum(int(p > 0.5) == int(label) for p, label in zip(ours, theirs, strict=False))
    return f"{same}/{min(len(ours), len(theirs))}"
