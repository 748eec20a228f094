"""Benchmark 7: candidate training and MLflow logging on 60 days of features (the `flights_retraining` job).

A temporary home gets 60 days of flights.features (the fast fill of benchmarks/history.py); the real
`flights_retraining` job then runs in-process three times (the first pays the step's lazy imports and MLflow's first
model logging in this process; the figure is the median of the two warm runs, and what a fresh run worker
process would add in imports is measured in a subprocess). Inside `candidate_model`, the calls that fit, score
and log are timed by wrapping them, so its time splits into fitting, holdout scoring, MLflow logging and the
rest. Baseline: the bare `fit_pipeline` on the same train split, outside Dagster and MLflow.

    .venv/bin/python -m benchmarks.training [--quick]
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.common import SILENT, Result, median, quiet_libraries, temporary_root

SETTINGS = {"MLSYS_FLIGHTS_FLOOR": "0.5", "MLSYS_RETRAIN_ON_CHECKS": "false"}
# (module, attribute, category): looked up at call time by candidate_model, so wrapping the attribute times them
TIMED = (
    ("mlsys_assets.core.model", "fit_pipeline", "fit"),
    ("mlsys_assets.core.model", "scores", "holdout scoring and metrics"),
    ("mlsys_assets.core.evaluation", "metrics", "holdout scoring and metrics"),
    ("mlflow", "start_run", "MLflow: start and end the run"),
    ("mlflow.tracking.fluent", "end_run", "MLflow: start and end the run"),
    ("mlflow", "log_params", "MLflow: params and metrics"),
    ("mlflow", "log_metrics", "MLflow: params and metrics"),
    ("mlflow.data", "from_pandas", "MLflow: datasets, from_pandas (digest, schema, profile)"),
    ("mlflow", "log_input", "MLflow: datasets, log_input"),
    ("mlflow.models", "infer_signature", "MLflow: model (signature, skops types, log_model)"),
    ("mlsys_assets.core.registry", "trusted_types", "MLflow: model (signature, skops types, log_model)"),
    ("mlsys_assets.core.registry", "pip_requirements", "MLflow: model (signature, skops types, log_model)"),
    ("mlflow.sklearn", "log_model", "MLflow: model (signature, skops types, log_model)"),
)


@contextmanager
def timed_calls() -> Iterator[list[tuple[str, float, float]]]:
    """Wrap TIMED; yields the list of (category, start, end) wall-clock times of every call made meanwhile.
    Nested calls (end_run inside start_run's context, say) are counted once, by the outermost."""
    calls: list[tuple[str, float, float]] = []
    depth = [0]
    originals = []
    for module_name, attribute, category in TIMED:
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)

        def wrapper(*args, __original=original, __category=category, **kwargs):
            depth[0] += 1
            began = time.time()
            try:
                return __original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    calls.append((__category, began, time.time()))

        setattr(module, attribute, wrapper)
        originals.append((module, attribute, original))
    try:
        yield calls
    finally:
        for module, attribute, original in originals:
            setattr(module, attribute, original)


def run(quick: bool = False) -> list[Result]:
    from benchmarks.chain import Site, declared_system
    from mlsys_assets.core.landing import day_range, land_default_data

    quiet_libraries()
    window, warm_runs = (20, 1) if quick else (60, 2)
    days = day_range("2013-03-01", "2013-12-31")[:window]
    settings = {**SETTINGS, "MLSYS_FLIGHTS_WINDOW": str(window)}
    with temporary_root("mlsys-bench-training-") as root:
        feed = root / "feed"
        land_default_data(declared_system(), feed, days[0], days[-1])
        site = Site(root / "home", feed, settings)
        site.seed(days[0])
        site.fill(days[1:])
        job = site.defs.resolve_job_def(site.names.job("retraining"))
        candidate_step = site.names.key("candidate_model").to_python_identifier()  # flights__candidate_model
        runs = []
        for number in range(1 + warm_runs):
            with timed_calls() as calls:
                began = time.perf_counter()
                result = job.execute_in_process(instance=site.instance, run_config=SILENT, raise_on_error=False)
                wall = time.perf_counter() - began
            steps = {s.step_key: s for s in site.instance.get_run_step_stats(result.run_id)}
            candidate = steps[candidate_step]
            spent: dict[str, float] = defaultdict(float)
            for category, start, end in calls:
                if candidate.start_time <= start and end <= candidate.end_time + 0.5:
                    spent[category] += end - start
            seconds = candidate.end_time - candidate.start_time
            spent["rest (read the training set, Dagster events, ...)"] = max(0.0, seconds - sum(spent.values()))
            runs.append({"wall": wall, "candidate": seconds, "spent": dict(spent), "cold": number == 0,
                         "steps": {k: s.end_time - s.start_time for k, s in steps.items()}})
            print(f"  training: run {number + 1} ({'first' if number == 0 else 'warm'}): job {wall:.1f} s, "
                  f"candidate_model {seconds:.1f} s: " + ", ".join(f"{k} {v:.2f}" for k, v in spent.items()),
                  flush=True)
        train = _train_split(site)
        from mlsys_assets.core.model import fit_pipeline

        imports = _fresh_import_seconds()
        bare = []
        for _ in range(2):
            began = time.perf_counter()
            fit_pipeline(site.system, train)  # the declared model's parameters, as candidate_model fits it
            bare.append(time.perf_counter() - began)
    return [summarize(runs, median(bare), len(train), window, imports)]


def _fresh_import_seconds() -> float:
    """What a fresh run worker pays to import what candidate_model uses beyond the code location."""
    import subprocess
    import sys

    code = ("import time; t = time.perf_counter()\n"
            "import mlflow.sklearn, mlflow.models, skops.io, sklearn.ensemble, sklearn.compose\n"
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def _train_split(site):
    from mlsys_assets.core.warehouse import read_frame
    from mlsys_assets.resources import Warehouse

    site.activate()
    when, key = site.system.features.time_column, site.system.features.id_column
    with Warehouse.from_env().get_connection(site.system.name) as con:
        return read_frame(con, f"SELECT * FROM training_set WHERE split = 'train' ORDER BY {when}, {key}")


def summarize(runs: list[dict], bare_fit: float, train_rows: int, window: int, imports: float) -> Result:
    warm = [r for r in runs if not r["cold"]] or runs
    candidate = median([r["candidate"] for r in warm])
    categories = sorted({k for r in warm for k in r["spent"]})
    spent = {k: median([r["spent"].get(k, 0.0) for r in warm]) for k in categories}
    logging_s = sum(v for k, v in spent.items() if k.startswith("MLflow"))
    fit_s = spent.get("fit", 0.0)
    cold = runs[0]
    details = [f"{window} days of features, {train_rows:,} training rows; bare fit_pipeline {bare_fit:.2f} s "
               f"(median of 2, outside Dagster and MLflow)",
               f"candidate_model, warm (median of {len(warm)}): {candidate:.2f} s = "
               + ", ".join(f"{k} {v:.2f} s ({v / candidate:.0%})" for k, v in sorted(spent.items(),
                                                                                   key=lambda kv: -kv[1])),
               f"MLflow logging in total {logging_s:.2f} s ({logging_s / candidate:.0%}), fitting {fit_s:.2f} s "
               f"({fit_s / candidate:.0%})",
               f"first run in the process (imports skops, the estimators; loads MLflow's model flavour): "
               f"candidate_model {cold['candidate']:.2f} s: " + ", ".join(
                   f"{k} {v:.2f}" for k, v in cold["spent"].items()),
               f"a fresh process (the daemon runs each run in one) also imports mlflow.sklearn, skops and the "
               f"estimators: {imports:.2f} s measured in a subprocess",
               "retraining job steps, warm (s): " + ", ".join(
                   f"{k} {median([r['steps'].get(k, 0.0) for r in warm]):.2f}" for k in warm[0]["steps"]),
               f"retraining job wall: first {cold['wall']:.1f} s, warm {median([r['wall'] for r in warm]):.1f} s"]
    return Result("7. training and logging",
                  f"{candidate:.1f} s candidate_model ({window} days; MLflow logging {logging_s / candidate:.0%}, "
                  f"fit {fit_s / candidate:.0%})",
                  f"{bare_fit:.1f} s (bare fit_pipeline)", candidate / bare_fit, "reported (no target)", None,
                  f"the ratio is (fit + logging + rest) / fit: MLflow logging is a fixed cost per candidate "
                  f"({logging_s:.2f} s here: the model, its signature, two datasets), so the ratio rises when the "
                  f"fit is faster (2026-11-29: logging 0.74 s, fit 1.38 s, ratio 1.46x)", details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="20 days and one warm run")
    args = parser.parse_args(argv)
    from benchmarks.report import print_table

    print_table(run(args.quick), details=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
