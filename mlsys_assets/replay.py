"""An in-process stand-in for the Dagster daemon: ticks the code location's sensors and automation against a
real instance and runs what they request here, with the tags the daemon would give those runs.

The demo and the tests use it to replay days of 2013 deterministically and fast (the daemon launches each
run in a new process, about 6 s each with this stack); `make dev` runs the real daemon over the same state.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
MODULE, LOCATION, REPOSITORY = "mlsys_assets.definitions", "mlsys", "__repository__"  # as in workspace.yaml


@dataclass
class Launched:
    sensor: str
    run_id: str
    success: bool
    job: str
    partition: str | None
    assets: list[str]
    tags: dict[str, str] = field(default_factory=dict)


class InProcessDaemon:
    def __init__(self, defs, instance, run_config: dict | None = None, console_level: int = logging.INFO) -> None:
        self.defs = defs
        self.instance = instance
        self.run_config = run_config if run_config is not None else QUIET
        self.console_level = console_level  # of the sensors' own logs; the tick's captured log keeps everything
        self.repository = defs.get_repository_def()
        self.launched: list[Launched] = []

    def start(self) -> None:
        """What the daemon does when it starts: recover the runs of in-process launches that died, and a first
        automation evaluation. Dagster's conditions treat their first evaluation as the baseline (nothing is
        requested for updates that happened before it), so the daemon must be running before the files it should
        react to arrive."""
        recover_dead_runs(self.instance)
        for name in self._automation_sensors():
            if self._cursor(name) is None:
                self.tick(name)

    def _automation_sensors(self) -> list[str]:
        return [s.name for s in self.repository.sensor_defs if _is_automation(s)]

    # Sensor state lives where the Dagster daemon keeps it (the instance's schedule storage, found by the origin
    # of location, repository and sensor name), so `make dev` continues from the replay's cursors instead of
    # seeing every landed file as new, and the UI lists the replay's ticks. Dagster has no public API for it:
    # mlsys_assets/dagster_internal.py; mlsys_tests/test_webserver.py checks through GraphQL that the UI finds them.
    def _origin(self, name: str):
        from mlsys_assets.dagster_internal import sensor_origin

        return sensor_origin(MODULE, LOCATION, REPOSITORY, name)

    def state(self, name: str):
        from mlsys_assets.dagster_internal import sensor_state

        return sensor_state(self.instance, self._origin(name))

    def _cursor(self, name: str) -> str | None:
        from mlsys_assets.dagster_internal import sensor_cursor

        return sensor_cursor(self.instance, self._origin(name))

    def tick(self, name: str) -> list[Launched]:
        """Evaluate one sensor once (cursor kept in the instance, so it survives restarts) and run its requests."""
        from mlsys_assets.dagster_internal import evaluate_sensor_tick, store_sensor_tick

        sensor = self.defs.resolve_sensor_def(name) if hasattr(self.defs, "resolve_sensor_def") \
            else self.repository.get_sensor_def(name)
        log_key = [REPOSITORY, name, uuid.uuid4().hex]  # what the sensor logs is readable on the tick in the UI
        started = time.time()
        data = evaluate_sensor_tick(sensor, instance=self.instance, repository=self.repository,
                                    repository_name=REPOSITORY, cursor=self._cursor(name), log_key=log_key,
                                    console_level=self.console_level)
        tick_id = uuid.uuid4().hex[:12]
        is_automation = _is_automation(sensor)
        runs = [run for request in data.run_requests
                if (run := self._launch(sensor, request, tick_id, is_automation)) is not None]
        store_sensor_tick(self.instance, self._origin(name), sensor_type="AUTOMATION" if is_automation else "STANDARD",
                          cursor=data.cursor, run_ids=[run.run_id for run in runs],
                          run_keys=[r.run_key for r in data.run_requests if r.run_key],
                          skip_reason=data.skip_message, started=started, log_key=log_key)
        return runs

    def settle(self, name: str = "automation_sensor", max_ticks: int = 20) -> list[Launched]:
        """Tick automation until it requests nothing more (each run's results can request the next layer)."""
        launched: list[Launched] = []
        for _ in range(max_ticks):
            runs = self.tick(name)
            if not runs:
                break
            launched += runs
        return launched

    def _launch(self, sensor, request, tick_id: str, is_automation: bool) -> Launched | None:
        from dagster import RunsFilter

        tags = {**request.tags, "dagster/sensor_name": sensor.name, "dagster/tick": tick_id, **process_tags()}
        if request.run_key:
            existing = self.instance.get_runs(filters=RunsFilter(
                tags={"dagster/run_key": request.run_key, "dagster/sensor_name": sensor.name}), limit=1)
            if existing:
                return None  # the daemon skips a run key it has already launched
            tags["dagster/run_key"] = request.run_key
        if is_automation:
            tags.update({"dagster/auto_materialize": "true", "dagster/from_automation_condition": "true"})
        job = self._job_for(sensor, request)
        selection = list(request.asset_selection) if request.asset_selection else None
        result = job.execute_in_process(instance=self.instance, partition_key=request.partition_key,
                                        asset_selection=selection, tags=tags, run_config=self.run_config,
                                        raise_on_error=False)
        launched = Launched(sensor.name, result.run_id, result.success, job.name, request.partition_key,
                            [k.to_user_string() for k in selection or []], tags)
        self.launched.append(launched)
        if not result.success:
            self._on_failure(result)
        return launched

    def run_job(self, job_name: str, partition_key: str | None = None, tags: dict[str, str] | None = None):
        """An on-demand run, as from the UI's launchpad, executed here (tagged with this process, see
        `recover_dead_runs`)."""
        return self.repository.get_job(job_name).execute_in_process(
            instance=self.instance, partition_key=partition_key, tags={**(tags or {}), **process_tags()},
            run_config=self.run_config, raise_on_error=False)

    def _job_for(self, sensor, request):
        """The job the daemon would launch: the request's, else the sensor's (named, or the anonymous job of its
        `target`), else (automation) the implicit asset job."""
        name = request.job_name
        if name is None:
            try:
                name = sensor.job_name
            except Exception:  # an automation sensor has no job of its own
                name = None
        return self.repository.get_job(name) if name else self.defs.resolve_implicit_global_asset_job_def()

    def _on_failure(self, result) -> None:
        """What the run-failure sensor does when the daemon sees a failed run."""
        from dagster import build_run_status_sensor_context

        from mlsys_assets.automation import run_failure_alert_sensor

        context = build_run_status_sensor_context(
            sensor_name=run_failure_alert_sensor.name, dagster_event=result.get_run_failure_event(),
            dagster_instance=self.instance, dagster_run=result.dagster_run).for_run_failure()
        run_failure_alert_sensor(context)


def _is_automation(sensor: object) -> bool:
    from dagster import AutomationConditionSensorDefinition

    return isinstance(sensor, AutomationConditionSensorDefinition)


def process_tags() -> dict[str, str]:
    import os
    import socket

    return {"mlsys/pid": str(os.getpid()), "mlsys/host": socket.gethostname()}


def recover_dead_runs(instance) -> list[str]:
    """Runs executed in a process of this machine that died (killed, out of memory) stay STARTED for ever and keep
    the concurrency slots they claimed, so the next step of the `warehouse` pool would wait for ever. Mark them
    failed and free their slots; returns their ids. (Runs launched by the Dagster daemon are watched by its run
    monitoring instead.)"""
    import os
    import socket

    from dagster import DagsterRunStatus, RunsFilter

    from mlsys_assets.dagster_internal import free_concurrency_slots

    host, dead = socket.gethostname(), []
    for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING,
                                                               DagsterRunStatus.CANCELING])):
        pid = run.tags.get("mlsys/pid")
        if not pid or run.tags.get("mlsys/host") != host or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        instance.report_run_failed(run, message=f"the process that ran it (pid {pid}) is gone: killed or crashed; "
                                                "its partitions hold what they held before (each write is one "
                                                "transaction)")
        free_concurrency_slots(instance, run.run_id)
        dead.append(run.run_id)
    return dead
