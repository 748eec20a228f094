"""What `mlsys demo` prints about live performance names and shows the gate's own metric: AUC for flights, the
mean absolute error of a regression system (it printed "live AUC ... -" for one, found replaying a second system)."""

from __future__ import annotations

import duckdb

from mlsys_assets.demo import live_text, metric_label
from mlsys_tests.conftest import FLIGHTS_SYSTEM
from mlsys_tests.meters_system import meters


def _live_table() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE live_performance (partition_date DATE, source VARCHAR, model_version VARCHAR, "
                "role VARCHAR, span VARCHAR, roc_auc DOUBLE, mae DOUBLE)")
    con.execute("INSERT INTO live_performance VALUES ('2024-03-02', 'batch', '3', 'champion', 'rolling_6d', NULL, "
                "243.4878), ('2024-03-02', 'batch', '3', 'champion', 'day', NULL, 1.0), "
                "('2013-04-15', 'batch', 'baseline', 'champion', 'rolling_7d', 0.6361, NULL)")
    return con


def test_the_demo_shows_the_gate_metric_of_each_system() -> None:
    con = _live_table()
    assert metric_label(meters) == "MAE" and metric_label(FLIGHTS_SYSTEM) == "AUC"
    assert live_text(meters, con, "2024-03-03") == "live MAE, last 6 labelled days 243.5 (v3)"
    assert live_text(FLIGHTS_SYSTEM, con, "2013-04-16") == "live AUC, last 7 labelled days 0.636 (baseline)"
    assert live_text(meters, con, "2024-03-10") == "live MAE, last 6 labelled days -"
