"""Where every setting comes from: MLSYS_HOME and the paths under it, the global settings, and the table of all of
them (`settings_rows`: resources' fields, each declared system's numbers, the server's), which `mlsys settings`
prints. No Dagster import: the engine's core and the server read paths from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlsys_assets.systems import DECLARED

HOME_ENV = "MLSYS_HOME"
DEFAULT_HOME = ".mlsys"


def mlsys_home() -> Path:
    """The one folder that holds all state; `.mlsys/` under the working directory by default."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().absolute()


def home_path(env: str, *parts: str) -> str:
    """A path under MLSYS_HOME unless its own variable points elsewhere."""
    value = os.environ.get(env)
    return str(Path(value).expanduser().absolute() if value else mlsys_home().joinpath(*parts))


def dagster_home() -> Path:
    """DAGSTER_HOME if set, else `MLSYS_HOME/dagster`."""
    return Path(home_path("DAGSTER_HOME", "dagster"))


GLOBAL_SETTINGS: tuple[tuple[str, str, str], ...] = (
    (HOME_ENV, DEFAULT_HOME, "The folder holding all state; deleting it is a clean reset."),
    ("MLSYS_SYSTEMS", ",".join(DECLARED),
     "The declarations the code location serves: `package.module:name` (Python) or a `defs.yaml` path (the "
     "Dagster component), comma-separated."),
    ("DAGSTER_HOME", "$MLSYS_HOME/dagster", "The Dagster instance (runs, event log, schedules; SQLite, or only its "
                                            "`dagster.yaml` and logs with the `postgres` profile)."),
    ("MLSYS_DEMO_START", "2013-03-20", "First day `make demo` replays."),
    ("MLSYS_DEMO_END", "2013-06-05", "Last day `make demo` replays."),
    ("MLSYS_UI_PORT", "3000", "Port of `make dev` (the Dagster UI, on 127.0.0.1)."),
    ("MLSYS_REPORTS_DIR", "$MLSYS_HOME/reports", "Where `monitoring_report` writes its HTML pages."),
    ("MLSYS_ALERTS_DIR", "$MLSYS_HOME/alerts", "JSON lines of every alert (failed runs, failed checks), read by "
                                               "the `alerts` asset."),
)


def settings_rows() -> list[tuple[str, str, str]]:
    """Every setting: (environment variable, default, meaning); the README's table is this list."""
    from mlsys_assets.core.serving import SERVE_SETTINGS
    from mlsys_assets.deployment import DEPLOYMENT_SETTINGS
    from mlsys_assets.resources import ALL_RESOURCES
    from mlsys_assets.systems import declared_systems

    rows = [*GLOBAL_SETTINGS[:2], *DEPLOYMENT_SETTINGS, *GLOBAL_SETTINGS[2:]]
    for resource in ALL_RESOURCES:
        rows.extend(resource.settings_table())
    for system in declared_systems(apply_env=False):  # each system's tunable numbers, defaults as declared
        rows.extend(system.settings_rows())
    return rows + list(SERVE_SETTINGS)
