"""Loading the code location imports no heavy library: pandas, DuckDB, MLflow and the rest are imported inside the
functions that use them, so a code server, a sensor tick or a run's process starts in about the time `import dagster`
takes (benchmark 1, benchmarks/load.py). A module-level `import pandas` on the load path fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "dagster_duckdb", "pandera", "sklearn", "mlflow", "scipy",
         "matplotlib")
REPORT = f"import json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"


def heavy_modules_after(code: str, home: Path) -> list[str]:
    """The heavy modules in sys.modules after running `code` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSYS_")}
    env.update(MLSYS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    done = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loading_the_code_location_imports_no_heavy_library(tmp_path: Path) -> None:
    # what a code server does: import the module (which builds the definitions), resolve them, send the snapshot
    loaded = heavy_modules_after(
        "import mlsys_assets.definitions as d\n"
        "from dagster._core.remote_representation.external_data import RepositorySnap\n"
        "RepositorySnap.from_def(d.defs.get_repository_def())", tmp_path)
    assert loaded == [], f"loading the definitions imported {sorted({m.split('.')[0] for m in loaded})}: import " \
                         "them inside the functions that use them (`python -X importtime` shows who imports them)"


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check above can fail: one heavy import, here through a project module that uses pandas, shows."""
    assert "pandas" in heavy_modules_after(
        "from mlsys_assets.systems.flights.data import known_carriers\nknown_carriers()", tmp_path)
