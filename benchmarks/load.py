"""Benchmark 1: loading the code location in a fresh process, against importing dagster alone.

Each variant is a fresh `python -c ...` subprocess (so nothing is cached in memory; the files are, after one
unmeasured warm-up of each), in a temporary MLSYS_HOME; the variants alternate, medians of the repetitions.
Where the target is missed, `python -X importtime` attributes the difference to the packages it imports.

    .venv/bin/python -m benchmarks.load [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections import defaultdict

from benchmarks.common import Result, median, temporary_home

TARGET = 1.3
VARIANTS = {
    "import dagster": "import dagster",
    "import mlsys_assets.definitions": "import mlsys_assets.definitions",
    "... + resolve the repository": "import mlsys_assets.definitions as d; d.defs.get_repository_def()",
    "... + the snapshot a code server sends": (
        "import mlsys_assets.definitions as d\n"
        "from mlsys_assets.dagster_internal import repository_snapshot\n"
        "repository_snapshot(d.defs.get_repository_def())"),
    # the cyclic garbage collector's pauses grow with the heap the imports build: measured apart
    "import dagster, GC off": "import gc; gc.disable(); import dagster",
    "import mlsys_assets.definitions, GC off": "import gc; gc.disable(); import mlsys_assets.definitions",
}
GC_OFF = "import gc; gc.disable(); "
# what loading must not import (mlsys_tests/test_load.py holds it to that): each is imported where it is used
HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "pandera", "sklearn", "mlflow", "scipy", "matplotlib")


def _time(code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())
    return time.perf_counter() - began


def import_times(statement: str, repetitions: int = 3) -> dict[str, float]:
    """Self time (ms) of every module `statement` imports, summed by top-level package (the project's own
    modules one by one), median of `repetitions` fresh processes under `-X importtime`. The garbage collector is
    off: its pauses would be charged to whichever module happened to trigger them."""
    runs: list[dict[str, float]] = []
    for _ in range(repetitions):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", GC_OFF + statement], check=True,
                              capture_output=True, text=True, env=os.environ.copy())
        by_package: dict[str, float] = defaultdict(float)
        for line in done.stderr.splitlines():
            found = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)", line)
            if found:
                module = found.group(3)
                key = module if module.startswith("mlsys_assets") else module.split(".")[0]
                by_package[key] += int(found.group(1)) / 1000
        runs.append(by_package)
    keys = {k for run in runs for k in run}
    return {k: median([run.get(k, 0.0) for run in runs]) for k in keys}


def heavy_importers(statement: str) -> dict[str, str]:
    """Each of HEAVY that `statement` imports, with the project module that imported it first (and the package in
    between, if any), read off the nesting of `-X importtime`'s report: e.g. {"pandas": "mlsys_assets.metadata"}."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], check=True, capture_output=True,
                          text=True, env=os.environ.copy())
    lines = []  # (depth, module) in the report's order: a module's line follows those of the modules it imported
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+\d+\s+\|\s+\d+\s+\|( *)(\S+)", line)
        if found:
            lines.append((len(found.group(1)) // 2, found.group(2)))
    importers: dict[str, str] = {}
    for number, (depth, module) in enumerate(lines):
        package = module.split(".")[0]
        if package not in HEAVY or package in importers:
            continue
        chain, level = [], depth  # the modules that imported this one, innermost first
        for later_depth, later in lines[number + 1:]:
            if later_depth < level:
                chain.append(later)
                level = later_depth
        ours = next((m for m in chain if m.startswith("mlsys_assets")), None)
        between = [m.split(".")[0] for m in chain[:chain.index(ours)] if m.split(".")[0] != package] if ours else []
        importers[package] = (ours or "?") + (f" through {between[-1]}" if between else "")
    return importers


def run(quick: bool = False) -> list[Result]:
    repetitions = 2 if quick else 5
    with temporary_home("mlsys-bench-load-"):
        for code in VARIANTS.values():  # warm-up: bytecode and file caches, as on any second start
            _time(code)
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for number in range(repetitions):
            order = list(VARIANTS.items())
            for name, code in order if number % 2 == 0 else reversed(order):
                times[name].append(_time(code))
            print("  load: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        baseline = median(times["import dagster"])
        measured = median(times["import mlsys_assets.definitions"])
        ratio = measured / baseline
        why = ""
        details = [f"{name}: median {median(v):.2f} s over {len(v)} fresh processes "
                   f"({', '.join(f'{x:.2f}' for x in v)})" for name, v in times.items()]
        build = subprocess.run([sys.executable, "-c", "import time, mlsys_assets.definitions as d\n"
                                "t = time.perf_counter(); d.build_defs(); print(time.perf_counter() - t)"],
                               check=True, capture_output=True, text=True, env=os.environ.copy())
        details.append(f"build_defs() called again after the import: {float(build.stdout.strip()):.3f} s (the "
                       "import runs it once; the rest of the import is modules)")
        ours, theirs = import_times("import mlsys_assets.definitions"), import_times("import dagster")
        extra = sorted(((ours[p] - theirs.get(p, 0.0), p) for p in ours), reverse=True)
        top = [(ms, package) for ms, package in extra if ms > 5][:8]
        details.append("import time (`-X importtime` with GC off, self ms by package) that `import dagster` alone "
                       "does not spend: " + ", ".join(f"{p} {ms:.0f}" for ms, p in top)
                       + f"; total {sum(ours.values()):.0f} ms vs {sum(theirs.values()):.0f} ms")
        gc_ours, gc_theirs = median(times["import mlsys_assets.definitions, GC off"]), median(
            times["import dagster, GC off"])
        gc_share = (measured - gc_ours) - (baseline - gc_theirs)
        heavy = heavy_importers("import mlsys_assets.definitions")
        imported = ("heavy libraries it imports, each with the project module that imports it first: "
                    + ", ".join(f"{p} ({m})" for p, m in heavy.items()) if heavy
                    else f"it imports none of {', '.join(HEAVY)}")
        details.append(f"import mlsys_assets.definitions: {imported}")
        details.append(f"with the garbage collector off in both processes: {gc_ours:.2f} s vs {gc_theirs:.2f} s = "
                       f"{gc_ours / gc_theirs:.2f}x; GC pauses cost the code location {measured - gc_ours:.2f} s "
                       f"and dagster alone {baseline - gc_theirs:.2f} s")
        if ratio > TARGET:
            why = (f"the code location's import takes {measured - baseline:.2f} s more than dagster's: modules "
                   "dagster does not import (-X importtime, GC off, self time): "
                   + ", ".join(f"{p} {ms:.0f} ms" for ms, p in top[:5])
                   + f"; and about {gc_share:.2f} s more garbage-collector pauses over the bigger heap (with GC off in "
                   f"both: {gc_ours / gc_theirs:.2f}x); {imported}")
    return [Result("1. code location load", f"{measured:.2f} s (import mlsys_assets.definitions, builds defs)",
                   f"{baseline:.2f} s (import dagster)", ratio, f"<= {TARGET}x", ratio <= TARGET, why, details)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="two repetitions instead of five")
    args = parser.parse_args(argv)
    from benchmarks.report import print_table

    print_table(run(args.quick), details=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
