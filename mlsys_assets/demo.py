"""The demo: land days of 2013 and push each through the daily pipeline on the embedded default."""

from __future__ import annotations

import time

from mlsys_assets.core.landing import day_range, land_default_data

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(start: str, end: str) -> int:
    from dagster import DagsterInstance

    from mlsys_assets.core.warehouse import read_frame
    from mlsys_assets.definitions import build_defs
    from mlsys_assets.resources import LandingZone, Warehouse

    landing, warehouse = LandingZone.from_env(), Warehouse.from_env()
    days = day_range(start, end)
    written = land_default_data(landing.path, start, end)
    print(f"landed {len(days)} days ({start} .. {end}) into {landing.path}: "
          + ", ".join(f"{n} new {s} files" for s, n in written.items()), flush=True)
    job = build_defs().resolve_job_def("daily_pipeline")
    instance = DagsterInstance.get()
    failed: list[str] = []
    started = time.monotonic()
    for number, day in enumerate(days, start=1):
        result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False,
                                        tags={"mlsys/launched_by": "demo"}, run_config=QUIET)
        if not result.success:
            failed.append(day)
        elapsed = time.monotonic() - started
        print(f"[{number:>3}/{len(days)}] {day} {'ok' if result.success else 'FAILED'} "
              f"run {result.run_id[:8]} ({elapsed:.0f} s)", flush=True)
    with warehouse.get_connection() as con:
        summary = read_frame(con, """
            SELECT (SELECT count(*) FROM raw_flights) AS raw_flights,
                   (SELECT count(*) FROM validated_flights) AS validated_flights,
                   (SELECT count(*) FROM quarantined_flights) AS quarantined_flights,
                   (SELECT count(*) FROM raw_weather) AS raw_weather,
                   (SELECT count(*) FROM validated_weather) AS validated_weather,
                   (SELECT count(*) FROM quarantined_weather) AS quarantined_weather,
                   (SELECT count(*) FROM flight_features) AS feature_rows,
                   (SELECT avg(is_delayed) FROM flight_features) AS delayed_rate
        """).to_dict("records")[0]
        reasons = read_frame(con, """
            SELECT 'flights' AS source, failed_checks, count(*) AS rows FROM quarantined_flights GROUP BY ALL
            UNION ALL
            SELECT 'weather', failed_checks, count(*) FROM quarantined_weather GROUP BY ALL
            ORDER BY rows DESC LIMIT 8""")
    print("\nsummary")
    for key, value in summary.items():
        print(f"  {key:22} {value:,.3f}" if isinstance(value, float) else f"  {key:22} {value:,}")
    if len(reasons):
        print("quarantine reasons")
        for row in reasons.itertuples(index=False):
            print(f"  {row.source:8} {row.rows:>6,}  {row.failed_checks}")
    if failed:
        print(f"days that failed: {', '.join(failed)} (see `make dev` for the runs)")
    print("next: `make dev` and open http://127.0.0.1:3000 to see the lineage, runs and checks")
    return 1 if failed else 0
