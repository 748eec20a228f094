"""Alerts delivered to a webhook: a local receiver the test starts gets each alert once (Slack-compatible JSON with
the check's numbers), a refused connection or a 5xx is retried with the same id, a 4xx is not, and a dead receiver
fails nothing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlsys_assets.core.alerts import read_alerts, record_alert


class Receiver:
    """A webhook receiver on a free 127.0.0.1 port; answers each POST with the next status of `statuses` (then
    200) and keeps what it got."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.got: list[tuple[str, dict]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.got.append((self.headers["X-Mlsys-Alert-Id"], body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_each_alert_is_delivered_once_and_failures_fail_nothing(mlsys_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with Receiver([503]) as receiver:
        monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", receiver.url)
        alert = record_alert("run_failure", "flights_daily_pipeline 2013-02-12", "steps failed", "Dagster UI: /runs/x")
        assert alert["delivered"] == "yes"
        assert [a for a, _ in receiver.got] == [alert["alert_id"]] * 2  # the 503 retried, with the same id
        body = receiver.got[-1][1]
        assert body["text"] == ("[error] run_failure: flights_daily_pipeline 2013-02-12: steps failed "
                                "(Dagster UI: /runs/x)") and body["alert"]["alert_id"] == alert["alert_id"]

    with Receiver([400]) as receiver:
        monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", receiver.url)
        assert record_alert("check_failure", "x", "y")["delivered"] == "no: HTTP 400"
        assert len(receiver.got) == 1  # refused by the receiver: not sent again

    dead = receiver.url  # its server is shut down: the connection is refused, three times, then given up
    monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", dead)
    assert record_alert("check_failure", "x", "y")["delivered"].startswith("no: ConnectionRefusedError")
    alerts = read_alerts()
    assert list(alerts["delivered"]) == ["yes", "no: HTTP 400", alerts["delivered"].iloc[2]] and alerts[
        "alert_id"].is_unique


def test_a_failed_check_is_delivered_with_its_numbers_once(defs, instance, mlsys_home: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import build_sensor_context

    from mlsys_assets.automation import check_failure_alert_sensor
    from mlsys_tests.conftest import DAYS

    result = defs.resolve_job_def("flights_daily_pipeline").execute_in_process(
        partition_key=DAYS[1], instance=instance, raise_on_error=False,
        run_config={"resources": {"quality": {"config": {"max_quarantine_rate": 0.0}}}})
    assert result.success
    with Receiver() as receiver:
        monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", receiver.url)
        cursor = None
        for _ in range(2):  # the second evaluation finds nothing new: nothing is delivered twice
            context = build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
            evaluated = check_failure_alert_sensor(context)
            cursor = evaluated.cursor
    texts = [body["text"] for _, body in receiver.got]
    weather = [t for t in texts if "validated_weather:quarantine_rate_below_threshold" in t]
    assert len(weather) == 1 and len(texts) == len({a for a, _ in receiver.got})
    assert "failed on 2013-02-12: quarantine_rate=0.01" in weather[0] and "threshold=0" in weather[0]
