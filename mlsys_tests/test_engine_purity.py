"""The engine names no domain: outside a system's own folder, no code names a column, source or word of the flights
system. Read off the source with `tokenize` (names and string literals; comments and docstrings may use flights as
an example), with a probe proving the scanner finds what it must."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlsys_assets"
SYSTEM_FOLDERS = PACKAGE / "systems"  # each declared system's own folder names its own domain

# Registering a declaration is the one place outside its folder that names it.
REGISTRATION = {PACKAGE / "systems" / "__init__.py": "the list of declared systems names each declaration"}


def domain_words() -> re.Pattern[str]:
    """Every column of the flights sources and features, and the words flight(s) and weather."""
    from mlsys_assets.systems.flights import features
    from mlsys_assets.systems.flights.declaration import flights

    distinctive = {
        "carrier", "tailnum", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time", "arr_delay",
        "air_time", "time_hour", "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
        "precip", "pressure", "visib", *features.FEATURE_COLUMNS, features.LABEL, flights.features.id_column,
        flights.features.time_column, *flights.prediction.outcome_columns, *flights.gate.slices,
    }
    # generic words (month, day_of_week, origin...) are columns of flights but also every engine's vocabulary
    distinctive -= {"month", "day_of_week", "day_of_year", "is_weekend", "distance", "origin", "dest"}
    columns = "|".join(sorted(map(re.escape, distinctive), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{columns})(?![A-Za-z0-9])|(?<![A-Za-z])(?:flights?|weather)(?![a-z])",
                      re.IGNORECASE)


def _docstring_lines(source: str) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def domain_names(source: str, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """(line, token) of every name or string literal (not a docstring) naming a domain word."""
    skip = _docstring_lines(source)
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in (tokenize.NAME, tokenize.STRING) or token.start[0] in skip:
            continue
        if token.type == tokenize.STRING and token.string.lstrip("rbuRBUfF").startswith(('"""', "'''")) \
                and token.start[0] in skip:
            continue
        if pattern.search(token.string):
            found.append((token.start[0], token.string))
    return found


def engine_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if not (SYSTEM_FOLDERS in p.parents and p.parent != SYSTEM_FOLDERS))


def test_the_probe_finds_domain_names() -> None:
    pattern = domain_words()
    code = ('"""Docstrings may say flights."""\n'
            'def f(frame):\n'
            '    # comments may say weather\n'
            '    return frame["dep_delay"], frame.carrier, raw_flights, weather_path()\n'
            'LABEL = "is_delayed"\n'
            'ok = frame["month"], daily, departure\n')
    found = [token for _, token in domain_names(code, pattern)]
    assert found == ['"dep_delay"', "carrier", "raw_flights", "weather_path", '"is_delayed"']


def test_engine_files_name_no_flights_column() -> None:
    pattern = domain_words()
    offenders = []
    for path in engine_files():
        if path in REGISTRATION:
            continue
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}: {token}"
                      for line, token in domain_names(path.read_text(), pattern)]
    assert not offenders, "the engine names the flights domain:\n" + "\n".join(offenders)
