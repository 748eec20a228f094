"""Benchmark 2: the whole daily chain for one new day, with a champion, against a trivial Dagster run.

Measured: one day as `mlsys demo` drives it (landing sensor -> raw -> automation: validated, features, batch
predictions, online weather, feature and prediction drift, the previous day's live performance -> retraining
and alert sensor ticks), on a store with 14 days of history and a champion. Baseline: one run of as many
do-nothing daily asset steps (same `warehouse` pool) on the same instance, in-process executor, same run
config; also the same number of runs shaped like the day's real runs. Measured and baseline alternate. Settings:
the first model's floor is lowered to 0.5 (a champion is guaranteed) and failed checks do not retrain
(MLSYS_RETRAIN_ON_CHECKS=false), so no measured day contains a training (benchmark 4 keeps retraining on).

    .venv/bin/python -m benchmarks.per_day [--quick]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from benchmarks.common import Result, median, quiet_libraries, temporary_root

TARGET = 1.5
EXECUTOR = ("in-process executor (the code location's `in_process_executor`; the daemon stand-in calls "
            "`execute_in_process`: every step in the calling process, one at a time), the project's dagster.yaml "
            "(SQLite run and consolidated event-log storage through mlsys_assets/instance_storage.py: one engine per "
            "storage, synchronous=NORMAL in WAL mode), console logger at CRITICAL as in the demo")


def bootstrap(site, days: list[str], history: int) -> None:
    """`history` days of history before the daemon starts (the first through the real daily job, the rest by
    the fast fill), then one day through the chain, whose retraining-sensor tick trains the first champion."""
    site.seed(days[0])
    site.fill(days[1:history])
    site.start()
    cost = site.day(days[history])
    if not cost.retrained or site.champion() is None:
        raise RuntimeError(f"no champion after the bootstrap day {days[history]}: {cost.describe()}")


def settings(history: int, retrain_on_checks: bool = False) -> dict[str, str]:
    return {"MLSYS_MIN_HISTORY_DAYS": str(history + 1),  # the first training runs on the bootstrap day
            "MLSYS_FLIGHTS_FLOOR": "0.5",  # a first model on 2 weeks of March can miss 0.6; the demo retries
            "MLSYS_RETRAIN_ON_CHECKS": "true" if retrain_on_checks else "false"}


def run(quick: bool = False) -> list[Result]:
    from benchmarks.chain import Site, TrivialRuns, declared_system, event_write_ms
    from mlsys_assets.core.landing import day_range, land_default_data

    quiet_libraries()
    history, warm, measured = (5, 1, 2) if quick else (13, 1, 3)
    days = day_range("2013-03-01", "2013-12-31")[:history + 1 + warm + measured]
    with temporary_root("mlsys-bench-per-day-") as root:
        feed = root / "feed"
        land_default_data(declared_system(), feed, days[0], days[-1])
        site = Site(root / "home", feed, settings(history))
        print(f"  per_day: {history} days of history, bootstrap training on {days[history]} ...", flush=True)
        bootstrap(site, days, history)
        for day in days[history + 1:history + 1 + warm]:
            print(f"  per_day: warm-up {site.day(day).describe()}", flush=True)
        trivial = TrivialRuns(20)
        single, shaped, costs = [], [], []
        for number, day in enumerate(days[history + 1 + warm:]):
            if number % 2:  # alternate which goes first; the baseline takes the previous day's shape
                single.append(trivial.run(site.instance, day, costs[-1].step_count))
                shaped.append(trivial.like(site.instance, day, costs[-1]))
                cost = site.day(day)
            else:
                cost = site.day(day)
                single.append(trivial.run(site.instance, day, cost.step_count))
                shaped.append(trivial.like(site.instance, day, cost))
            costs.append(cost)
            print(f"  per_day: {cost.describe()}; trivial run of {cost.step_count} steps {single[-1]:.2f} s, "
                  f"trivial runs shaped like the day {shaped[-1]:.2f} s", flush=True)
        event_ms = event_write_ms(site.instance)
    return [summarize(costs, single, shaped, event_ms)]


def summarize(costs, single: list[float], shaped: list[float], event_ms: float) -> Result:
    day_s, single_s, shaped_s = median([c.seconds for c in costs]), median(single), median(shaped)
    typical = min(costs, key=lambda c: abs(c.seconds - day_s))  # the median day, for its structure
    steps, runs = typical.step_count, len(typical.runs)
    step_s = median([c.step_seconds for c in costs])
    overhead_s = median([c.run_seconds - c.step_seconds for c in costs])
    sensor_s = median([c.sensor_seconds for c in costs])
    events = median([c.events for c in costs])
    per_step: dict[str, list[float]] = defaultdict(list)
    for cost in costs:
        for run in cost.runs:
            for step, seconds in run.steps.items():
                per_step[step].append(seconds)
    ranked = sorted(((median(v), k) for k, v in per_step.items()), reverse=True)
    ticks: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for cost in costs:
        for name, counted in cost.tick_seconds().items():
            ticks[name].append(counted)
    tick_text = ", ".join(f"{name} {median([c for c, _ in v]):.0f} tick(s) {median([s for _, s in v]):.2f} s"
                          for name, v in ticks.items())
    run_names = ", ".join(r.job.replace("__anonymous_asset_job_", "").replace("__ASSET_JOB", "automation")
                          for r in typical.runs)
    ratio = day_s / single_s
    why = ""
    if ratio > TARGET:
        why = (f"a day is not one run: it is {runs} runs ({run_names}) launched by {len(typical.ticks)} sensor "
               f"ticks. The steps' own work is {step_s:.2f} s ({step_s / single_s:.1f}x the whole trivial run; "
               f"largest {ranked[0][1]} {ranked[0][0]:.2f} s, {ranked[1][1]} {ranked[1][0]:.2f} s); Dagster's "
               f"per-run overhead {overhead_s:.2f} s ({events:.0f} event-log records at {event_ms:.1f} ms a write "
               f"on this disk); sensor evaluation {sensor_s:.2f} s ({tick_text}). Trivial runs shaped like the "
               f"day ({runs} runs, {steps} steps) take {shaped_s:.2f} s: the day is {day_s / shaped_s:.1f}x its "
               "own run structure.")
    details = [f"executor: {EXECUTOR}",
               f"medians over {len(costs)} days: day {day_s:.2f} s; trivial single run of {steps} steps "
               f"{single_s:.2f} s; trivial runs shaped like the day {shaped_s:.2f} s; one event-log write "
               f"{event_ms:.1f} ms",
               f"sensor evaluation per day (median, outside runs): {tick_text}",
               "steps (median s): " + ", ".join(f"{k} {s:.2f}" for s, k in ranked),
               *[c.describe() for c in costs]]
    return Result("2. per-day cost", f"{day_s:.2f} s a day ({runs} runs, {steps} steps, {len(typical.ticks)} ticks)",
                  f"{single_s:.2f} s (1 trivial run, {steps} steps)", ratio, f"<= {TARGET}x",
                  ratio <= TARGET, why, details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.per_day", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer days of history and measured days")
    args = parser.parse_args(argv)
    from benchmarks.report import print_table

    print_table(run(args.quick), details=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
