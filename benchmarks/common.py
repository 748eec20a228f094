"""What every benchmark shares: a fresh temporary MLSYS_HOME, timing helpers and the result record."""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class Result:
    """One row of the results table: a figure, the baseline measured in the same run, and their ratio."""

    benchmark: str
    figure: str  # what was measured, with its value
    baseline: str  # what it is compared with, with its value
    ratio: float | None  # figure / baseline (or baseline / figure when higher is better); None: no ratio
    target: str
    met: bool | None  # None: nothing to meet (a reported number)
    why: str = ""  # where a target is missed: the measurement that explains it
    details: list[str] = field(default_factory=list)  # extra lines for RESULTS.md

    def to_dict(self) -> dict:
        return asdict(self)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


ENV_NAMES = ("DAGSTER_HOME", "MLFLOW_TRACKING_URI")


def _ours(name: str) -> bool:
    return name.startswith("MLSYS_") or name in ENV_NAMES


@contextmanager
def temporary_root(prefix: str = "mlsys-bench-") -> Iterator[Path]:
    """A temporary folder for one benchmark's homes, removed afterwards. Every MLSYS_* variable (and
    DAGSTER_HOME) from outside is cleared meanwhile and restored afterwards, so the user's settings and `.mlsys`
    are never touched."""
    saved = {name: value for name, value in os.environ.items() if _ours(name)}
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        for name in saved:
            os.environ.pop(name, None)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        yield root
    finally:
        for name in [n for n in os.environ if _ours(n)]:
            os.environ.pop(name)
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def activate_home(home: Path, settings: dict[str, str] | None = None) -> Path:
    """Point the process at `home`: MLSYS_HOME, DAGSTER_HOME under it (with the project's dagster.yaml) and the
    benchmark's MLSYS_* settings. Resources read the environment when the definitions are built and some paths
    (alerts, online store) when used, so a benchmark with two homes activates one before working in it."""
    for name in [n for n in os.environ if _ours(n)]:
        os.environ.pop(name)
    os.environ["MLSYS_HOME"] = str(home)
    os.environ.update(settings or {})
    from mlsys_assets.instance import prepare_dagster_home

    return prepare_dagster_home()


@contextmanager
def temporary_home(prefix: str = "mlsys-bench-", **settings: str) -> Iterator[Path]:
    """A fresh MLSYS_HOME (DAGSTER_HOME under it) for one benchmark, removed afterwards."""
    with temporary_root(prefix) as root:
        home = root / "home"
        activate_home(home, settings)
        yield home


def quiet_libraries() -> None:
    """MLflow's and alembic's info messages would drown the benchmark's own lines."""
    for name in ("mlflow", "alembic", "dagster"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")


def environment_facts() -> dict[str, str]:
    """The machine and the versions the numbers were measured with."""
    import platform
    import sys
    from datetime import UTC, datetime
    from importlib.metadata import version

    facts = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpus": str(os.cpu_count()),
             "platform": platform.platform(), "python": sys.version.split()[0]}
    for name in ("dagster", "mlflow", "scikit-learn", "duckdb", "pandas"):
        try:
            facts[name] = version(name)
        except Exception:  # not installed: say so rather than fail the run
            facts[name] = "not installed"
    with suppress(OSError):
        facts["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return facts
