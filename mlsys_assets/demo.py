"""The demo: replay a stretch of 2013 as if it were happening. Each day's files land, and the sensors and
automation conditions of the code location do the rest (through the in-process daemon, against the real
instance under MLSYS_HOME): ingestion, validation, features, scoring, drift, live performance, the first
training once enough history exists, retraining when a check fails, alerts. The demo itself decides nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mlsys_assets.core.landing import day_range, deliver_day, land_default_data


@dataclass
class DayLog:
    day: str
    seconds: float
    runs: int
    failed_runs: list[str] = field(default_factory=list)
    retrainings: list[str] = field(default_factory=list)


def _retraining_outcome(con, run) -> str:
    from mlsys_assets.core.warehouse import read_frame, table_exists

    decision = read_frame(con, "SELECT action, candidate_version, champion_after, reason FROM promotion_history "
                               "WHERE dagster_run_id = ? ORDER BY decided_at DESC LIMIT 1", [run.run_id]) \
        if table_exists(con, "promotion_history") else None
    if decision is None or decision.empty:
        return "no decision (run failed before the gate)" if not run.success else "no decision"
    row = decision.iloc[0]
    after = row["champion_after"] if isinstance(row["champion_after"], str) else None
    reason = row["reason"] if len(row["reason"]) <= 150 else row["reason"][:147] + "..."
    return f"{row['action']} v{row['candidate_version']}, @champion {'v' + after if after else 'none'}: {reason}"


def _version(version: object) -> str:
    return "baseline" if version in (None, "baseline") else f"v{version}"


def _day_line(names, con, instance, day: str) -> str:
    from dagster import AssetCheckKey

    from mlsys_assets.core.warehouse import read_frame, table_exists
    from mlsys_assets.dagster_internal import check_executions

    def scalar(sql: str, params: list) -> object:
        frame = read_frame(con, sql, params)
        return frame.iloc[0, 0] if len(frame) else None

    entity = names.system.prediction.entity
    rows = scalar(f"SELECT count(*) FROM raw_{entity} WHERE partition_date = ?", [day]) \
        if table_exists(con, f"raw_{entity}") else 0
    quarantined = scalar(f"SELECT count(*) FROM quarantined_{entity} WHERE partition_date = ?", [day]) \
        if table_exists(con, f"quarantined_{entity}") else 0
    scorer = scalar("SELECT any_value(model_version) FROM batch_predictions WHERE partition_date = ? "
                    "AND role = 'champion'", [day]) if table_exists(con, "batch_predictions") else None
    check = AssetCheckKey(names.key("feature_drift"), "features_within_drift_threshold")
    records = check_executions(instance, check, limit=1)
    drift = "-"
    if records and records[0].partition == day:
        drift = "DRIFTED" if records[0].status.value == "FAILED" else "no"
    return (f"{day}  {entity} {rows:>4} ({quarantined} quarantined)  scored by "
            f"{_version(scorer):8}  drift {drift:7}  {live_text(names.system, con, day)}")


def metric_label(system) -> str:
    """How the demo names the gate's metric: "AUC" for roc_auc, else the metric's own name in capitals."""
    return "AUC" if system.gate.metric == "roc_auc" else system.gate.metric.upper()


def live_text(system, con, day: str) -> str:
    """The champion's live value of the gate's metric over the last labelled days, as of `day`."""
    from mlsys_assets.core.warehouse import read_frame, table_exists

    metric = system.gate.metric
    live = read_frame(con, f'SELECT model_version, "{metric}" AS value FROM live_performance WHERE source = '
                           "'batch' AND role = 'champion' AND span <> 'day' AND partition_date = CAST(? AS DATE) - 1",
                      [day]) if table_exists(con, "live_performance") else None
    shown = "-"
    if live is not None and len(live) and live["value"].notna().iloc[0]:
        value = float(live["value"].iloc[0])
        shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        shown += f" ({_version(live['model_version'].iloc[0])})"
    return f"live {metric_label(system)}, last {system.monitoring.rolling_days} labelled days {shown}"


def run_demo(start: str, end: str, system_name: str | None = None) -> int:
    import logging

    from dagster import DagsterInstance

    from mlsys_assets.core.storage import ensure_writable
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.naming import Names
    from mlsys_assets.replay import InProcessDaemon
    from mlsys_assets.resources import AutomationPolicy, LandingZone, Warehouse
    from mlsys_assets.settings import mlsys_home
    from mlsys_assets.systems import system_named

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Created version 3 ...": the demo says it itself
    landing, warehouse = LandingZone.from_env(), Warehouse.from_env()
    system = system_named(system_name)
    names = Names(system)
    retraining = names.job("retraining")
    days = day_range(start, end)
    defs = build_defs()
    instance = DagsterInstance.get()
    # the gate's rejections fail their runs by design (a blocking check); the demo reports them itself
    daemon = InProcessDaemon(defs, instance, run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                             console_level=logging.WARNING)
    daemon.start()
    feed = Path(mlsys_home()) / "feed"  # staged once under MLSYS_HOME, delivered one day at a time
    land_default_data(system, feed, start, end)
    policy = AutomationPolicy.from_env()
    print(f"replaying {len(days)} days ({start} .. {end}): each day's files land in {landing.path} and the "
          f"sensors and automation of the code location take it from there.\nThe first training waits for "
          f"{policy.min_history_days} days of features; a failed drift or performance check retrains at most "
          f"once per {policy.retrain_cooldown_days} days.\n", flush=True)
    logs: list[DayLog] = []
    started = time.monotonic()
    for day in days:
        day_started = time.monotonic()
        before = len(daemon.launched)
        deliver_day(system, feed, landing.path, day)
        daemon.tick(names.job("landing_files_sensor"))
        daemon.settle(max_ticks=2)  # what is still pending after two ticks is picked up with the next day
        retrains = daemon.tick(names.job("retraining_sensor"))
        if retrains:
            daemon.settle(max_ticks=2)
        daemon.tick("check_failure_alert_sensor")
        runs = daemon.launched[before:]
        log = DayLog(day, time.monotonic() - day_started, len(runs),
                     [f"{r.job} {r.partition or ''} ({', '.join(r.assets) or 'all'})".strip() for r in runs
                      if not r.success and r.job != retraining])
        with warehouse.get_connection(system.name) as con:
            print(_day_line(names, con, instance, day) + f"  [{len(runs)} runs, {log.seconds:.1f} s]", flush=True)
            for run in retrains:
                log.retrainings.append(run.run_id)
                print(f"    retraining requested by {run.sensor}: {run.tags['mlsys/retrain_reason']}\n"
                      f"    -> {_retraining_outcome(con, run)}", flush=True)
        for failed in log.failed_runs:
            print(f"    FAILED run: {failed}", flush=True)
        logs.append(log)
        if log.failed_runs:  # a full or read-only disk fails every later day too: stop and say so
            for folder in {mlsys_home(), Path(warehouse.database).parent}:
                ensure_writable(folder, warehouse.min_free_mb)

    daemon.settle()
    report = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[names.key("monitoring_report")], raise_on_error=False,
        tags={"dagster/schedule_name": names.job("daily_monitoring_schedule"), "mlsys/launched_by": "demo"},
        run_config=daemon.run_config)
    report_path = None
    for event in report.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            meta = event.event_specific_data.materialization.metadata
            report_path = next((v.value for k, v in meta.items() if k in ("path", "report")), None)
    _summary(names, warehouse, instance, daemon, logs, time.monotonic() - started, report_path)
    return 1 if any(log.failed_runs for log in logs) or not report.success else 0


def _drifted_days(names, instance) -> list[str]:
    """Days whose latest drift check failed."""
    from dagster import AssetCheckKey

    from mlsys_assets.dagster_internal import check_executions

    check = AssetCheckKey(names.key("feature_drift"), "features_within_drift_threshold")
    latest: dict[str, str] = {}
    for record in reversed(check_executions(instance, check, limit=5000)):
        latest[record.partition or ""] = record.status.value
    return sorted(day for day, status in latest.items() if status == "FAILED")


def _summary(names, warehouse, instance, daemon, logs: list[DayLog], seconds: float, report_path: str | None) -> None:
    from mlsys_assets.core.warehouse import read_frame, table_exists

    def indent(frame) -> str:
        return "  " + frame.to_string(index=False).replace("\n", "\n  ")

    sources = [source.name for source in names.system.sources]
    with warehouse.get_connection(names.name) as con:
        counted = ", ".join(f"(SELECT count(*) FROM {stage}_{source}) AS {stage}_{source}"
                            for source in sources for stage in ("raw", "validated", "quarantined"))
        counts = read_frame(con, f"SELECT {counted}, (SELECT count(*) FROM batch_predictions) AS predictions").iloc[0]
        reasons = read_frame(con, " UNION ALL ".join(
            f"SELECT '{source}' AS source, failed_checks, count(*) AS rows FROM quarantined_{source} GROUP BY ALL"
            for source in sources) + " ORDER BY rows DESC LIMIT 5")
        metric = names.system.gate.metric
        history = read_frame(con, "SELECT strftime(decided_at, '%H:%M:%S') AS at, action, candidate_version AS "
                                  f"candidate, champion_after, round(candidate_value, 4) AS candidate_{metric}, "
                                  f"round(champion_value, 4) AS champion_{metric}, dagster_run_id FROM "
                                  "promotion_history ORDER BY decided_at") \
            if table_exists(con, "promotion_history") else None
        weekly = read_frame(con, f"""
            SELECT strftime(date_trunc('week', partition_date), '%Y-%m-%d') AS week_of,
                   string_agg(DISTINCT model_version, ',') AS champion, round(avg("{metric}"), 3) AS live_{metric},
                   round(sum(expected_cost), 0) AS expected_cost, sum(rows) AS labelled_rows
            FROM live_performance WHERE source = 'batch' AND role = 'champion' AND span = 'day'
            GROUP BY ALL ORDER BY 1""") if table_exists(con, "live_performance") else None
        alerts = read_frame(con, "SELECT kind, severity, count(*) AS alerts FROM alerts GROUP BY ALL ORDER BY ALL") \
            if table_exists(con, "alerts") else None

    print(f"\nsummary ({len(logs)} days in {seconds:.0f} s, {seconds / max(len(logs), 1):.1f} s a day, "
          f"{len(daemon.launched)} runs launched by sensors and automation)")
    for name, value in counts.items():
        print(f"  {name:22} {int(value):,}")
    if len(reasons):
        print("quarantine reasons (top 5)")
        print(indent(reasons))
    triggers = {run.run_id: run.tags.get("mlsys/trigger_check", "") for run in daemon.launched
                if run.job == names.job("retraining")}
    if history is not None and len(history):
        history["trigger"] = history.pop("dagster_run_id").map(triggers).fillna("manual")
        promoted = int((history["action"] == "promote").sum())
        by_drift = sum("features_within_drift_threshold" in t for t in triggers.values())
        by_performance = sum("performance_above_floor" in t for t in triggers.values())
        print(f"models: {len(history)} trained, {promoted} promoted; retrainings triggered by drift: {by_drift}, "
              f"by live performance: {by_performance}")
        print(indent(history))
    else:
        print("models: none trained yet (the first training waits for enough days of features)")
    drifted = _drifted_days(names, instance)
    print(f"drifted days: {len(drifted)}" + (f" ({', '.join(drifted)})" if drifted else ""))
    if weekly is not None and len(weekly):
        print("the champion's live metric over time (labels arrive a day late)")
        print(indent(weekly))
    if alerts is not None and len(alerts):
        print("alerts")
        print(indent(alerts))
    if report_path:
        print(f"monitoring report: {report_path}")
    failed = [f for log in logs for f in log.failed_runs]
    if failed:
        print(f"failed runs: {', '.join(failed)} (see `make dev`)")
    print("\nnext: `make dev` (Dagster UI, http://127.0.0.1:3000: runs, sensor ticks, lineage), `make mlflow` "
          "(MLflow UI, http://127.0.0.1:5000), `make serve` (the champion over HTTP)")
