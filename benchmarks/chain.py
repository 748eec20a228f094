"""Days driven through the code location as `mlsys demo` drives them, with what each part cost.

A `Site` is one temporary MLSYS_HOME with its own Dagster instance and in-process daemon, serving the declared
flights system (`SYSTEM`). `Site.day()` is the demo's day: deliver the day's two files, tick the system's landing
sensor, settle automation (two ticks), tick the system's retraining sensor (and settle if it launched a run),
tick the check-failure alert sensor. Every run is timed where the daemon launches it, and its steps' durations
are read from the instance afterwards, so a day's wall time splits into step work, Dagster's per-run overhead
and sensor/automation evaluation.

`TrivialRuns` is the baseline: daily-partitioned assets that do nothing, in the same `warehouse` pool as the
real steps, executed in-process on the same instance with the same run config.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import SILENT, activate_home

SYSTEM = "flights"  # the declared system the benchmarks drive (mlsys_assets/systems/flights/declaration.py)
RETRAINING_JOB = f"{SYSTEM}_retraining"


def declared_system():
    """The flights declaration as declared (its settings' defaults): enough to land its default data. A `Site`
    holds the one with the home's MLSYS_FLIGHTS_* settings applied, as the definitions it builds see it."""
    from mlsys_assets.systems.flights.declaration import flights

    return flights


@dataclass
class RunCost:
    run_id: str
    job: str
    assets: list[str]
    success: bool
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)
    events: int = 0  # event-log records the run wrote


@dataclass
class DayCost:
    day: str
    seconds: float
    phases: dict[str, float]
    runs: list[RunCost]
    flights: int = 0
    alerts: list[str] = field(default_factory=list)  # raised during the day: "kind subject"
    ticks: list[tuple[str, float]] = field(default_factory=list)  # (sensor, evaluation seconds) in order

    @property
    def run_seconds(self) -> float:
        return sum(run.seconds for run in self.runs)

    @property
    def step_seconds(self) -> float:
        return sum(sum(run.steps.values()) for run in self.runs)

    @property
    def step_count(self) -> int:
        return sum(len(run.steps) for run in self.runs)

    @property
    def events(self) -> int:
        return sum(run.events for run in self.runs)

    @property
    def sensor_seconds(self) -> float:
        """Wall time outside the runs: sensor and automation evaluation, tick bookkeeping, file delivery."""
        return self.seconds - self.run_seconds

    def tick_seconds(self) -> dict[str, tuple[int, float]]:
        """Per sensor: ticks and seconds spent evaluating them (outside the runs they launched)."""
        totals: dict[str, tuple[int, float]] = {}
        for name, seconds in self.ticks:
            count, total = totals.get(name, (0, 0.0))
            totals[name] = (count + 1, total + seconds)
        return totals

    @property
    def retrained(self) -> bool:
        return any(run.job == RETRAINING_JOB for run in self.runs)

    def describe(self) -> str:
        runs = ", ".join(f"{r.job.replace('__anonymous_asset_job_', '').replace('__ASSET_JOB', 'automation')}"
                         f"[{len(r.steps)}]{'' if r.success else ' FAILED'}" for r in self.runs)
        alerts = f"; alerts: {'; '.join(self.alerts)}" if self.alerts else ""
        return (f"{self.day}: {self.seconds:5.2f} s = steps {self.step_seconds:.2f} + run overhead "
                f"{self.run_seconds - self.step_seconds:.2f} + sensors/automation {self.sensor_seconds:.2f} "
                f"({len(self.ticks)} ticks)  "
                f"({len(self.runs)} runs, {self.step_count} steps, {self.events} events: {runs}){alerts}")


def make_daemon(defs, instance):
    """The project's InProcessDaemon, timing each run it launches; `launching = False` evaluates ticks (and keeps
    their cursors) without running what they request."""
    from mlsys_assets.replay import InProcessDaemon

    class TimedDaemon(InProcessDaemon):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.launching = True
            self.run_seconds: dict[str, float] = {}
            self.ticks: list[tuple[str, float]] = []  # (sensor, seconds outside the runs it launched)

        def tick(self, name):
            began = time.perf_counter()
            runs = super().tick(name)
            seconds = time.perf_counter() - began - sum(self.run_seconds.get(r.run_id, 0.0) for r in runs)
            self.ticks.append((name, seconds))
            return runs

        def _launch(self, sensor, request, tick_id, is_automation):
            if not self.launching:
                return None
            began = time.perf_counter()
            launched = super()._launch(sensor, request, tick_id, is_automation)
            if launched is not None:
                self.run_seconds[launched.run_id] = time.perf_counter() - began
            return launched

    return TimedDaemon(defs, instance, run_config=SILENT, console_level=logging.ERROR)


class Site:
    """One temporary MLSYS_HOME: warehouse, Dagster instance, MLflow store, landing zone, and a daemon."""

    def __init__(self, home: Path, feed: Path, settings: dict[str, str] | None = None) -> None:
        from dagster import DagsterInstance

        from mlsys_assets.definitions import build_defs
        from mlsys_assets.naming import Names
        from mlsys_assets.systems import system_named

        self.home, self.feed, self.settings = home, feed, dict(settings or {})
        self.activate()
        self.defs = build_defs()
        self.system = system_named(SYSTEM)  # with this home's MLSYS_FLIGHTS_* settings, as build_defs saw them
        self.names = Names(self.system)
        self.instance = DagsterInstance.get()
        self.daemon = make_daemon(self.defs, self.instance)
        self.landing = home / "landing"
        self.days: list[DayCost] = []

    def activate(self) -> None:
        activate_home(self.home, self.settings)

    def seed(self, day: str) -> None:
        """The first day through the real daily job (before the daemon starts), so every table is created by
        the assets themselves: the fast history fill then appends rows to the assets' own schemas."""
        from mlsys_assets.core.landing import deliver_day

        self.activate()
        deliver_day(self.system, self.feed, self.landing, day)
        result = self.defs.resolve_job_def(self.names.job("daily_pipeline")).execute_in_process(
            instance=self.instance, partition_key=day, run_config=SILENT, raise_on_error=False)
        if not result.success:
            raise RuntimeError(f"the daily pipeline failed on {day} in {self.home}")

    def fill(self, days: list[str]) -> dict[str, float]:
        """History without runs (see benchmarks/history.py); before `start()`."""
        from benchmarks.history import fill_history, no_fsync
        from mlsys_assets.core.landing import deliver_day

        self.activate()
        for day in days:
            deliver_day(self.system, self.feed, self.landing, day)
        with no_fsync():  # setup only: the measured days run with SQLite's normal durability
            return fill_history(self.system, days, self.landing, self.instance)

    def start(self) -> None:
        """What the daemon does when it starts on an existing store: the first automation evaluation is the
        baseline; and the landing files already ingested are marked seen (one landing tick that runs nothing)."""
        self.activate()
        self.daemon.start()
        self.daemon.launching = False
        try:
            self.daemon.tick(self.names.job("landing_files_sensor"))
        finally:
            self.daemon.launching = True

    def day(self, day: str) -> DayCost:
        """The demo's day, timed."""
        from mlsys_assets.core.landing import deliver_day

        self.activate()
        daemon = self.daemon
        before, alerts_before, ticks_before = len(daemon.launched), self.alert_count(), len(daemon.ticks)
        phases: dict[str, float] = {}
        began = mark = time.perf_counter()

        def phase(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            phases[name] = phases.get(name, 0.0) + now - mark
            mark = now

        deliver_day(self.system, self.feed, self.landing, day)
        phase("deliver files")
        daemon.tick(self.names.job("landing_files_sensor"))
        phase("landing sensor tick")
        daemon.settle(max_ticks=2)
        phase("automation ticks")
        retrains = daemon.tick(self.names.job("retraining_sensor"))
        phase("retraining sensor tick")
        if retrains:
            daemon.settle(max_ticks=2)
            phase("automation ticks")
        daemon.tick("check_failure_alert_sensor")
        phase("alert sensor tick")
        seconds = time.perf_counter() - began
        runs = []
        for launched in daemon.launched[before:]:
            stats = self.instance.get_run_step_stats(launched.run_id)
            runs.append(RunCost(launched.run_id, launched.job, launched.assets, launched.success,
                                daemon.run_seconds.get(launched.run_id, 0.0),
                                {s.step_key: (s.end_time or 0.0) - (s.start_time or 0.0) for s in stats},
                                len(self.instance.all_logs(launched.run_id))))
        cost = DayCost(day, seconds, phases, runs, flights=self.flights(day), alerts=self.new_alerts(alerts_before),
                       ticks=daemon.ticks[ticks_before:])
        self.days.append(cost)
        return cost

    def alert_count(self) -> int:
        from mlsys_assets.core.alerts import read_alerts

        return len(read_alerts())

    def new_alerts(self, before: int) -> list[str]:
        from mlsys_assets.core.alerts import read_alerts

        frame = read_alerts().iloc[before:]
        return [f"{kind} {subject}" for kind, subject in zip(frame["kind"], frame["subject"], strict=True)]

    def flights(self, day: str) -> int:
        from mlsys_assets.core.warehouse import scalar, table_exists
        from mlsys_assets.resources import Warehouse

        table = f"raw_{self.system.prediction.entity}"  # raw_flights
        with Warehouse.from_env().get_connection(self.system.name) as con:
            if not table_exists(con, table):
                return 0
            return int(scalar(con, f"SELECT count(*) FROM {table} WHERE partition_date = CAST(? AS DATE)", [day]))

    def champion(self) -> str | None:
        from mlsys_assets.resources import MlflowStore

        self.activate()
        return MlflowStore.from_env().registry(self.system).alias_version("champion")


class TrivialRuns:
    """Daily-partitioned assets that do nothing, in the real steps' `warehouse` pool, run in-process."""

    def __init__(self, steps: int) -> None:
        from dagster import Definitions, asset, in_process_executor

        from mlsys_assets.partitions import partitions_def

        partitions = partitions_def(declared_system().partitions)  # the real steps' daily partitions
        assets, previous = [], None
        for number in range(steps):
            @asset(name=f"benchmark_trivial_{number}", partitions_def=partitions, pool="warehouse",
                   deps=[previous] if previous is not None else [], group_name="benchmark_trivial")
            def _nothing(context) -> None:
                return None

            assets.append(_nothing)
            previous = _nothing
        self.keys = [a.key for a in assets]
        self.job = Definitions(assets=assets, executor=in_process_executor).resolve_implicit_global_asset_job_def()

    def run(self, instance, day: str, steps: int | None = None) -> float:
        """Seconds for one run of the first `steps` assets (all by default) for `day`."""
        selection = self.keys[:steps] if steps else None
        began = time.perf_counter()
        result = self.job.execute_in_process(instance=instance, partition_key=day, asset_selection=selection,
                                             run_config=SILENT, raise_on_error=False)
        seconds = time.perf_counter() - began
        if not result.success:
            raise RuntimeError("a trivial run failed")
        return seconds

    def like(self, instance, day: str, cost: DayCost) -> float:
        """Seconds for trivial runs shaped like a day's real runs (as many runs, as many steps each)."""
        return sum(self.run(instance, day, len(run.steps)) for run in cost.runs if run.steps)


def stage_totals(days: list[DayCost]) -> dict[str, float]:
    """Seconds per step key summed over days, plus Dagster's run overhead and each sensor's evaluation."""
    totals: dict[str, float] = defaultdict(float)
    for cost in days:
        for run in cost.runs:
            prefix = "retraining: " if run.job == RETRAINING_JOB else ""
            for step, seconds in run.steps.items():
                totals[prefix + step] += seconds
            totals["Dagster run overhead (run wall - its steps)"] += run.seconds - sum(run.steps.values())
        evaluated = 0.0
        for name, (_, seconds) in cost.tick_seconds().items():
            totals[f"evaluating {name}"] += seconds
            evaluated += seconds
        totals["other (file delivery, tick bookkeeping)"] += cost.sensor_seconds - evaluated
    return dict(totals)


def event_write_ms(instance, count: int = 40) -> float:
    """Median milliseconds to store one event in this instance's event log (a runless observation of a
    benchmark-only asset key): what each of a run's events costs on this machine's disk."""
    from dagster import AssetObservation

    times = []
    for number in range(count):
        began = time.perf_counter()
        instance.report_runless_asset_event(AssetObservation(asset_key="benchmark_event_probe",
                                                             metadata={"n": number}))
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return times[len(times) // 2]
