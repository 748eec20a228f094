"""The `postgres` profile against a real PostgreSQL server started for the test, and the executor setting.

A team's deployment differs from the laptop's only by settings; these tests run the same jobs and sensors with
Dagster and MLflow in PostgreSQL and then look in the server's own tables, so a silent fallback to the SQLite
files would fail them.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlsys_tests.conftest import DAYS, FLIGHTS_SYSTEM, run_day

# A small training run: the system's settings MLSYS_FLIGHTS_<FIELD>, read when the definitions are built.
PARAMS = '{"max_iter": 40}'  # the model factory's parameters: small, for speed
SMALL = {"WINDOW": "2", "HOLDOUT": "1", "SLICE_MIN_ROWS": "100", "FLOOR": "0.5", "PARAMS": PARAMS}
LANDING_SENSOR = "flights_landing_files_sensor"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
# Characters a URL must escape: the password reaches Dagster and MLflow through URLs built from the environment.
PASSWORD = "p@ss:w/rd %1"
INSTALL_HINT = ("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, in /usr/local/bin or in "
                "/usr/lib/postgresql/*/bin. Install them: `apt-get install -y postgresql` (Debian/Ubuntu; the "
                "binaries land in /usr/lib/postgresql/<version>/bin, no server needs to be running) or "
                "`brew install postgresql` (macOS).")
OS_USER = "nobody"  # PostgreSQL refuses to run as root: as root, the server runs as this user


def postgres_bin_dir() -> Path:
    """A folder holding initdb, pg_ctl and postgres: PATH first, then the usual install locations."""
    candidates = [Path(found).parent for found in [shutil.which("pg_ctl")] if found]
    candidates += [Path("/usr/local/bin"), *sorted(map(Path, glob.glob("/usr/lib/postgresql/*/bin")), reverse=True)]
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    pytest.fail(INSTALL_HINT, pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str = "postgres"):
        import psycopg2

        con = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=database, connect_timeout=10)
        con.autocommit = True
        return con

    def fetch(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        con = self.connect(database)
        try:
            with con.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (a free port, the socket in its own folder), stopped afterwards.

    As root the cluster belongs to `nobody` and lives in a folder of its own under /tmp: pytest's temporary
    folders are private to root (0700), so `nobody` could not reach one inside them.
    """
    bin_dir = postgres_bin_dir()
    as_root = os.geteuid() == 0
    if as_root:
        if shutil.which("runuser") is None:
            pytest.fail("running as root, PostgreSQL must run as another user: `runuser` (util-linux) is missing",
                        pytrace=False)
        base = Path(tempfile.mkdtemp(prefix="mlsys-pg-", dir="/tmp"))
        shutil.chown(base, OS_USER)
    else:
        base = tmp_path_factory.mktemp("postgres")

    def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["runuser", "-u", OS_USER, "--", *command] if as_root else list(command)
        done = subprocess.run(argv, cwd=base, capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            pytest.fail(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()}", pytrace=False)
        return done

    data, sockets, log = base / "data", base / "sockets", base / "postgres.log"
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if as_root:
            shutil.chown(pwfile, OS_USER)
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "mlsys", f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        run("mkdir", "-m", "700", str(sockets))
        for _attempt in range(3):  # another process may take the free port before the server binds it
            port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
                       f"-c unix_socket_directories={shlex.quote(str(sockets))} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            result = run(str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-t", "60",
                         "-o", options, check=False)
            if result.returncode == 0:
                break
        else:
            pytest.fail(f"PostgreSQL did not start: {result.stderr.strip()}\n{log.read_text()[-3000:]}",
                        pytrace=False)
        yield Server("127.0.0.1", port, "mlsys", PASSWORD)
    finally:
        if (data / "postmaster.pid").exists():  # also after a start that timed out with the server up
            run(str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "60", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landed_days: Path, postgres_server: Server) -> Path:
    """conftest's `mlsys_home`, with the `postgres` profile set before the instance is prepared and two fresh
    databases (named unlike the defaults, so the settings must be honoured)."""
    from mlsys_assets.instance import prepare_dagster_home

    for name in list(os.environ):
        if name.startswith("MLSYS_"):
            monkeypatch.delenv(name)
    suffix = uuid.uuid4().hex[:8]
    dagster_db, mlflow_db = f"dagster_{suffix}", f"mlflow_{suffix}"
    con = postgres_server.connect()
    try:
        with con.cursor() as cursor:
            for database in (dagster_db, mlflow_db):
                cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        con.close()
    home = tmp_path / "mlsys"
    shutil.copytree(landed_days, home / "landing")
    for name, value in {"MLSYS_HOME": str(home), "MLSYS_PROFILE": "postgres", "MLSYS_PG_HOST": postgres_server.host,
                        "MLSYS_PG_PORT": str(postgres_server.port), "MLSYS_PG_USER": postgres_server.user,
                        "MLSYS_PG_PASSWORD": postgres_server.password, "MLSYS_PG_DAGSTER_DB": dagster_db,
                        "MLSYS_PG_MLFLOW_DB": mlflow_db}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    prepare_dagster_home()
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home


@pytest.mark.slow
def test_runs_event_log_sensors_and_the_registry_live_in_postgres(pg_home: Path, postgres_server: Server,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import AssetKey, DagsterInstance
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from mlsys_assets.definitions import build_defs
    from mlsys_assets.replay import InProcessDaemon
    from mlsys_assets.resources import MlflowStore

    for name, value in SMALL.items():
        monkeypatch.setenv(f"MLSYS_FLIGHTS_{name}", value)
    dagster_db, mlflow_db = os.environ["MLSYS_PG_DAGSTER_DB"], os.environ["MLSYS_PG_MLFLOW_DB"]
    config = (pg_home / "dagster" / "dagster.yaml").read_text()
    assert "{env: MLSYS_PG_PASSWORD}" in config and PASSWORD not in config

    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        defs = build_defs()

        days = [run_day(defs, instance, day) for day in DAYS]
        assert all(result.success for result in days)
        trained = defs.resolve_job_def("flights_retraining").execute_in_process(
            instance=instance, raise_on_error=False, run_config=QUIET)
        assert trained.success
        registry = MlflowStore.from_env().registry(FLIGHTS_SYSTEM)
        registry.activate()
        assert registry.alias_version("champion") == "1"

        daemon = InProcessDaemon(defs, instance)
        daemon.start()
        landed = daemon.tick(LANDING_SENSOR)
        assert sorted(run.partition for run in landed) == list(DAYS) and all(run.success for run in landed)
        automated = daemon.settle()
        assert automated and all(run.success for run in automated)
        assert {"flights/features", "flights/batch_predictions"} <= set().union(*(run.assets for run in automated))
        assert daemon.tick(LANDING_SENSOR) == []  # the cursor is in PostgreSQL too
        run_ids = {r.run_id for r in days} | {trained.run_id} | {run.run_id for run in landed + automated}
        features = instance.get_latest_materialization_event(AssetKey(["flights", "features"]))
        assert features is not None and features.run_id in {run.run_id for run in automated}

    # What the instance reported is in PostgreSQL's own tables, not in files under DAGSTER_HOME.
    stored = dict(postgres_server.fetch(dagster_db, "SELECT run_id, status FROM runs"))
    assert run_ids <= set(stored) and {stored[run_id] for run_id in run_ids} == {"SUCCESS"}
    events = postgres_server.fetch(dagster_db, "SELECT count(*) FROM event_logs WHERE run_id = %s AND "
                                               "dagster_event_type = 'ASSET_MATERIALIZATION'", (trained.run_id,))
    assert events[0][0] >= 4  # training_set, candidate_model, model_evaluation, champion_model (+ online_baseline)
    ticks = postgres_server.fetch(dagster_db, "SELECT tick_body FROM job_ticks")
    assert any(f'"{LANDING_SENSOR}"' in body for (body,) in ticks)
    assert any('"automation_sensor"' in body for (body,) in ticks)
    assert not (pg_home / "dagster" / "history").exists() and not (pg_home / "dagster" / "schedules").exists()

    assert postgres_server.fetch(mlflow_db, "SELECT name FROM registered_models") == [("flight_delay",)]
    versions = postgres_server.fetch(mlflow_db, "SELECT version, run_id FROM model_versions WHERE name = %s",
                                     ("flight_delay",))
    assert [version for version, _ in versions] == [1]
    assert postgres_server.fetch(mlflow_db, "SELECT alias, version FROM registered_model_aliases WHERE name = %s",
                                 ("flight_delay",)) == [("champion", 1)]
    tagged = postgres_server.fetch(mlflow_db, "SELECT run_uuid FROM tags WHERE key = 'dagster.run_id' AND "
                                              "value = %s", (trained.run_id,))
    assert tagged == [(versions[0][1],)]  # the registered version is the retraining run's model
    assert not (pg_home / "mlflow" / "mlflow.db").exists()

    # The password is read from the environment, never written down: not in a file, a run or an MLflow record.
    quoted = PASSWORD.replace("@", "%40")
    for path in pg_home.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert PASSWORD.encode() not in content and quoted.encode() not in content, path
    assert postgres_server.fetch(dagster_db, "SELECT count(*) FROM event_logs WHERE event LIKE %s",
                                 (f"%{PASSWORD}%",)) == [(0,)]
    assert postgres_server.fetch(dagster_db, "SELECT count(*) FROM runs WHERE run_body LIKE %s",
                                 (f"%{PASSWORD}%",)) == [(0,)]
    for table in ("params", "tags"):
        assert postgres_server.fetch(mlflow_db, f"SELECT count(*) FROM {table} WHERE value LIKE %s",
                                     (f"%{PASSWORD}%",)) == [(0,)]


def test_prepared_instances_follow_the_profile(mlsys_home: Path, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    from mlsys_assets.instance import INSTANCE_YAML, POSTGRES_INSTANCE_YAML, prepare_dagster_home
    from mlsys_assets.resources import MlflowStore

    embedded = mlsys_home / "dagster"
    assert (embedded / "dagster.yaml").read_text() == INSTANCE_YAML.format(home=embedded)
    assert MlflowStore.from_env().store_uri() == f"sqlite:///{mlsys_home / 'mlflow' / 'mlflow.db'}"

    monkeypatch.setenv("MLSYS_PROFILE", "postgres")
    with pytest.raises(ValueError, match="needs MLSYS_PG_PASSWORD"):
        prepare_dagster_home()
    monkeypatch.setenv("MLSYS_PG_PASSWORD", PASSWORD)
    with pytest.raises(RuntimeError, match="written for the embedded profile"):
        prepare_dagster_home()  # the same DAGSTER_HOME: its runs are in SQLite

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "team"))
    for name in ("MLSYS_PG_HOST", "MLSYS_PG_PORT", "MLSYS_PG_USER", "MLSYS_PG_DAGSTER_DB", "MLSYS_PG_MLFLOW_DB"):
        monkeypatch.setenv(name, "")  # unset (empty counts as unset); monkeypatch undoes the defaults written below
    home = prepare_dagster_home()
    assert (home / "dagster.yaml").read_text() == POSTGRES_INSTANCE_YAML
    assert os.environ["MLSYS_PG_HOST"] == "127.0.0.1" and os.environ["MLSYS_PG_DAGSTER_DB"] == "dagster"
    store = MlflowStore.from_env()
    assert store.store_uri() == "postgresql+psycopg2://mlsys:p%40ss%3Aw%2Frd%20%251@127.0.0.1:5432/mlflow"
    from sqlalchemy.engine import make_url

    assert make_url(store.store_uri()).password == PASSWORD
    assert MlflowStore.from_env(tracking_uri="http://mlflow.team:5000").store_uri() == "http://mlflow.team:5000"

    monkeypatch.setenv("MLSYS_PROFILE", "cluster")
    with pytest.raises(ValueError, match="MLSYS_PROFILE='cluster'"):
        prepare_dagster_home()


def test_the_executor_setting_selects_the_executor_and_the_asset_code_stays(mlsys_home: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.util import find_spec

    from dagster._core.system_config.objects import ResolvedRunConfig

    from mlsys_assets.definitions import build_defs
    from mlsys_assets.deployment import executor_from_env

    def executor_of(job: str = "flights_daily_pipeline") -> tuple[str, dict]:
        definition = build_defs().resolve_job_def(job)
        execution = ResolvedRunConfig.build(definition, {}).execution
        return definition.executor_def.name, dict(execution.execution_engine_config)

    assert executor_of()[0] == "in_process"  # the default: what `make dev` has always run
    baseline = build_defs()
    monkeypatch.setenv("MLSYS_EXECUTOR", "multiprocess")
    name, config = executor_of()
    assert (name, config["max_concurrent"]) == ("multiprocess", 2)
    monkeypatch.setenv("MLSYS_EXECUTOR_MAX_CONCURRENT", "3")
    assert executor_of("flights_retraining")[1]["max_concurrent"] == 3
    multiprocess = build_defs()
    for job in ("flights_daily_pipeline", "flights_retraining"):  # the same assets, only the executor differs
        same = baseline.resolve_job_def(job).asset_layer.executable_asset_keys
        assert multiprocess.resolve_job_def(job).asset_layer.executable_asset_keys == same

    monkeypatch.setenv("MLSYS_EXECUTOR_MAX_CONCURRENT", "none")
    with pytest.raises(ValueError, match="MLSYS_EXECUTOR_MAX_CONCURRENT='none'"):
        executor_from_env()
    monkeypatch.delenv("MLSYS_EXECUTOR_MAX_CONCURRENT")
    monkeypatch.setenv("MLSYS_EXECUTOR", "k8s")
    if find_spec("dagster_k8s") is None:
        with pytest.raises(ValueError, match="MLSYS_EXECUTOR=k8s needs dagster-k8s"):
            build_defs()
    else:
        assert executor_from_env().name == "k8s"
    monkeypatch.setenv("MLSYS_EXECUTOR", "threads")
    with pytest.raises(ValueError, match="MLSYS_EXECUTOR='threads': expected one of in_process, multiprocess, k8s"):
        build_defs()


@pytest.mark.slow
def test_a_day_runs_one_process_per_step_against_postgres(pg_home: Path, postgres_server: Server,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """MLSYS_EXECUTOR=multiprocess: each step in its own process, each loading the instance from the environment,
    running the asset code the in-process runs use (up to the features: a step costs seconds of imports)."""
    from dagster import AssetKey, DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from mlsys_tests.conftest import query

    monkeypatch.setenv("MLSYS_EXECUTOR", "multiprocess")
    # What the run worker the daemon launches does: load the code location afresh, in the environment as it is.
    job = ReconstructableRepository.for_module("mlsys_assets.definitions", "build_defs").get_reconstructable_job(
        "flights_daily_pipeline")
    with DagsterInstance.get() as instance:
        selection = [AssetKey(["flights", name]) for name in ("raw_flights", "raw_weather", "validated_flights",
                                                              "quarantined_flights", "validated_weather",
                                                              "quarantined_weather", "features")]
        result = execute_job(job, instance, run_config=QUIET, tags={"dagster/partition": DAYS[0]},
                             asset_selection=selection)
        assert result.success
        starts = [event for event in result.all_events if event.event_type_value == "STEP_START"]
    assert len(starts) == 5 and os.getpid() not in {event.pid for event in starts}
    assert len({event.pid for event in starts}) == len(starts)  # one process per step
    assert query(pg_home, "SELECT count(*) FROM features WHERE partition_date = ?", [DAYS[0]])[0][0] > 900
    stored = postgres_server.fetch(os.environ["MLSYS_PG_DAGSTER_DB"], "SELECT status FROM runs WHERE run_id = %s",
                                   (result.run_id,))
    assert stored == [("SUCCESS",)]
