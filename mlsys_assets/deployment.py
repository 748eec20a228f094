"""Where Dagster and MLflow keep their state and how a run executes its steps, chosen by settings alone: the
asset code is the same on one laptop, against a team's PostgreSQL server and on Kubernetes.

Connection settings are read from the environment every time (never written to a file), so Dagster's
`dagster.yaml` and MLflow's tracking URI always point at the same server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from mlsys_assets.settings import PG_DEFAULTS, setting

PROFILE_ENV, EXECUTOR_ENV, MAX_CONCURRENT_ENV, PASSWORD_ENV = (
    "MLSYS_PROFILE", "MLSYS_EXECUTOR", "MLSYS_EXECUTOR_MAX_CONCURRENT", "MLSYS_PG_PASSWORD")
PROFILES = ("embedded", "postgres")
PG_SCHEME = "postgresql+psycopg2"
EXECUTORS = ("in_process", "multiprocess", "k8s")
# Written into os.environ by `postgres_env_defaults()`, so `{env: ...}` in dagster.yaml resolves in every
# process mlsys starts; the password has no default.

def profile() -> str:
    """`embedded` or `postgres`; anything else is an error naming the setting."""
    value = setting(PROFILE_ENV).strip().lower()
    if value not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={value!r}: expected one of {', '.join(PROFILES)}")
    return value


@dataclass(frozen=True)
class Postgres:
    """The PostgreSQL server of the `postgres` profile, as the environment says now."""

    host: str
    port: int
    user: str
    password: str
    dagster_db: str
    mlflow_db: str

    @classmethod
    def from_env(cls) -> Postgres:
        env = {name: os.environ.get(name) or default for name, default in PG_DEFAULTS.items()}
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise ValueError(f"{PROFILE_ENV}=postgres needs {PASSWORD_ENV} in the environment (set it empty for "
                             "trust or ~/.pgpass authentication); it is never read from a file")
        try:
            port = int(env["MLSYS_PG_PORT"])
        except ValueError:
            raise ValueError(f"MLSYS_PG_PORT={env['MLSYS_PG_PORT']!r}: expected a port number") from None
        return cls(host=env["MLSYS_PG_HOST"], port=port, user=env["MLSYS_PG_USER"], password=password,
                   dagster_db=env["MLSYS_PG_DAGSTER_DB"], mlflow_db=env["MLSYS_PG_MLFLOW_DB"])

    def url(self, database: str) -> str:
        """A SQLAlchemy URL naming its driver: SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3, while
        dagster-postgres installs psycopg2. It holds the password: never print it."""
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        return f"{PG_SCHEME}://{userinfo}@{self.host}:{self.port}/{quote(database, safe='')}"


def postgres_env_defaults() -> None:
    """Give the unset `MLSYS_PG_*` connection settings their defaults in this process's environment (inherited by
    the daemon, the webserver and every run they launch), and check that the password is set."""
    for name, default in PG_DEFAULTS.items():
        if not os.environ.get(name):
            os.environ[name] = default
    Postgres.from_env()


def mlflow_store_uri(store_dir: str) -> str:
    """The tracking and registry URI of the profile: SQLite under `store_dir`, or the profile's MLflow database."""
    if profile() == "postgres":
        pg = Postgres.from_env()
        return pg.url(pg.mlflow_db)
    return f"sqlite:///{Path(store_dir) / 'mlflow.db'}"


def max_concurrent() -> int:
    raw = setting(MAX_CONCURRENT_ENV)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_CONCURRENT_ENV}={raw!r}: expected a whole number of steps, at least 1")
    return value


def executor_from_env():  # -> dagster.ExecutorDefinition
    """The executor of every job, from MLSYS_EXECUTOR. `execute_in_process` (tests, the demo) always runs in
    process; the executor applies to runs the daemon or the UI launches."""
    from dagster import Field, in_process_executor, multiprocess_executor

    name = setting(EXECUTOR_ENV).strip().lower()
    if name == "in_process":
        return in_process_executor
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected one of {', '.join(EXECUTORS)}")
    steps = max_concurrent()
    if name == "multiprocess":
        base = multiprocess_executor
    else:
        try:
            from dagster_k8s import k8s_job_executor as base
        except ImportError:
            raise ValueError(f"{EXECUTOR_ENV}=k8s needs dagster-k8s (pip install 'dagster-k8s>=0.29,<0.30', the "
                             "version matching dagster); see deploy/k8s/README.md") from None
    # the launchpad can still override max_concurrent per run
    return base.configured(lambda config: config, name=name, config_schema={
        "max_concurrent": Field(int, default_value=steps, is_required=False,
                                description=f"Steps executing at once (default from {MAX_CONCURRENT_ENV}).")})
