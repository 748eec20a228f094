"""Benchmark 5: rows/s of batch scoring's path against the bare scikit-learn pipeline on the same rows.

A temporary home gets 10 days of features and a champion (the real `flights_retraining` job: 200 boosting
iterations, 31 leaves, as in production). Measured: `core.model.scores(system, model, features)` on one day's
`flights.features` rows as `batch_predictions` reads them, the model loaded from the MLflow registry
(`models:/flight_delay/<champion>`), i.e. the feature-matrix conversion plus `predict_proba`. Baseline: the
same loaded pipeline's `predict_proba` on the same rows already as a feature matrix. The two alternate; medians.
Also reported: the whole `batch_predictions` step (registry lookups, model load, warehouse write) per day.

    .venv/bin/python -m benchmarks.scoring [--quick]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import SILENT, Result, median, quiet_libraries, temporary_root

TARGET = 0.8
SETTINGS = {"MLSYS_FLIGHTS_FLOOR": "0.5", "MLSYS_FLIGHTS_HOLDOUT": "3", "MLSYS_RETRAIN_ON_CHECKS": "false"}


def _best_of(function, repetitions: int) -> list[float]:
    times = []
    for _ in range(repetitions):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return times


def run(quick: bool = False) -> list[Result]:
    from benchmarks.chain import Site, declared_system
    from mlsys_assets.core.featurize import feature_matrix
    from mlsys_assets.core.landing import day_range, land_default_data
    from mlsys_assets.core.model import scores
    from mlsys_assets.core.warehouse import read_days
    from mlsys_assets.resources import MlflowStore, Warehouse

    quiet_libraries()
    rounds = 5 if quick else 30
    days = day_range("2013-03-01", "2013-03-10")
    with temporary_root("mlsys-bench-scoring-") as root:
        feed = root / "feed"
        land_default_data(declared_system(), feed, days[0], days[-1])
        site = Site(root / "home", feed, SETTINGS)
        system = site.system
        site.seed(days[0])
        site.fill(days[1:10])
        retraining = site.defs.resolve_job_def(site.names.job("retraining")).execute_in_process(
            instance=site.instance, run_config=SILENT, raise_on_error=False)
        registry = MlflowStore.from_env().registry(system)
        registry.activate()
        version = registry.alias_version("champion")
        if not retraining.success or version is None:
            raise RuntimeError("the retraining job did not produce a champion")
        load_s = _best_of(lambda: registry.load(version), 3)
        model = registry.load(version)
        day = days[9]
        key = system.features.id_column
        with Warehouse.from_env().get_connection(system.name) as con:
            features = read_days(con, "features", [day], order_by=[key])
            month = read_days(con, "features", days[:10], order_by=[key])
        figures = {}
        for label, frame in (("one day", features), ("10 days", month)):
            matrix = feature_matrix(system, frame)
            model.predict_proba(matrix)  # warm-up
            path, bare = [], []
            for _ in range(rounds):
                path += _best_of(lambda frame=frame: scores(system, model, frame), 1)
                bare += _best_of(lambda matrix=matrix: model.predict_proba(matrix)[:, 1], 1)
            figures[label] = (len(frame), median(path), median(bare))
            print(f"  scoring: {label} ({len(frame)} rows): scores {median(path) * 1000:.1f} ms, "
                  f"bare predict_proba {median(bare) * 1000:.1f} ms", flush=True)
        # the whole step, as automation runs it, rescoring the last history days with the champion
        job = site.defs.resolve_implicit_global_asset_job_def()
        step_s = []
        asset = site.names.key("batch_predictions")  # flights/batch_predictions, step flights__batch_predictions
        for scored_day in days[8:10] if quick else days[7:10]:
            result = job.execute_in_process(instance=site.instance, partition_key=scored_day, run_config=SILENT,
                                            asset_selection=[asset], raise_on_error=False)
            stats = site.instance.get_run_step_stats(result.run_id)
            step_s += [s.end_time - s.start_time for s in stats if s.step_key == asset.to_python_identifier()]
    rows, path_s, bare_s = figures["one day"]
    ratio = bare_s / path_s  # rows/s of the path over rows/s of the bare pipeline
    big_rows, big_path, big_bare = figures["10 days"]
    why = ""
    if ratio < TARGET:
        why = (f"on {rows} rows the path's fixed cost (feature_matrix: the declared columns, typed) is "
               f"{(path_s - bare_s) * 1000:.1f} ms of {path_s * 1000:.1f} ms; on {big_rows} rows the ratio is "
               f"{big_bare / big_path:.2f}")
    details = [f"champion version {version}, loaded from the MLflow registry in {median(load_s):.2f} s "
               f"(median of 3 `registry.load`)",
               f"one day ({rows} rows): scores {path_s * 1000:.1f} ms = {rows / path_s:,.0f} rows/s; "
               f"bare predict_proba {bare_s * 1000:.1f} ms = {rows / bare_s:,.0f} rows/s ({rounds} alternating rounds)",
               f"10 days ({big_rows} rows): scores {big_path * 1000:.1f} ms = {big_rows / big_path:,.0f} "
               f"rows/s; bare {big_bare * 1000:.1f} ms = {big_rows / big_bare:,.0f} rows/s; "
               f"ratio {big_bare / big_path:.2f}",
               f"the whole batch_predictions step per day (step stats, {len(step_s)} days): median "
               f"{median(step_s):.2f} s, of which scoring {path_s:.3f} s and loading the champion from the "
               f"registry ~{median(load_s):.2f} s (the step loads it on every run)"]
    return [Result("5. batch scoring", f"{rows / path_s:,.0f} rows/s (scores, {rows} rows)",
                   f"{rows / bare_s:,.0f} rows/s (bare predict_proba)", ratio, f">= {TARGET}x",
                   ratio >= TARGET, why, details)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scoring", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    from benchmarks.report import print_table

    print_table(run(args.quick), details=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
