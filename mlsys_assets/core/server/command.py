"""`mlsys serve`: every declared system's @champion behind MLflow's scoring protocol, on uvicorn.

One process serves every system of the code location (`MLSYS_SYSTEMS`), a route per system, the first (or
`--system`'s first) also at `/invocations`. On SIGTERM or SIGINT uvicorn stops accepting, answers what is in
flight, then the services flush their logs: the command exits 0. `start_server` runs the same in a thread (tests,
benchmarks).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mlsys_assets.core.server.service import ServeConfig, SystemService

if TYPE_CHECKING:
    from mlsys_assets.declaration import System

log = logging.getLogger("mlsys.serve")


def header_deadline_protocol(seconds: float) -> type:
    """uvicorn's HTTP protocol with a deadline on reading a request's head: a connection that has not sent a whole
    request head within `seconds` of connecting (or of its last answer) is closed, however slowly it trickles bytes.
    uvicorn's own keep-alive timeout is reset by every byte, so it does not bound a slow sender. The protocol is
    httptools' (llhttp, in C; it comes with uvicorn[standard], which dagster-webserver requires: ~25% more rows/s
    than h11 at 64 clients), else h11's."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
        head_done = "on_headers_complete"
    except ImportError:  # httptools missing: the pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base
        head_done = "handle_events"

    class HeaderDeadline(Base):
        _deadline: Any = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            if self.cycle is None or self.cycle.response_complete:  # no request in hand: only a head in progress
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

    def head_arrived(self: Any, *args: Any) -> None:
        cycle = self.cycle
        getattr(Base, head_done)(self, *args)
        if self.cycle is not cycle:  # a request head arrived
            self._disarm()

    setattr(HeaderDeadline, head_done, head_arrived)
    return HeaderDeadline


def services_for(systems: Sequence[System], config: ServeConfig, sources: dict[str, Any] | None = None
                 ) -> dict[str, SystemService]:
    return {s.name: SystemService(s, config, (sources or {}).get(s.name)) for s in systems}


def uvicorn_server(app: Any, config: ServeConfig) -> Any:
    import uvicorn

    return uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", server_header=False, date_header=True,
        access_log=False, http=header_deadline_protocol(config.header_timeout_seconds), lifespan="on",
        timeout_keep_alive=5, timeout_graceful_shutdown=30, backlog=512))


@dataclass
class ServerHandle:
    """A server running in a thread: its URL and services, and `stop()` (also on leaving a `with` block)."""

    services: dict[str, SystemService]
    server: Any
    thread: threading.Thread
    port: int
    host: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def service(self) -> SystemService:
        return next(iter(self.services.values()))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=40)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(systems: Sequence[System], config: ServeConfig | None = None, port: int | None = None,
                 sources: dict[str, Any] | None = None, wait: bool = True) -> ServerHandle:
    """Serve `systems` from a background thread on 127.0.0.1:`port` (0: any free port); with `wait`, return once
    every system has loaded."""
    from mlsys_assets.core.server.app import build_app

    config = config or ServeConfig.from_env()
    if port is not None:
        config = replace(config, port=port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))  # bound first: a taken port fails at once
    services = services_for(systems, config, sources)
    server = uvicorn_server(build_app(services, systems[0].name, config), config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="http", daemon=True)
    thread.start()
    handle = ServerHandle(services, server, thread, sock.getsockname()[1], config.host)
    deadline = time.monotonic() + 60
    while wait and not (server.started and all(s.ready.is_set() for s in services.values())):
        if not thread.is_alive() or time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    return handle


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server started in another process (in-process, pass port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(url: str, timeout: float = 60.0) -> None:
    """Poll GET /ping until it answers 200 (for servers started in another process)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/ping did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    """`mlsys serve [--system NAME ...] [--port N] [--host H]`: serve until SIGINT or SIGTERM, then stop cleanly."""
    from mlsys_assets.core.server.app import build_app
    from mlsys_assets.systems import declared_systems, system_named

    parser = argparse.ArgumentParser(prog="mlsys serve", description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--system", action="append", default=None,
                        help="serve this declared system (repeat for several; default: every declared system; the "
                             "first is also served at /invocations)")
    parser.add_argument("--port", type=int, default=None, help="port (default: MLSYS_SERVE_PORT or 5001)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this "
                                                            "machine only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars per model load
    try:
        systems = [system_named(n) for n in args.system] if args.system else list(declared_systems())
    except (KeyError, ValueError) as exc:
        parser.error(str(exc))
    config = ServeConfig.from_env(host=args.host, **({"port": args.port} if args.port is not None else {}))
    services = services_for(systems, config)
    server = uvicorn_server(build_app(services, systems[0].name, config), config)
    routes = ", ".join(f"/{s.name}/invocations ({s.model_name}@champion)" for s in systems)
    print(f"serving {routes} on http://{config.host}:{config.port} ({systems[0].name} also at /invocations; GET "
          f"/ping, /health, /version, /metrics, /docs); predictions logged under {config.log_dir}", flush=True)
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn re-raises the signal it stopped on, after draining: under
        signal.signal(sig, lambda *_: None)      # these handlers that ends the command normally (exit 0)
    server.run()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
