"""The Dagster instance under MLSYS_HOME: where it lives and the settings a new one starts with."""

from __future__ import annotations

import os
from pathlib import Path

from mlsys_assets.settings import dagster_home

INSTANCE_YAML = """\
# Written by mlsys for a new instance; edit freely, it is never overwritten.
# One consolidated SQLite event log: about twice as fast per run as the default run-sharded one, and its
# event ids are global, which the sensors' cursors rely on.
run_storage:
  module: dagster._core.storage.runs
  class: SqliteRunStorage
  config: {{base_dir: "{home}/history"}}
event_log_storage:
  module: dagster._core.storage.event_log
  class: ConsolidatedSqliteEventLogStorage
  config: {{base_dir: "{home}/history"}}
schedule_storage:
  module: dagster._core.storage.schedules
  class: SqliteScheduleStorage
  config: {{base_dir: "{home}/schedules"}}
telemetry:
  enabled: false
nux:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    # Steps in the "warehouse" pool write the single-writer DuckDB file: one at a time.
    default_limit: 1
"""


def prepare_dagster_home() -> Path:
    """Point DAGSTER_HOME at `MLSYS_HOME/dagster` unless it is set, and give a new instance its settings."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML.format(home=home))
    os.environ["DAGSTER_HOME"] = str(home)
    return home
