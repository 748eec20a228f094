"""Alerts: appended as JSON lines under MLSYS_HOME, so whoever raises one never waits for the warehouse lock.

The `alerts` asset loads the lines into the warehouse table of the same name.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ALERT_COLUMNS = ("raised_at", "kind", "severity", "subject", "message", "where_to_look", "run_id")


def alerts_dir() -> Path:
    from mlsys_assets.settings import home_path

    return Path(home_path("MLSYS_ALERTS_DIR", "alerts"))


def record_alert(kind: str, subject: str, message: str, where_to_look: str = "", severity: str = "error",
                 run_id: str = "", directory: Path | None = None) -> dict[str, str]:
    """Append one alert; the file is per process, so concurrent writers never interleave lines."""
    folder = directory or alerts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    alert = {"raised_at": datetime.now(UTC).isoformat(timespec="seconds"), "kind": kind, "severity": severity,
             "subject": subject, "message": message, "where_to_look": where_to_look, "run_id": run_id}
    with open(folder / f"alerts-{os.getpid()}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(alert) + "\n")
    return alert


def read_alerts(directory: Path | None = None) -> pd.DataFrame:
    """Every alert raised so far, oldest first (a torn last line from a crashed writer is skipped)."""
    rows = []
    for path in sorted((directory or alerts_dir()).glob("alerts-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    frame = pd.DataFrame(rows, columns=list(ALERT_COLUMNS))
    # written in ISO 8601 with the zone: read as a UTC timestamp, so the warehouse column is a TIMESTAMP
    frame["raised_at"] = pd.to_datetime(frame["raised_at"], utc=True, format="ISO8601").dt.tz_convert(None)
    return frame.sort_values("raised_at", kind="stable").reset_index(drop=True)
