"""Run the benchmarks, print the results table and write benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks                      # all of them (~12 minutes on the 2-core machine)
    .venv/bin/python -m benchmarks --quick              # a fast smoke run with small sizes (not written)
    .venv/bin/python -m benchmarks --only load,scoring   # a subset (not written unless --output)
    .venv/bin/python -m benchmarks --skip-serving        # without benchmark 6 (saves ~2 minutes)
    .venv/bin/python -m benchmarks --only replay --full-year   # really replay all of 2013 (~20 minutes)

Each benchmark runs in its own Python process, in its own temporary MLSYS_HOME (removed afterwards), one after
the other; every figure is a ratio against a baseline measured in the same process and run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from benchmarks.common import Result, environment_facts

BENCHMARKS = {  # name: module (each has `run(quick, ...) -> list[Result]`)
    "load": "benchmarks.load",
    "per_day": "benchmarks.per_day",
    "scaling": "benchmarks.scaling",
    "replay": "benchmarks.replay",
    "scoring": "benchmarks.scoring",
    "serving": "benchmarks.serving_summary",
    "training": "benchmarks.training",
}
RESULTS = Path(__file__).with_name("RESULTS.md")


def child(name: str, output: Path, quick: bool, full_year: bool, history_days: int, replay_days: int) -> int:
    """Run one benchmark in this process and write its results as JSON."""
    import importlib

    module = importlib.import_module(BENCHMARKS[name])
    options: dict = {}
    if name == "scaling":
        options["big_days"] = history_days
    if name == "replay":
        options.update(full_year=full_year, days=replay_days)
    results = module.run(quick, **options)
    from mlsys_assets.core.files import atomic_write_text

    atomic_write_text(output, json.dumps([r.to_dict() for r in results]))
    return 0


def notes() -> list[str]:
    """How each benchmark measures: the modules' own descriptions."""
    import importlib

    lines = []
    for name, module_name in BENCHMARKS.items():
        doc = (importlib.import_module(module_name).__doc__ or "").strip().split("\n\n")
        text = " ".join(part.replace("\n", " ") for part in doc[:2] if not part.lstrip().startswith(".venv"))
        lines.append(f"- **{name}** (`{module_name}`): {text}")
    from benchmarks import history

    text = " ".join(p.replace("\n", " ") for p in (history.__doc__ or "").strip().split("\n\n"))
    lines.append(f"- **history fill** (`benchmarks.history`, used by scaling, per_day, replay, scoring, training "
                 f"for the days before the measured ones): {text}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast smoke run")
    parser.add_argument("--skip-serving", action="store_true", help="leave out the serving benchmark")
    parser.add_argument("--full-year", action="store_true", help="replay: all of 2013 through the whole system")
    parser.add_argument("--history-days", type=int, default=300, help="scaling: days of history of the big home")
    parser.add_argument("--replay-days", type=int, default=14, help="replay: days measured with a champion")
    parser.add_argument("--output", type=Path, help="where to write the Markdown results (default: "
                                                    "benchmarks/RESULTS.md for a full, non-quick run)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.json, args.quick, args.full_year, args.history_days, args.replay_days)

    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    if args.skip_serving:
        names = [n for n in names if n != "serving"]
    output = args.output or (RESULTS if not args.quick and not args.only else None)
    facts = environment_facts()
    print(f"benchmarks: {', '.join(names)}{' (quick)' if args.quick else ''}; {facts['cpus']} CPUs, load average "
          f"{facts.get('load average at start', '?')}", flush=True)
    began = time.perf_counter()
    results: list[Result] = []
    durations: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        print(f"\n[{name}] ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="mlsys-bench-result-") as folder:
            path = Path(folder) / "result.json"
            command = [sys.executable, "-m", "benchmarks", "--child", name, "--json", str(path),
                       "--history-days", str(args.history_days), "--replay-days", str(args.replay_days)]
            command += ["--quick"] * args.quick + ["--full-year"] * args.full_year
            done = subprocess.run(command)
            if done.returncode == 0 and path.exists():
                results += [Result(**r) for r in json.loads(path.read_text())]
            else:
                results.append(Result(name, "FAILED", "-", None, "-", False,
                                      f"the benchmark process exited with {done.returncode}; see its output"))
        durations[name] = time.perf_counter() - started
        print(f"[{name}] {durations[name]:.0f} s", flush=True)
    seconds = time.perf_counter() - began
    from benchmarks.report import print_table, write

    print_table(results)
    print(f"\ntotal {seconds:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()) + ")")
    if output is not None:
        with suppress(OSError):  # other work on the machine shows here: the ratios alternate, the seconds do not
            facts["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        facts["benchmark seconds"] = ", ".join(f"{k} {v:.0f}" for k, v in durations.items())
        if args.quick or args.only or args.skip_serving:
            facts["run"] = " ".join(["--quick"] * args.quick + [f"--only {','.join(names)}"] * bool(args.only)
                                    + ["--skip-serving"] * args.skip_serving)
        write(output, results, facts, seconds, notes())
        print(f"written: {output}")
    return 0 if all(r.figure != "FAILED" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
