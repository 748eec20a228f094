"""`mlsys serve` as clients and attackers touch it: raw sockets, MLflow's own client, two systems on one server,
limits, readiness and shutdown. Real uvicorn servers on free 127.0.0.1 ports, against a temporary MLSYS_HOME, no
champion (the baseline answers) unless a test gives one."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from mlsys_assets.core.server.command import ServerHandle, start_server
from mlsys_assets.core.server.service import ServeConfig

ROW = {"year": 2013, "month": 2, "day": 12, "sched_dep_time": 1830, "sched_arr_time": 2105, "carrier": "B6",
       "flight": 1001, "origin": "JFK", "dest": "MCO", "distance": 944}


def flights():
    from mlsys_assets.systems import system_named

    return system_named("flights")


def serve(source: object = None, wait: bool = True, **overrides: object) -> ServerHandle:
    config = ServeConfig.from_env(port=0, poll_seconds=0.2, **overrides)
    return start_server([flights()], config, sources={"flights": source} if source else None, wait=wait)


def request(url: str, path: str, body: bytes | None = None, method: str = "POST",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    sent = urllib.request.Request(f"{url}{path}", data=body, method=method,
                                  headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh connection; everything the server answers until it closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
                if b"\r\n\r\n" in got and _complete(got):
                    break
        except TimeoutError:
            pass
        return got


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_methods_headers_and_framing_are_answered_in_json(mlsys_home: Path) -> None:
    with serve() as server:
        status, headers, body = request(server.url, "/invocations", method="PUT", body=b"{}")
        assert status == 405 and headers["allow"] == "POST" and "PUT is not allowed" in json.loads(body)["message"]
        status, headers, body = request(server.url, "/ping", method="DELETE")
        assert status == 405 and json.loads(body)["error_code"] == "BAD_REQUEST"
        status, headers, body = request(server.url, "/nowhere", method="GET")
        assert status == 404 and json.loads(body)["error_code"] == "ENDPOINT_NOT_FOUND"
        status, headers, body = request(server.url, "/invocations", json.dumps({"inputs": [ROW]}).encode())
        assert status == 200 and "server" not in headers  # no server name, no Python version
        assert headers["x-model-version"] == "baseline" and headers["x-model-alias"] == "baseline"
        assert headers["x-model-name"] == "flight_delay" and len(headers["x-request-id"]) == 32

        head = "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        # Expect: 100-continue with a body over the limit: 413 at once, and never "100 Continue".
        answer = raw(server.port, (head + "Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n").encode())
        assert answer.startswith(b"HTTP/1.1 413") and b"100 Continue" not in answer
        assert b"the limit is 1048576" in answer
        body = json.dumps({"inputs": [ROW]}).encode()
        # Two Content-Length headers that disagree (equal ones are one value, as RFC 9110 allows) are refused.
        twice = raw(server.port, (head + f"Content-Length: {len(body)}\r\nContent-Length: {len(body) - 1}\r\n\r\n")
                    .encode() + body)
        assert twice.startswith(b"HTTP/1.1 400"), twice
        both = raw(server.port, (head + f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n")
                   .encode() + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        assert both.startswith(b"HTTP/1.1 400"), both
        # A chunked body without Content-Length is read, and refused once it passes the limit.
        chunked = raw(server.port, (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
                      + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        assert chunked.startswith(b"HTTP/1.1 200"), chunked


def test_what_mlflow_accepts_is_accepted(mlsys_home: Path) -> None:
    """MLflow's own client with NaN in a nullable column, a CSV body, and `inputs` as rows of values by position:
    the same answers as records."""
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    carried = {**ROW, "temp": 30.0, "dewp": 20.0, "wind_gust": float("nan")}
    with serve() as server:
        expected = json.loads(request(server.url, "/invocations", json.dumps({"inputs": [ROW]}).encode())[2])
        client = ScoringServerClient("127.0.0.1", server.port)
        got = client.invoke(pd.DataFrame([carried, ROW]))
        assert [p["flight_id"] for p in got.get_predictions(predictions_format="dataframe").to_dict("records")] \
            == [expected["predictions"][0]["flight_id"]] * 2
        csv = ",".join(ROW) + "\n" + ",".join(str(v) for v in ROW.values()) + "\n"
        status, _, body = request(server.url, "/invocations", csv.encode(), headers={"Content-Type": "text/csv"})
        assert status == 200 and json.loads(body)["predictions"][0]["probability"] == \
            expected["predictions"][0]["probability"]
        status, _, body = request(server.url, "/invocations", json.dumps({"inputs": [list(ROW.values())]}).encode())
        assert status == 200, body


def test_openapi_and_docs_describe_the_declared_schema(mlsys_home: Path) -> None:
    with serve() as server:
        spec = json.loads(request(server.url, "/openapi.json", method="GET")[2])
        body = spec["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        records = next(o for o in body["oneOf"] if "dataframe_records" in o["properties"])
        row = records["properties"]["dataframe_records"]["items"]
        assert row["required"] == ["year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight",
                                   "origin", "dest", "distance"]
        assert row["properties"]["origin"]["enum"] == ["EWR", "JFK", "LGA"]
        assert row["properties"]["sched_dep_time"] == {"type": "integer", "minimum": 0, "maximum": 2359}
        assert row["properties"]["dewp"]["type"] == ["number", "null"]  # carried weather, nullable
        assert "times_are_clock_times" in row["description"]
        assert "/flights/invocations" in spec["paths"]
        status, headers, page = request(server.url, "/docs", method="GET")
        assert status == 200 and headers["content-type"].startswith("text/html") and b"sched_dep_time" in page
        assert b"<script" not in page  # nothing fetched from elsewhere


def test_limits_in_flight_answer_503_with_retry_after(mlsys_home: Path) -> None:
    with serve(max_inflight_rows=5, max_inflight_bytes=3000) as server:
        status, headers, body = request(server.url, "/invocations", json.dumps({"inputs": [ROW] * 6}).encode())
        assert status == 503 and headers["retry-after"] == "1" and b"rows being answered" in body
        big = json.dumps({"inputs": [ROW] * 20}).encode()
        assert 3000 < len(big) < 1 << 20
        status, headers, body = request(server.url, "/invocations", big)
        assert status == 503 and headers["retry-after"] == "1" and b"bytes of requests" in body
        assert request(server.url, "/invocations", json.dumps({"inputs": [ROW]}).encode())[0] == 200
        metrics = request(server.url, "/metrics", method="GET")[2].decode()
        assert "mlsys_refused_busy_total 2" in metrics and 'mlsys_row_path_enabled{system="flights"} 1' in metrics


def test_slow_headers_are_cut_off_and_normal_clients_still_answered(mlsys_home: Path) -> None:
    """Connections trickling their request head a byte at a time are closed at the header deadline, however
    slowly they send; meanwhile every normal request is answered."""
    with serve(header_timeout_seconds=1.0) as server:
        slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(100)]
        started = time.monotonic()
        closed_after: list[float] = []

        def trickle(sock: socket.socket) -> None:
            try:
                for byte in b"POST /invocations HTTP/1.1\r\nHost: x\r\n":
                    sock.send(bytes([byte]))
                    time.sleep(0.2)
            except OSError:  # closed by the server
                closed_after.append(time.monotonic() - started)

        threads = [threading.Thread(target=trickle, args=(s,)) for s in slow]
        for thread in threads:
            thread.start()
        answered = [request(server.url, "/invocations", json.dumps({"inputs": [ROW]}).encode())[0]
                    for _ in range(20)]
        for thread in threads:
            thread.join(timeout=15)
        for sock in slow:
            sock.close()
        assert answered == [200] * 20
        assert len(closed_after) == len(slow) and max(closed_after) < 4.0, sorted(closed_after)[-3:]


class Gate:
    """A model source that holds the first registry read until released (a slow registry at start)."""

    model_name = "flight_delay"

    def __init__(self) -> None:
        self.release = threading.Event()

    def alias_version(self, alias: str) -> str | None:
        self.release.wait(30)
        return None

    def load(self, version: str) -> object:
        raise AssertionError("no version to load")


def test_ping_is_503_until_the_models_are_loaded(mlsys_home: Path) -> None:
    gate = Gate()
    with serve(gate, wait=False) as server:
        deadline = time.monotonic() + 30
        while not server.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        status, headers, body = request(server.url, "/ping", method="GET")
        assert status == 503 and headers["retry-after"] == "1" and b"loading: flights" in body
        status, _, body = request(server.url, "/invocations", json.dumps({"inputs": [ROW]}).encode())
        assert status == 503 and b"still loading" in body
        assert json.loads(request(server.url, "/health", method="GET")[2])["status"] == "loading"
        gate.release.set()
        deadline = time.monotonic() + 10
        while request(server.url, "/ping", method="GET")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_health_says_degraded_when_answers_are_not_logged_and_never_shows_a_path(mlsys_home: Path) -> None:
    with serve(log_min_free_bytes=1 << 62) as server:  # more free space than any disk has: logging stops
        assert request(server.url, "/invocations", json.dumps({"inputs": [ROW]}).encode())[0] == 200
        server.service.flush()
        text = request(server.url, "/health", method="GET")[2].decode()
        state = json.loads(text)
        assert state["status"] == "degraded" and not state["log"]["logging"]
        assert any("not being logged" in reason for reason in state["reasons"])
        assert str(mlsys_home) not in text and "/tmp" not in text


def test_rows_dated_outside_the_partitions_go_to_one_folder(mlsys_home: Path) -> None:
    rows = [{**ROW, "year": 2050 + n % 2, "month": 1 + n % 12, "day": 1 + n % 28} for n in range(500)]
    with serve() as server:
        status, _, body = request(server.url, "/invocations", json.dumps({"inputs": rows}).encode())
        assert status == 200, body
        assert server.service.flush()
    folders = sorted(p.name for p in (mlsys_home / "prediction_log" / "flights").iterdir())
    assert folders == ["out_of_range"]


class Sleepy:
    """A champion whose every prediction takes `seconds` (to have a request in flight at shutdown)."""

    model_name = "flight_delay"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def alias_version(self, alias: str) -> str | None:
        return "9" if alias == "champion" else None

    def load(self, version: str) -> object:
        return self

    def predict_proba(self, matrix: pd.DataFrame) -> object:
        import numpy as np

        time.sleep(self.seconds)
        return np.tile([0.4, 0.6], (len(matrix), 1))


def test_stopping_drains_the_requests_in_flight(mlsys_home: Path) -> None:
    server = serve(Sleepy(1.5))
    answers: list[int] = []
    client = threading.Thread(target=lambda: answers.append(
        request(server.url, "/invocations", json.dumps({"inputs": [ROW]}).encode())[0]))
    client.start()
    time.sleep(0.5)  # the request is being scored
    server.stop()
    client.join(timeout=30)
    assert answers == [200]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_every_declared_system_has_its_route(mlsys_home: Path) -> None:
    from mlsys_tests.meters_system import meters

    config = ServeConfig.from_env(port=0, poll_seconds=0.2)
    with start_server([flights(), meters.with_env()], config) as server:
        reading = {"meter": "m01", "zone": "south", "reading_at": "2024-03-02T05:00:00", "outdoor_c": 4.5}
        status, headers, body = request(server.url, "/meters/invocations",
                                        json.dumps({"dataframe_records": [reading]}).encode())
        assert status == 200 and headers["x-model-name"] == "meters_model", body
        answer = json.loads(body)["predictions"][0]
        assert answer["reading_id"] == "m01@2024-03-02T05" and "prediction" in answer and "label" not in answer
        status, _, body = request(server.url, "/meters/invocations", json.dumps({"inputs": [ROW]}).encode())
        assert status == 400 and b"meter" in body  # the meters schema, not the flights one
        for path in ("/invocations", "/flights/invocations"):
            assert request(server.url, path, json.dumps({"inputs": [ROW]}).encode())[0] == 200
        assert json.loads(request(server.url, "/meters/health", method="GET")[2])["system"] == "meters"
        assert server.services["meters"].flush()
    assert (mlsys_home / "prediction_log" / "meters" / "2024-03-02-05:00").is_dir()
