"""The demo: land days of 2013, run the daily pipeline on each, train and promote a model, score the days."""

from __future__ import annotations

import time

from mlsys_assets.core.landing import day_range, land_default_data

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _progress(number: int, total: int, label: str, ok: bool, started: float) -> None:
    print(f"[{number:>3}/{total}] {label} {'ok' if ok else 'FAILED'} ({time.monotonic() - started:.0f} s)", flush=True)


def run_demo(start: str, end: str) -> int:
    from dagster import DagsterInstance

    from mlsys_assets.core.warehouse import read_frame, table_exists
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.resources import LandingZone, Warehouse

    landing, warehouse = LandingZone.from_env(), Warehouse.from_env()
    days = day_range(start, end)
    written = land_default_data(landing.path, start, end)
    print(f"landed {len(days)} days ({start} .. {end}) into {landing.path}: "
          + ", ".join(f"{n} new {s} files" for s, n in written.items()), flush=True)
    defs = build_defs()
    instance = DagsterInstance.get()
    tags = {"mlsys/launched_by": "demo"}
    failed: list[str] = []
    started = time.monotonic()

    print("\n1. daily pipeline: raw -> validated -> features -> batch predictions, one run per day")
    daily = defs.resolve_job_def("daily_pipeline")
    for number, day in enumerate(days, start=1):
        result = daily.execute_in_process(partition_key=day, instance=instance, raise_on_error=False, tags=tags,
                                          run_config=QUIET)
        failed += [] if result.success else [day]
        _progress(number, len(days), day, result.success, started)

    print("\n2. retraining: training set -> candidate -> evaluation -> promotion gate")
    retrain = defs.resolve_job_def("retraining").execute_in_process(
        instance=instance, raise_on_error=False, tags=tags, run_config=QUIET)
    print(f"retraining run {retrain.run_id[:8]}: {'promoted' if retrain.success else 'not promoted'}")

    print("\n3. batch scoring of every day with the champion")
    scoring = defs.resolve_job_def("batch_scoring")
    for number, day in enumerate(days, start=1):
        result = scoring.execute_in_process(partition_key=day, instance=instance, raise_on_error=False, tags=tags,
                                            run_config=QUIET)
        failed += [] if result.success else [f"{day} (scoring)"]
        if number in (1, len(days)) or number % 10 == 0:
            _progress(number, len(days), day, result.success, started)

    with warehouse.get_connection() as con:
        summary = read_frame(con, """
            SELECT (SELECT count(*) FROM raw_flights) AS raw_flights,
                   (SELECT count(*) FROM validated_flights) AS validated_flights,
                   (SELECT count(*) FROM quarantined_flights) AS quarantined_flights,
                   (SELECT count(*) FROM raw_weather) AS raw_weather,
                   (SELECT count(*) FROM validated_weather) AS validated_weather,
                   (SELECT count(*) FROM quarantined_weather) AS quarantined_weather,
                   (SELECT count(*) FROM flight_features) AS feature_rows,
                   (SELECT avg(is_delayed) FROM flight_features) AS delayed_rate,
                   (SELECT count(*) FROM batch_predictions) AS predictions
        """).to_dict("records")[0]
        reasons = read_frame(con, """
            SELECT 'flights' AS source, failed_checks, count(*) AS rows FROM quarantined_flights GROUP BY ALL
            UNION ALL
            SELECT 'weather', failed_checks, count(*) FROM quarantined_weather GROUP BY ALL
            ORDER BY rows DESC LIMIT 8""")
        history = read_frame(con, "SELECT action, candidate_version, champion_after, reason FROM promotion_history "
                                  "ORDER BY decided_at") if table_exists(con, "promotion_history") else None
        scored = read_frame(con, "SELECT model_version, count(*) AS rows, avg(probability) AS mean_probability "
                                 "FROM batch_predictions GROUP BY ALL ORDER BY ALL")
        evaluation = read_frame(con, "SELECT role, model_version, roc_auc, average_precision, log_loss, brier, "
                                     "precision, recall FROM model_evaluations WHERE slice = 'overall' "
                                     "AND evaluated_run_id = ?", [retrain.run_id]) \
            if table_exists(con, "model_evaluations") else None

    print("\nsummary")
    for key, value in summary.items():
        print(f"  {key:22} {value:,.3f}" if isinstance(value, float) else f"  {key:22} {value:,}")
    if len(reasons):
        print("quarantine reasons")
        for row in reasons.itertuples(index=False):
            print(f"  {row.source:8} {row.rows:>6,}  {row.failed_checks}")
    if evaluation is not None and len(evaluation):
        print("holdout evaluation")
        print("  " + evaluation.round(4).to_string(index=False).replace("\n", "\n  "))
    if history is not None and len(history):
        print("promotion history")
        for row in history.itertuples(index=False):
            print(f"  {row.action:8} version {row.candidate_version:>3} -> champion {row.champion_after}: {row.reason}")
    print("predictions by model version")
    print("  " + scored.round(4).to_string(index=False).replace("\n", "\n  "))
    if failed:
        print(f"failed: {', '.join(failed)} (see `make dev` for the runs)")
    print("\nnext: `make dev` (Dagster UI, http://127.0.0.1:3000) and `make mlflow` (MLflow UI, http://127.0.0.1:5000)")
    return 1 if failed else 0
