"""Benchmark 6 for the runner: benchmarks/serving.py's measurement, as rows of the results table.

Targets: p50 at most 1/5 of `mlflow models serve`'s (ratio mlflow p50 / ours >= 5) and at least 3x its rows/s,
at each concurrency level. Single-row requests take the server's row path (`systems.flights.features.row_features`,
then the champion compiled by `core.rowmodel`); the in-process cost of one row on it, against the table path
(`build_features`, `core.model.scores`) and the bare `predict_proba` on a ready feature row, says where time goes.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import Result, median, quiet_libraries, temporary_root

P50_TARGET, ROWS_TARGET = 5.0, 3.0


def single_row_costs(home, day: str, count: int = 50) -> dict[str, float]:
    """Median ms, in-process, for one flight. The row path: row_features (with the weather lookup in the online
    store) and the compiled model. The table path, as the server takes it: build_features (+ the weather lookup
    frame), scores on the built features; and the bare predict_proba on the ready feature row (what MLflow's
    server calls)."""
    import pandas as pd

    from benchmarks.serving import flights_system
    from mlsys_assets.core.featurize import feature_matrix
    from mlsys_assets.core.landing import read_landing_file
    from mlsys_assets.core.model import scores
    from mlsys_assets.core.online import WeatherStore, online_dir, weather_path
    from mlsys_assets.core.rowmodel import compile_pipeline
    from mlsys_assets.resources import LandingZone, MlflowStore
    from mlsys_assets.systems.flights.features import REQUEST_COLUMNS, build_features, row_features, weather_key

    system = flights_system()
    source = system.source("flights")
    registry = MlflowStore.from_env().registry(system)
    registry.activate()
    model = registry.load(registry.alias_version("champion"))
    compiled = compile_pipeline(model)
    if compiled is None:
        raise RuntimeError("the champion did not compile for the row path")
    flights = read_landing_file(LandingZone.from_env().file_for(system, source, day), source).frame
    flights = flights[flights["parse_errors"].isna()][list(REQUEST_COLUMNS)].reset_index(drop=True)
    weather = pd.read_parquet(weather_path(day))
    store = WeatherStore(online_dir())  # as the server opens it
    requests = [{c: (v if isinstance(v, str) else int(v)) for c, v in zip(REQUEST_COLUMNS, values, strict=True)}
                for values in flights.itertuples(index=False)]
    names = ("row_features", "compiled model", "build_features", "scores", "bare predict_proba")
    timings: dict[str, list[float]] = {name: [] for name in names}
    # The paths in separate loops: scikit-learn's OpenMP threads keep spinning for a while after a predict_proba,
    # which would slow whatever Python runs next on a 2-core machine (the server's row path never calls it).
    for i in range(count):
        request = requests[i % len(requests)]
        began = time.perf_counter()
        row = row_features(request, store.find([weather_key(request)]))
        built = time.perf_counter()
        compiled.probability(row)
        scored = time.perf_counter()
        if i:  # the first call warms caches
            timings["row_features"].append((built - began) * 1000)
            timings["compiled model"].append((scored - built) * 1000)
    for i in range(count):
        began = time.perf_counter()
        features = build_features(flights.iloc[[i % len(flights)]], weather)
        built = time.perf_counter()
        scores(system, model, features)
        scored = time.perf_counter()
        matrix = feature_matrix(system, features)
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
    args = argparse.Namespace(day=serving.DAYS[-1], requests=100 if quick else 400,
                              concurrency="1,8,32", batch_rows=500)
    with temporary_root("mlsys-bench-serving-") as root:
        home = root / "home"
        print("  serving: preparing a home with a champion (two days, retraining) ...", flush=True)
        serving.prepare_home(home)
        measured = serving.measure(home, args)
        if measured is None:
            raise RuntimeError("no @champion in the serving benchmark's home")
        costs = single_row_costs(home, args.day)
    ours, theirs = measured.results["mlsys serve"], measured.results["mlflow models serve"]
    results = []
    for clients, a, b in zip(measured.levels, ours, theirs, strict=True):
        p50_ratio, rows_ratio = b.p50_ms / a.p50_ms, a.rows_per_s / b.rows_per_s
        why = ""
        if p50_ratio < P50_TARGET or rows_ratio < ROWS_TARGET:
            scoring = costs["row_features"] + costs["compiled model"]
            server = 1000 / a.rows_per_s
            why = (f"each single-row request takes the row path, {scoring:.2f} ms in-process (row_features "
                   f"{costs['row_features']:.2f} ms, compiled model {costs['compiled model']:.2f} ms); the rest is "
                   f"HTTP, JSON and validation, all Python under one interpreter lock, so {clients} concurrent "
                   f"request{'s' if clients > 1 else ''} take {server:.2f} ms of wall time per answered row "
                   f"against MLflow's {1000 / b.rows_per_s:.1f} ms (one worker, one request at a time)")
        stalls = [f"{name} stalled once or more (p99 {level.p99_ms:.0f} ms against p50 {level.p50_ms:.0f} ms), which "
                  f"its rows/s include" for name, level in (("mlsys serve", a), ("mlflow models serve", b))
                  if level.p99_ms > 10 * level.p50_ms and level.p99_ms > 500]
        met = p50_ratio >= P50_TARGET and rows_ratio >= ROWS_TARGET
        if stalls and not met:
            why = "; ".join(filter(None, [why, *stalls]))
        results.append(Result(
            f"6. serving, {clients} client{'s' if clients > 1 else ''}",
            f"p50 {a.p50_ms:.1f} ms (p99 {a.p99_ms:.1f}), {a.rows_per_s:.0f} rows/s",
            f"mlflow models serve: p50 {b.p50_ms:.1f} ms (p99 {b.p99_ms:.1f}), {b.rows_per_s:.0f} rows/s",
            p50_ratio, f"p50 ratio >= {P50_TARGET:.0f}x and rows/s >= {ROWS_TARGET:.0f}x (rows/s ratio "
                       f"{rows_ratio:.2f}x)",
            met, why, [] if not met else stalls))
    a, b = measured.extras["mlsys serve"], measured.extras["mlflow models serve"]
    same = _agreement(measured.answers)
    results[0].details += [
        f"ratio column: mlflow p50 / mlsys p50 (above 1: mlsys serve is faster); {args.requests} single-row "
        f"requests per level and server in {serving.ROUNDS} alternating rounds, keep-alive connections, one "
        f"process and worker per server, model version {measured.version}, {measured.flights} flights of {args.day}",
        "in-process, one row (median ms): " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()),
        f"one {measured.batch_rows}-row request: mlsys {a['batch_ms']:.1f} ms, mlflow {b['batch_ms']:.1f} ms; "
        f"start to first /ping: mlsys {a['start_s']:.1f} s, mlflow {b['start_s']:.1f} s",
        f"the two servers agree on {same} labels (P > 0.5) of the same flights"]
    return results


def _agreement(answers) -> str:
    import json

    ours = [json.loads(a)["predictions"][0]["probability"] for a in answers["mlsys serve"]]
    theirs = [json.loads(a)["predictions"][0] for a in answers["mlflow models serve"]]
    same = sum(int(p > 0.5) == int(label) for p, label in zip(ours, theirs, strict=False))
    return f"{same}/{min(len(ours), len(theirs))}"
