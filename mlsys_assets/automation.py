"""When things run: the landing sensor, declarative automation downstream of raw data, the retraining sensor,
alerts, and the schedules."""

import json
from collections.abc import Sequence

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    MaterializeResult,
    RunFailureSensorContext,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    run_failure_sensor,
    sensor,
)

from mlsys_assets.metadata import accounted, markdown_table, table_metadata
from mlsys_assets.naming import Names
from mlsys_assets.resources import AutomationPolicy, LandingZone, Warehouse

OWNERS = ["team:ml-platform"]

AC = AutomationCondition
RETRAIN_TRIGGER_CHECKS = (("feature_drift", "features_within_drift_threshold"),
                          ("live_performance", "performance_above_floor"))  # (asset of the system, check)


def when_upstream_day_updates(ignore: Sequence[str] = ()) -> AutomationCondition:
    """Dagster's eager condition for every daily partition, not only the latest one, that also waits while an
    upstream blocking check has failed. `ignore` names upstream assets whose updates should not rerun every day
    (a new drift reference must not recompute a year of drift). Days that arrived before the first champion are
    judged once it exists (their updates are remembered until handled)."""
    updated = AC.any_deps_updated()
    if ignore:
        updated = updated.ignore(AssetSelection.assets(*ignore))
    return (
        (AC.newly_missing() | updated).since_last_handled()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    ).with_label("when the upstream day updates and its blocking checks passed")


def when_all_upstream_days_exist(ignore: Sequence[str] = ()) -> AutomationCondition:
    """For an asset that reads a later upstream day (live performance of D needs the features of D + 1, its
    labels): like `when_upstream_day_updates`, but only once every mapped upstream partition is materialized,
    not merely about to be. Dagster's eager conditions let a partition run in the same tick as a missing
    upstream partition that is being requested, and two runs of one tick may start in any order."""
    updated = AC.any_deps_match(AC.newly_updated())
    if ignore:
        updated = updated.ignore(AssetSelection.assets(*ignore))
    return (
        (AC.newly_missing() | updated).since_last_handled()
        & ~AC.any_deps_match(AC.missing() | AC.will_be_requested() | AC.in_progress())
        & ~AC.in_progress()
        & AC.all_deps_blocking_checks_passed()
    ).with_label("when every upstream day it reads exists and its blocking checks passed")


def condition_for(names: Names, asset: str) -> AutomationCondition | None:
    """The automation policy of a system, in one place: when each generated asset is requested (None: only by a
    sensor, a schedule or a person). Every partition follows its own upstream partitions."""
    system = names.system
    reference = [names.key("drift_reference")]
    daily = {*(f"validated_{s.name}" for s in system.sources), *(f"quarantined_{s.name}" for s in system.sources),
             "features", "batch_predictions", *(f"online_{s.name}" for s in system.lookups)}
    if asset in daily:
        return when_upstream_day_updates()
    if asset in ("feature_drift", "prediction_drift"):
        # a new drift reference (a new champion) must not recompute a year of drift: only new days are judged by it
        return when_upstream_day_updates(ignore=reference)
    if asset == "live_performance":
        return when_all_upstream_days_exist(ignore=reference)
    if asset in ("drift_reference", "online_baseline"):
        return AutomationCondition.eager()  # follows the champion
    return None


automation_sensor = AutomationConditionSensorDefinition(
    "automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    use_user_code_server=True,
    emit_backfills=False,
    description="Requests each daily asset partition once its upstream partitions update and their blocking "
                "checks pass.",
)


def system_sensors(names: Names) -> list:
    """The system's landing-files sensor (new files -> raw partitions) and retraining sensor."""
    system = names.system

    @sensor(
        name=names.job("landing_files_sensor"),
        target=AssetSelection.assets(*(names.key(f"raw_{source.name}") for source in system.sources)),
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Each day with new or changed landing files requests one run of its raw partitions; an "
                    "unreadable file is reported by name and skipped.",
    )
    def landing_files_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult | SkipReason:

        from mlsys_assets.core.alerts import record_alert
        from mlsys_assets.core.landing import scan_landing

        seen = json.loads(context.cursor) if context.cursor else {}
        changed, problems = scan_landing(landing.path, system, seen)
        for path, problem, fingerprint in problems:
            context.log.warning(f"skipped landing file {path}: {problem}")
            record_alert("bad_landing_file", str(path), problem, where_to_look=str(path), severity="warning")
            seen[str(path)] = fingerprint
        by_day: dict[str, list] = {}
        for landed in changed:
            seen[str(landed.path)] = landed.fingerprint
            by_day.setdefault(landed.day, []).append(landed)
        requests = []
        for day, files in sorted(by_day.items()):  # one run per day, whichever of its files arrived
            requests.append(RunRequest(
                # content and mtime: a file changed back to an earlier content is still a new arrival
                run_key="+".join(f"{f.source}/{day}/{f.fingerprint[2][:16]}/{f.fingerprint[0]}" for f in files),
                partition_key=day, asset_selection=[names.key(f"raw_{f.source}") for f in files],
                tags={"mlsys/landing_files": ", ".join(str(f.path) for f in files)}))
        if not requests:
            named = "; ".join(f"{path}: {problem}" for path, problem, _ in problems[:3])
            return SensorResult(skip_reason=SkipReason(
                f"no new readable landing files; skipped {len(problems)} unreadable: {named}" if problems
                else "no new landing files"), cursor=json.dumps(seen))
        return SensorResult(run_requests=requests, cursor=json.dumps(seen))


    @sensor(
        name=names.job("retraining_sensor"),
        job_name=names.job("retraining"),
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Requests the first training once enough days of features exist, then a retraining whenever a "
                    "drift or live-performance check fails with error severity, at most once per cooldown (counted in "
                    "data days) however many days failed.",
    )
    def retraining_sensor(context: SensorEvaluationContext, automation: AutomationPolicy) -> SensorResult | SkipReason:
        state = {"last_id": 0, "last_trigger_day": None,
                 **(json.loads(context.cursor) if context.cursor else {})}
        failures = _failed_trigger_checks(names, context.instance, after_id=state["last_id"])
        state["last_id"] = max([state["last_id"], *(f[0] for f in failures)])

        def skip(reason: str) -> SensorResult:
            return SensorResult(skip_reason=SkipReason(reason), cursor=json.dumps(state))

        def request(key: str, reason: str, checks: str, day: str) -> SensorResult:
            state["last_trigger_day"] = day
            context.log.info(f"requesting retraining: {reason}")
            return SensorResult(run_requests=[RunRequest(run_key=f"retrain/{key}", tags={
                "mlsys/retrain_reason": reason, "mlsys/trigger_check": checks, "mlsys/trigger_day": day,
                "mlsys/failed_checks": str(len(failures))})], cursor=json.dumps(state))

        if context.instance.get_latest_materialization_event(names.key("champion_model")) is None:
            # no champion means no drift reference and no live performance: no check can fail, so retrain by the
            # calendar of the data until a candidate clears the absolute floor
            days = sorted(context.instance.get_materialized_partitions(names.key("features")))
            if len(days) < automation.min_history_days:
                return skip(f"no champion yet; the first training waits for {automation.min_history_days} days of "
                            f"features ({len(days)} so far)")
            last = state["last_trigger_day"]
            if last and _days_between(last, days[-1]) < automation.retrain_cooldown_days:
                return skip(f"no champion yet; the last training (data up to {last}) was not promoted, the next waits "
                            f"for {automation.retrain_cooldown_days} more days of data")
            return request(f"bootstrap/{days[-1]}", f"no champion yet: training on {len(days)} days of features up to "
                                                    f"{days[-1]}", "bootstrap", days[-1])
        if not failures:
            return skip("no failed drift or performance checks")
        if not automation.retrain_on_checks:
            return skip("retraining on checks is switched off")
        latest = max(f[1] for f in failures)
        last = state["last_trigger_day"]
        if last and latest and _days_between(last, latest) < automation.retrain_cooldown_days:
            context.log.info(f"{len(failures)} failed checks up to {latest}, inside the cooldown after {last}")
            return skip(f"{len(failures)} failed checks up to {latest}, within the "
                        f"{automation.retrain_cooldown_days}-day cooldown after the retraining triggered by {last}")
        by_check: dict[str, list[str]] = {}
        for _, day, check_name, asset_name in sorted(failures, key=lambda f: f[1]):
            by_check.setdefault(f"{check_name} ({asset_name})", []).append(day)
        reason = "; ".join(f"{check} failed on {', '.join(days[:3])}" + (f" (+{len(days) - 3} more)" if len(days) > 3
                                                                           else "") for check, days in by_check.items())
        checks = ",".join(sorted({f[2] for f in failures}))
        return request(str(state["last_id"]), reason, checks, latest)

    return [landing_files_sensor, retraining_sensor]


def _failed_trigger_checks(names: Names, instance: object, after_id: int) -> list[tuple[int, str, str, str]]:
    """(record id, day, check, asset) of every error-severity failure of a trigger check after `after_id`."""
    from mlsys_assets.dagster_internal import check_executions

    failures = []
    for asset_name, check_name in RETRAIN_TRIGGER_CHECKS:
        records = check_executions(instance, AssetCheckKey(names.key(asset_name), check_name), limit=1000,
                                   failed_only=True)
        failures += [(r.id, r.partition or "", check_name, asset_name) for r in records
                     if r.id > after_id and _severity(r) == "error"]  # warnings only alert
    return failures


def _severity(record: object) -> str:
    evaluation = record.event.dagster_event.event_specific_data if record.event else None
    return evaluation.severity.value.lower() if evaluation is not None else "error"


def _check_message(name: str, record: object) -> str:
    """What failed, with the check's own numbers (its metadata's scalars: value, threshold...) and partition."""
    evaluation = record.event.dagster_event.event_specific_data if record.event else None
    shown = []
    for label, value in (evaluation.metadata.items() if evaluation is not None else ()):
        value = getattr(value, "value", value)
        if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 80 and "\n" not in value):
            shown.append(f"{label}={value:.4g}" if isinstance(value, float) else f"{label}={value}")
    where = f" on {record.partition}" if record.partition else ""
    return f"check {name} failed{where}" + (f": {', '.join(shown[:8])}" if shown else "")


def _days_between(first: str, second: str) -> int:
    """Whole days from one partition key to another (hourly keys count their days too)."""
    from datetime import date

    return (date.fromisoformat(second[:10]) - date.fromisoformat(first[:10])).days


@run_failure_sensor(default_status=DefaultSensorStatus.RUNNING, monitor_all_code_locations=False,
                    description="Writes every failed run to the alerts log with what failed and where to look.")
def run_failure_alert_sensor(context: RunFailureSensorContext) -> None:
    from mlsys_assets.core.alerts import record_alert

    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "")
    failed_steps = [e.step_key for e in context.get_step_failure_events()]
    record_alert("run_failure", f"{run.job_name} {partition}".strip(),
                 f"steps {failed_steps or '?'} failed: {context.failure_event.message}",
                 where_to_look=f"Dagster UI: /runs/{run.run_id}", run_id=run.run_id)


@sensor(minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        target=AssetSelection.assets("alerts"),
        description="Writes every failed asset check to the alerts log and refreshes the alerts table.")
def check_failure_alert_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    from mlsys_assets.core.alerts import record_alert
    from mlsys_assets.dagster_internal import check_executions

    last_id = int(context.cursor or 0)
    check_keys = sorted(context.repository_def.asset_graph.asset_check_keys, key=str)
    newest = last_id
    raised = 0
    for key in check_keys:
        for record in check_executions(context.instance, key, limit=200, failed_only=True):
            if record.id <= last_id:
                continue
            newest = max(newest, record.id)
            severity = _severity(record)
            record_alert("check_failure", f"{key.asset_key.to_user_string()}:{key.name} {record.partition or ''}",
                         _check_message(key.name, record), where_to_look=f"Dagster UI: /runs/{record.run_id}",
                         severity=severity, run_id=record.run_id)
            raised += 1
    if not raised:
        return SensorResult(skip_reason=SkipReason("no new failed checks"), cursor=str(newest))
    return SensorResult(run_requests=[RunRequest(run_key=f"alerts/{newest}")], cursor=str(newest))


@asset(group_name="automation", kinds={"duckdb"}, owners=OWNERS, pool="warehouse")
@accounted
def alerts(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    """Every alert raised (failed runs, failed checks, unreadable landing files), from the alerts log under
    MLSYS_HOME; the log is the source, so raising an alert never waits for the warehouse."""
    from mlsys_assets.core.alerts import read_alerts
    from mlsys_assets.core.catalog import describe
    from mlsys_assets.core.warehouse import replace_table

    frame = read_alerts()
    with warehouse.get_connection() as con:
        replace_table(con, "alerts", frame)
        describe(con, None)
    counts = frame.groupby(["kind", "severity"]).size().rename("alerts").reset_index() if len(frame) else frame
    return MaterializeResult(metadata={**table_metadata(frame.tail(10)), "dagster/row_count": len(frame),
                                       "by_kind": markdown_table(counts)})


def system_schedules(names: Names) -> list[ScheduleDefinition]:
    """The morning report and the fallback weekly retraining (both stopped by default)."""
    return [
        ScheduleDefinition(
            name=names.job("daily_monitoring_schedule"), cron_schedule="0 6 * * *",
            target=AssetSelection.assets(names.key("monitoring_report")), default_status=DefaultScheduleStatus.STOPPED,
            description="Rebuilds the monitoring report every morning at 06:00 UTC."),
        ScheduleDefinition(
            name=names.job("weekly_retraining_schedule"), cron_schedule="0 3 * * 1", job_name=names.job("retraining"),
            default_status=DefaultScheduleStatus.STOPPED, tags={"mlsys/retrain_reason": "weekly fallback schedule"},
            description="Retrains every Monday at 03:00 UTC even if no check failed (the fallback)."),
    ]
