"""Rules of the engine: Dagster's internals are used in one module only (mlsys_assets/dagster_internal.py, which
says why each use has no public API), and nothing under mlsys_assets/core/ imports Dagster (the server and the
plain-Python logic run without it)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("mlsys_assets", "benchmarks")
INTERNAL_MODULE = Path("mlsys_assets") / "dagster_internal.py"

# methods of DagsterInstance that only Dagster's daemon is meant to call (instigator state and ticks)
INSTANCE_INTERNALS = frozenset({
    "get_instigator_state", "get_instigator_states", "all_instigator_state", "add_instigator_state",
    "update_instigator_state", "delete_instigator_state", "create_tick", "update_tick", "get_tick", "get_ticks",
    "get_batch_ticks", "purge_ticks"})
STORAGES = frozenset({"event_log_storage", "run_storage", "schedule_storage"})  # below the instance's API
PRIVATE = frozenset({"_connect", "_conn_string", "_replace"})  # Dagster's storages' and records' private members
NOT_PUBLIC = frozenset({"evaluate_tick"})  # what the daemon calls on a sensor
NOT_TO_CONSTRUCT = frozenset({"SensorEvaluationContext"})  # build_sensor_context is the public way
LOG_CLASS_NAME = re.compile(r"\w*(Handler|Logger|LogManager)")
CODE_IN_STRING = re.compile(r"\b(from|import)\s+dagster\._")
MODULE_PATH = re.compile(r"dagster\._[\w.]*")


def _class_name_of(node: ast.AST) -> bool:
    """`type(x).__name__` or `x.__class__.__name__`."""
    if not (isinstance(node, ast.Attribute) and node.attr in ("__name__", "__qualname__")):
        return False
    owner = node.value
    return (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "type") or (
        isinstance(owner, ast.Attribute) and owner.attr == "__class__")


def _log_class_names(node: ast.AST) -> list[str]:
    values = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return [v.value for v in values
            if isinstance(v, ast.Constant) and isinstance(v.value, str) and LOG_CLASS_NAME.fullmatch(v.value)]


def violations(source: str, filename: str) -> list[str]:
    """`filename:line: what` for every use of Dagster internals in `source`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [(line, f"import {a.name}") for a in node.names if a.name.startswith("dagster._")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("dagster._"):
                found.append((line, f"from {node.module} import ..."))
            elif node.module == "dagster":
                found += [(line, f"from dagster import {a.name}") for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute):
            if node.attr in INSTANCE_INTERNALS:
                found.append((line, f"instigator state / ticks: .{node.attr}"))
            elif node.attr in STORAGES:
                found.append((line, f"the instance's storage: .{node.attr}"))
            elif node.attr in PRIVATE:
                found.append((line, f"private attribute: .{node.attr}"))
            elif node.attr in NOT_PUBLIC:
                found.append((line, f"not public: .{node.attr}"))
        elif isinstance(node, ast.Call):
            callee = node.func.id if isinstance(node.func, ast.Name) else \
                node.func.attr if isinstance(node.func, ast.Attribute) else None
            if callee in NOT_TO_CONSTRUCT:
                found.append((line, f"{callee}(...) (not to be instantiated)"))
            if callee in ("getattr", "setattr", "hasattr") and len(node.args) > 1 and isinstance(
                    node.args[1], ast.Constant) and node.args[1].value in INSTANCE_INTERNALS | PRIVATE | STORAGES:
                found.append((line, f"{callee}(..., {node.args[1].value!r})"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if CODE_IN_STRING.search(node.value) or MODULE_PATH.fullmatch(node.value.strip()):
                found.append((line, f"dagster._ in code held in a string: {node.value.strip()[:60]!r}"))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_class_name_of(side) for side in sides):
                names = [name for side in sides for name in _log_class_names(side)]
                if names:
                    found.append((line, f"a log handler or logger matched by class name: {names}"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def scanned_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def test_dagster_internals_are_used_in_dagster_internal_only() -> None:
    files = [p for p in scanned_files() if p.relative_to(ROOT) != INTERNAL_MODULE]
    assert len(files) > 20 and (ROOT / INTERNAL_MODULE).exists()
    found = [v for path in files
             for v in violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert not found, ("Dagster internals outside mlsys_assets/dagster_internal.py (use the public API, or move the "
                       "use there with why no public API does it):\n" + "\n".join(found))


def test_the_scanner_finds_each_kind_of_violation() -> None:
    """The rule above can fail: a snippet with one violation per line is reported line by line, and the public
    API is not."""
    snippet = '''\
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
import dagster._core.scheduler.instigation as instigation
from dagster import _check
state = instance.get_instigator_state(origin_id, selector_id)
instance.create_tick(tick_data)
ticks = context.instance.get_ticks(origin_id, selector_id, limit=1)
instance.update_instigator_state(state)
engine = create_engine(storage._conn_string)
with self._connect() as conn: pass
result = result._replace(metadata={})
if type(handler).__name__ == "DispatchingLogHandler": pass
if handler.__class__.__name__ in ("CapturedLogHandler", "Other"): pass
records = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
data = sensor.evaluate_tick(context)
context = SensorEvaluationContext(instance_ref=None)
code = "from dagster._core.remote_representation.external_data import RepositorySnap"
module = importlib.import_module("dagster._core.storage.runs")
ticks = getattr(instance, "get_ticks")
'''
    found = violations(snippet, "probe.py")
    assert [int(v.split(":")[1]) for v in found] == list(range(1, snippet.count("\n") + 1)), "\n".join(found)
    assert found[0].startswith("probe.py:1: from dagster._core.storage.sqlite")

    public = '''\
from dagster import AssetExecutionContext, build_sensor_context, evaluate_automation_conditions
import dagster as dg
context.add_asset_metadata({"cost/seconds": 1.0}, asset_key=key)
if type(exc).__name__ == "HalfBinomialLoss": pass
message = f"{type(exc).__name__}: {exc}"
text = "a yaml comment naming dagster._core.storage.runs.SqliteRunStorage for users"
'''
    assert violations(public, "public.py") == []


CORE_REPORT = ("import importlib, json, sys\nimportlib.import_module({module!r})\n"
               "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster' "
               "or m.startswith('dagster_'))))")


def core_modules() -> list[str]:
    folder = ROOT / "mlsys_assets" / "core"
    return ["mlsys_assets.core", *(f"mlsys_assets.core.{p.stem}" for p in sorted(folder.glob("*.py"))
                                   if p.stem != "__init__")]


def _dagster_modules_after_import(module: str, folder: Path = ROOT) -> list[str]:
    """The dagster modules in sys.modules after importing `module` (from `folder`) in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", CORE_REPORT.format(module=module)], capture_output=True, text=True,
                          cwd=folder, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"{module} does not import: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_nothing_under_core_imports_dagster() -> None:
    """Each core module imported alone, in a fresh interpreter (so what its own imports pull in, however
    indirectly, shows in sys.modules): no dagster module loaded."""
    modules = core_modules()
    assert len(modules) > 10
    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded = dict(zip(modules, pool.map(_dagster_modules_after_import, modules), strict=True))
    offenders = {module: found[:3] for module, found in loaded.items() if found}
    assert not offenders, ("core modules that import dagster (import it, or the mlsys_assets module that does, inside "
                           f"the function that needs it; `python -X importtime` shows the chain): {offenders}")


def test_the_core_probe_sees_a_dagster_import(tmp_path: Path) -> None:
    """The check above can fail: a module that imports dagster through another module shows."""
    (tmp_path / "probe_core.py").write_text("import probe_middle\n")
    (tmp_path / "probe_middle.py").write_text("def f():\n    import json\n\nimport dagster\n")
    assert "dagster" in _dagster_modules_after_import("probe_core", tmp_path)
    (tmp_path / "probe_clean.py").write_text("import json\n")
    assert _dagster_modules_after_import("probe_clean", tmp_path) == []
