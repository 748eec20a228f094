"""The results table: printed, and written to RESULTS.md with the machine it was measured on."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import Result

COLUMNS = ("benchmark", "figure", "baseline", "ratio", "target", "met")


def _met(result: Result) -> str:
    if result.met is None:
        return "reported"
    return "met" if result.met else "NOT met (see why)"


def _ratio(result: Result) -> str:
    return "-" if result.ratio is None else f"{result.ratio:.3f}x"  # 3 places: 0.796 must not read as 0.80


def rows(results: list[Result]) -> list[tuple[str, ...]]:
    return [(r.benchmark, r.figure, r.baseline, _ratio(r), r.target, _met(r)) for r in results]


def print_table(results: list[Result], details: bool = False) -> None:
    table = [COLUMNS, *rows(results)]
    widths = [min(max(len(row[i]) for row in table), 60) for i in range(len(COLUMNS))]
    print()
    for number, row in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if number == 0:
            print("  ".join("-" * w for w in widths))
    for result in results:
        if result.why:
            print(f"\nwhy ({result.benchmark}): {result.why}")
        if details and result.details:
            print(f"\ndetails ({result.benchmark}):\n  " + "\n  ".join(result.details))


def markdown(results: list[Result], facts: dict[str, str], seconds: float, notes: list[str]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["# Benchmark results", "",
             "Written by `python -m benchmarks` (`make bench`). Every figure is a ratio against a baseline measured "
             "in the same run, on the same machine, in a fresh temporary MLSYS_HOME (removed afterwards).", "",
             "## Machine", "", "| | |", "| --- | --- |",
             *(f"| {k} | {cell(v)} |" for k, v in facts.items()),
             f"| total runtime | {seconds:.0f} s |", "",
             "## Results", "",
             "| " + " | ".join(COLUMNS) + " | why (where a target is not met) |",
             "| " + " | ".join("---" for _ in range(len(COLUMNS) + 1)) + " |"]
    for result, row in zip(results, rows(results), strict=True):
        lines.append("| " + " | ".join(cell(c) for c in row) + f" | {cell(result.why)} |")
    if notes:
        lines += ["", "## How each benchmark measures", "", *notes]
    lines += ["", "## Details", ""]
    for result in results:
        if result.details:
            lines += [f"### {result.benchmark}: {result.figure}", "", *(f"- {cell(d)}" for d in result.details), ""]
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, results: list[Result], facts: dict[str, str], seconds: float, notes: list[str]) -> None:
    from mlsys_assets.core.files import atomic_write_text

    atomic_write_text(path, markdown(results, facts, seconds, notes))
