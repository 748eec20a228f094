"""Benchmark 4: a representative stretch of days with a champion through the whole system, rows/s end to end,
where the time went, and the full year extrapolated from it (or, with --full-year, really replayed).

The home gets 13 days of history (the first through the real daily job, the rest by the fast fill) and trains
its first champion on the 14th day through the retraining sensor (bootstrap floor lowered to 0.5, so the
stretch always has a champion); then the stretch (14 days by default) runs as `mlsys demo` runs it, with the
demo's automation policy (failed drift or performance checks retrain, cooldown 7 days). Per stage: each step's
durations from the instance's step stats, Dagster's per-run overhead, sensor and automation evaluation. The
in-run baseline is the steps' own work: the rows/s if orchestration cost nothing.
`--full-year` replays 2013-01-01 .. 12-31 from an empty home exactly as `mlsys demo --full-year` (~20 minutes;
benchmarks/FULL_YEAR.md).

    .venv/bin/python -m benchmarks.replay [--quick] [--days 14] [--full-year]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import Result, quiet_libraries, temporary_root

HISTORY_START = "2013-04-01"


def run(quick: bool = False, days: int = 14, full_year: bool = False,
        year: tuple[str, str] = ("2013-01-01", "2013-12-31")) -> list[Result]:
    """The stretch, or with `full_year` every day of `year` from an empty home (a shorter range tests that path)."""
    from benchmarks.chain import Site, declared_system
    from benchmarks.per_day import bootstrap, settings
    from mlsys_assets.core.landing import day_range, land_default_data

    quiet_libraries()
    history = 5 if quick else 13
    stretch_days = 3 if quick else days
    with temporary_root("mlsys-bench-replay-") as root:
        feed = root / "feed"
        if full_year:
            calendar = day_range(*year)
            land_default_data(declared_system(), feed, calendar[0], calendar[-1])
            site = Site(root / "home", feed)  # the demo's settings, nothing lowered
            site.start()
            stretch = calendar
            setup_seconds = 0.0
        else:
            calendar = day_range(HISTORY_START, "2013-12-31")[:history + 1 + stretch_days]
            land_default_data(declared_system(), feed, calendar[0], calendar[-1])
            site = Site(root / "home", feed, settings(history, retrain_on_checks=True))
            began = time.perf_counter()
            bootstrap(site, calendar, history)
            setup_seconds = time.perf_counter() - began
            stretch = calendar[history + 1:]
        print(f"  replay: {'full year' if full_year else f'stretch of {len(stretch)} days'} "
              f"({stretch[0]} .. {stretch[-1]})", flush=True)
        began = time.perf_counter()
        costs = []
        for day in stretch:
            cost = site.day(day)
            costs.append(cost)
            print(f"  replay: {cost.describe()}" + ("  RETRAINED" if cost.retrained else ""), flush=True)
        wall = time.perf_counter() - began
    return [summarize(costs, wall, setup_seconds, full_year)]


def summarize(costs, wall: float, setup_seconds: float, full_year: bool) -> Result:
    from benchmarks.chain import stage_totals

    flights = sum(c.flights for c in costs)
    step_seconds = sum(c.step_seconds for c in costs)
    stages = sorted(stage_totals(costs).items(), key=lambda kv: -kv[1])
    retrained = sum(c.retrained for c in costs)
    runs = sum(len(c.runs) for c in costs)
    mean_day = wall / len(costs)
    details = [f"{len(costs)} days {costs[0].day} .. {costs[-1].day}: {flights:,} flights in {wall:.0f} s "
               f"({mean_day:.2f} s a day, {runs} runs, {retrained} retraining(s))"
               + (f"; setup (history, first champion) {setup_seconds:.0f} s, not counted" if not full_year else ""),
               "where the time went (s, share of the stretch): " + ", ".join(
                   f"{k} {v:.1f} ({v / wall:.0%})" for k, v in stages if v >= 0.05)]
    if full_year:
        figure = (f"{flights / wall:,.0f} flights/s end to end ({len(costs)} days replayed, "
                  f"{costs[0].day} .. {costs[-1].day}, {wall / 60:.1f} min)")
    else:
        year = mean_day * 365
        details.append(f"EXTRAPOLATED, not measured: all of 2013 at this stretch's mean day ({mean_day:.2f} s, "
                       f"retrainings at its rate) = {year / 60:.0f} min; days before the first champion are cheaper "
                       f"(no drift or live performance), retrainings more or less frequent than in the stretch move "
                       f"it by ~15-30 s each. `python -m benchmarks --only replay --full-year` measures it.")
        figure = (f"{flights / wall:,.0f} flights/s end to end ({len(costs)} days with a champion; full year "
                  f"extrapolated {year / 60:.0f} min)")
    return Result("4. full-year replay" if full_year else "4. replay stretch", figure,
                  f"{flights / step_seconds:,.0f} flights/s (the steps' own work only)", step_seconds / wall,
                  "reported (no target)", None, "", details)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="5 days of history, 3 days measured")
    parser.add_argument("--days", type=int, default=14, help="days in the measured stretch")
    parser.add_argument("--full-year", action="store_true", help="replay all of 2013 (about 20 minutes)")
    args = parser.parse_args(argv)
    from benchmarks.report import print_table

    print_table(run(args.quick, args.days, args.full_year), details=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
