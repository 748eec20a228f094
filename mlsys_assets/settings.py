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
    ("MLSYS_DEMO_START", "", "First day `make demo` replays (empty: the first of the system's declared `demo`)."),
    ("MLSYS_DEMO_END", "", "Last day `make demo` replays (empty: the last of the system's declared `demo`)."),
    ("MLSYS_UI_PORT", "3000", "Port of `make dev` (the Dagster UI, on 127.0.0.1)."),
    ("MLSYS_REPORTS_DIR", "$MLSYS_HOME/reports", "Where `monitoring_report` writes its HTML pages."),
    ("MLSYS_ALERT_WEBHOOK_URL", "", "Where every alert is also POSTed (Slack-compatible JSON, at most once, retried on "
                                    "refused connections and 5xx; empty: not delivered)."),
    ("MLSYS_ALERT_WEBHOOK_TIMEOUT_SECONDS", "2", "How long one webhook delivery may take."),
    ("MLSYS_ALERTS_DIR", "$MLSYS_HOME/alerts", "JSON lines of every alert (failed runs, failed checks), read by "
                                               "the `alerts` asset."),
)


PG_DEFAULTS = {"MLSYS_PG_HOST": "127.0.0.1", "MLSYS_PG_PORT": "5432", "MLSYS_PG_USER": "mlsys",
               "MLSYS_PG_DAGSTER_DB": "dagster", "MLSYS_PG_MLFLOW_DB": "mlflow"}
DEPLOYMENT_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("MLSYS_PROFILE", "embedded",
     "Where Dagster's runs, event log and schedules and MLflow's tracking and registry live: `embedded` (SQLite "
     "files under MLSYS_HOME) or `postgres` (the PostgreSQL server of the `MLSYS_PG_*` settings, one database each)."),
    ("MLSYS_PG_HOST", PG_DEFAULTS["MLSYS_PG_HOST"], "PostgreSQL host (profile `postgres`)."),
    ("MLSYS_PG_PORT", PG_DEFAULTS["MLSYS_PG_PORT"], "PostgreSQL port (profile `postgres`)."),
    ("MLSYS_PG_USER", PG_DEFAULTS["MLSYS_PG_USER"], "PostgreSQL role owning both databases (profile `postgres`)."),
    ("MLSYS_PG_PASSWORD", "", "Its password; required by the `postgres` profile (empty for trust or `~/.pgpass` "
                              "authentication). Read from the environment only, never written to a file."),
    ("MLSYS_PG_DAGSTER_DB", PG_DEFAULTS["MLSYS_PG_DAGSTER_DB"],
     "Database of the Dagster instance (runs, event log, schedules) in the `postgres` profile."),
    ("MLSYS_PG_MLFLOW_DB", PG_DEFAULTS["MLSYS_PG_MLFLOW_DB"],
     "Database of MLflow's tracking and model registry in the `postgres` profile."),
    ("MLSYS_EXECUTOR", "in_process",
     "How a launched run executes its steps: `in_process` (one process, steps in order), `multiprocess` (one "
     "process per step) or `k8s` (one pod per step; needs dagster-k8s, see `deploy/k8s/`). The asset code is the "
     "same for all three."),
    ("MLSYS_EXECUTOR_MAX_CONCURRENT", "2",
     "Steps of one run executing at once with the `multiprocess` and `k8s` executors (warehouse writes stay one at "
     "a time: the `warehouse` pool)."),
)

# (environment variable, default, meaning) of `mlsys serve`, read by core.server.service
SERVE_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("MLSYS_SERVE_PORT", "5001", "Port of `mlsys serve` (on 127.0.0.1 unless `--host` says otherwise)."),
    ("MLSYS_SERVE_POLL_SECONDS", "5", "How often the server checks @champion, @challenger and the published "
                                      "baseline, and swaps in what changed."),
    ("MLSYS_SERVE_MAX_BODY_BYTES", "1048576", "Largest request body; a larger one is refused with HTTP 413."),
    ("MLSYS_SERVE_MAX_ROWS", "10000", "Most rows in one request; more are refused with HTTP 413."),
    ("MLSYS_SERVE_MAX_INFLIGHT_BYTES", "4194304", "Request bodies being read or scored at once, in bytes; past it "
                                                   "a request gets HTTP 503 with Retry-After (bounds memory)."),
    ("MLSYS_SERVE_MAX_INFLIGHT_ROWS", "40000", "Request rows being scored at once; past it HTTP 503 with "
                                               "Retry-After."),
    ("MLSYS_SERVE_HEADER_TIMEOUT_SECONDS", "10", "A connection must send a whole request head within this many "
                                                 "seconds (of connecting, or of its last answer), or it is closed."),
    ("MLSYS_SERVE_LOG_MIN_FREE_MB", "256", "Below this much free disk space the server stops logging predictions "
                                           "(and /health says degraded) rather than fill the disk."),
    ("MLSYS_SERVE_LOG_RETENTION_DAYS", "0", "Prediction-log files older than this many days are deleted by the "
                                            "server (0: kept)."),
    ("MLSYS_SERVE_SHADOW", "true", "Also score @challenger, after answering, and log it (the answer carries only "
                                   "the champion)."),
    ("MLSYS_ONLINE_DIR", "$MLSYS_HOME/online", "What the pipeline publishes for the servers: each lookup source by "
                                               "partition, the baseline rates (`<system>/...`)."),
    ("MLSYS_PREDICTION_LOG_DIR", "$MLSYS_HOME/prediction_log", "JSON lines of every prediction the server answered, "
                                                               "by system and partition (rows dated outside the "
                                                               "partitions in `<system>/out_of_range`); ingested by "
                                                               "`served_predictions`."),
)


def boolean(raw: str) -> bool:
    """A boolean setting's value: 1/true/yes/on or 0/false/no/off (any case)."""
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {raw!r}")


def setting(name: str) -> str:
    """The value of a global, deployment or serving setting: its environment variable, else its default here (the
    one place each default is written)."""
    for env, default, _ in (*GLOBAL_SETTINGS, *DEPLOYMENT_SETTINGS, *SERVE_SETTINGS):
        if env == name:
            return os.environ.get(name) or default
    raise KeyError(f"{name} is not a setting of mlsys_assets.settings")


def settings_rows() -> list[tuple[str, str, str]]:
    """Every setting: (environment variable, default, meaning); the README's table is this list."""
    from mlsys_assets.resources import ALL_RESOURCES
    from mlsys_assets.systems import declared_systems

    rows = [*GLOBAL_SETTINGS[:2], *DEPLOYMENT_SETTINGS, *GLOBAL_SETTINGS[2:]]
    for resource in ALL_RESOURCES:
        rows.extend(resource.settings_table())
    for system in declared_systems(apply_env=False):  # each system's tunable numbers, defaults as declared
        rows.extend(system.settings_rows())
    return rows + list(SERVE_SETTINGS)
