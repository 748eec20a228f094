"""Alerts: appended as JSON lines under MLSYS_HOME, so whoever raises one never waits for the warehouse lock, and
delivered to a webhook when `MLSYS_ALERT_WEBHOOK_URL` is set (Slack-compatible JSON: `text`, plus the alert).

Delivery is at most once per alert: it happens where the alert is raised, once; a refused connection or a 5xx is
retried (a request that may have arrived, a timeout, is not), each POST carries the alert's id in
`X-Mlsys-Alert-Id` so a receiver can drop a repeat, and a failure is logged and never raised: an alert must not
fail the run or sensor that raises it. The `alerts` asset loads the lines into the warehouse table of the same name.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ALERT_COLUMNS = ("raised_at", "kind", "severity", "subject", "message", "where_to_look", "run_id", "alert_id",
                 "delivered")
RETRY_PAUSES = (0.2, 1.0)  # seconds before the second and third attempts
log = logging.getLogger("mlsys.alerts")


def alerts_dir() -> Path:
    from mlsys_assets.settings import home_path

    return Path(home_path("MLSYS_ALERTS_DIR", "alerts"))


def record_alert(kind: str, subject: str, message: str, where_to_look: str = "", severity: str = "error",
                 run_id: str = "", directory: Path | None = None) -> dict[str, str]:
    """Append one alert; the file is per process, so concurrent writers never interleave lines."""
    from mlsys_assets.settings import setting

    folder = directory or alerts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    alert = {"raised_at": datetime.now(UTC).isoformat(timespec="seconds"), "kind": kind, "severity": severity,
             "subject": subject, "message": message, "where_to_look": where_to_look, "run_id": run_id,
             "alert_id": uuid.uuid4().hex}
    url = setting("MLSYS_ALERT_WEBHOOK_URL")
    alert["delivered"] = deliver(alert, url, float(setting("MLSYS_ALERT_WEBHOOK_TIMEOUT_SECONDS"))) if url else "off"
    with open(folder / f"alerts-{os.getpid()}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(alert) + "\n")
    return alert


def deliver(alert: dict[str, str], url: str, timeout: float) -> str:
    """POST the alert to the webhook: "yes", or why not (logged, never raised)."""
    import urllib.error
    import urllib.request

    text = f"[{alert['severity']}] {alert['kind']}: {alert['subject']}: {alert['message']}" + (
        f" ({alert['where_to_look']})" if alert["where_to_look"] else "")
    body = json.dumps({"text": text, "alert": alert}).encode()
    problem = ""
    for attempt, pause in enumerate((0.0, *RETRY_PAUSES)):
        time.sleep(pause)
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-Mlsys-Alert-Id": alert["alert_id"]})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return "yes"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500:
                break  # the receiver refused this alert: sending it again changes nothing
        except urllib.error.URLError as exc:
            problem = f"{type(exc.reason).__name__}: {exc.reason}"
            if isinstance(exc.reason, TimeoutError):
                break  # it may have arrived: at most once
        except (TimeoutError, OSError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            break
        log.info("alert %s: attempt %d failed (%s)", alert["alert_id"], attempt + 1, problem)
    log.warning("alert %s (%s) was not delivered to the webhook: %s", alert["alert_id"], alert["kind"], problem)
    return f"no: {problem}"


def read_alerts(directory: Path | None = None) -> pd.DataFrame:
    """Every alert raised so far, oldest first (a torn last line from a crashed writer is skipped)."""
    rows = []
    for path in sorted((directory or alerts_dir()).glob("alerts-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    frame = pd.DataFrame(rows, columns=list(ALERT_COLUMNS)).astype({"alert_id": "str", "delivered": "str"})
    # written in ISO 8601 with the zone: read as a UTC timestamp, so the warehouse column is a TIMESTAMP
    frame["raised_at"] = pd.to_datetime(frame["raised_at"], utc=True, format="ISO8601").dt.tz_convert(None)
    return frame.sort_values("raised_at", kind="stable").reset_index(drop=True)
