"""The HTTP face of the server: a Starlette app with a route per declared system, bounded under load and abuse.

Routes: `POST /invocations` (MLflow's scoring protocol, the default system) and `POST /<system>/invocations` for
each system served; `GET /ping` (200 once every system has loaded its models, 503 before), `/health`, `/version`,
`/metrics` (Prometheus text), `/openapi.json` and `/docs` (generated from the declared schemas). Every error is JSON
in MLflow's shape (`error_code`, `message`, `errors`), 4xx for anything a client sent, never a 500 for bad input.

Limits, each a setting: a body over `max_body_bytes` is refused from its Content-Length before it is read (so
`Expect: 100-continue` gets 413, not `100 Continue`); bodies and rows in flight past `max_inflight_*` get 503 with
`Retry-After`; two Content-Length headers, or Transfer-Encoding with Content-Length, are a 400.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING

from mlsys_assets.core.server.predictionlog import jsonable
from mlsys_assets.core.server.protocol import RequestError, media_type, parse_request

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from mlsys_assets.core.server.service import ServeConfig, SystemService

log = logging.getLogger("mlsys.serve")
INLINE_BYTES = 64 << 10  # bodies up to this are parsed and checked on the event loop; larger ones in a thread
DRAIN_BYTES = 16 << 20  # a refused body up to this is read (and dropped) before the 413; a larger one is not


class Limits:
    """Bytes and rows in flight across all requests (the event loop is the only writer: no lock needed)."""

    def __init__(self, config: ServeConfig) -> None:
        self.config, self.bytes, self.rows, self.refused = config, 0, 0, 0

    def busy(self, status: str) -> RequestError:
        self.refused += 1
        return RequestError(503, "TEMPORARILY_UNAVAILABLE", f"the server is busy ({status}); retry shortly")


def error_response(exc: RequestError, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import JSONResponse

    extra = {"Retry-After": "1"} if exc.status == 503 else {}
    return JSONResponse(exc.body(), status_code=exc.status, headers={**extra, **(headers or {})})


def _framing_problem(request: Request) -> RequestError | None:
    raw = request.scope["headers"]
    lengths = [v for k, v in raw if k == b"content-length"]
    chunked = any(k == b"transfer-encoding" for k, _ in raw)
    if len(lengths) > 1:
        return RequestError(400, "BAD_REQUEST", "the request has more than one Content-Length header")
    if lengths and chunked:
        return RequestError(400, "BAD_REQUEST", "the request has both Transfer-Encoding and Content-Length")
    if lengths and not lengths[0].isdigit():
        return RequestError(400, "BAD_REQUEST", "Content-Length is not a number")
    return None


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it passes `limit` (a chunked body has no Content-Length to check)."""
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "RESOURCE_LIMIT_EXCEEDED", f"the body is over {limit} bytes; the limit is {limit}")
        parts.append(chunk)
    return b"".join(parts)


async def _discard(request: Request) -> None:
    """Read an unwanted body before refusing it: a client still sending when the connection closes sees a reset
    instead of the 413 that explains it. Chunk by chunk, nothing kept. (A client that sent `Expect: 100-continue`
    is waiting for leave to send, and gets the 413 at once.)"""
    async for _ in request.stream():
        pass


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if 0 < len(given) <= 128 and given.isprintable() else uuid.uuid4().hex


async def invoke(service: SystemService, request: Request, limits: Limits) -> Response:
    """POST /invocations for one system."""
    from starlette.responses import Response

    received = time.perf_counter()
    request_id = _request_id(request)
    headers = {"X-Request-Id": request_id}
    config = limits.config
    try:
        problem = _framing_problem(request)
        if problem:
            raise problem
        media = request.headers.get("content-type")
        media_type(media)  # a 415 before the body is read
        length = int(request.headers.get("content-length") or 0)
        if length > config.max_body_bytes:
            if length <= DRAIN_BYTES and "expect" not in request.headers:
                await _discard(request)
            raise RequestError(413, "RESOURCE_LIMIT_EXCEEDED", f"the body has {length} bytes; the limit is "
                                                               f"{config.max_body_bytes}")
        if not service.ready.is_set():
            raise RequestError(503, "TEMPORARILY_UNAVAILABLE", "the models are still loading")
        reserved = length or config.max_body_bytes
        if limits.bytes + reserved > config.max_inflight_bytes:
            raise limits.busy(f"{limits.bytes} bytes of requests being answered")
        limits.bytes += reserved
        try:
            return await _answer(service, request, limits, media, request_id, received, headers)
        finally:
            limits.bytes -= reserved
    except RequestError as exc:
        return error_response(exc, headers)
    except Exception as exc:  # a bug answers 500 and the server stays up
        log.exception("request %s failed", request_id)
        return Response(json.dumps({"error_code": "INTERNAL_ERROR", "message": type(exc).__name__}),
                        status_code=500, media_type="application/json", headers=headers)


async def _answer(service: SystemService, request: Request, limits: Limits, media: str, request_id: str,
                  received: float, headers: dict[str, str]) -> Response:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    config = limits.config
    body = await _body(request, config.max_body_bytes)
    positional = service.schema.required
    if len(body) <= INLINE_BYTES:
        parsed = parse_request(body, media, config.max_rows, positional)
    else:
        parsed = await run_in_threadpool(parse_request, body, media, config.max_rows, positional)
    del body
    rows = len(parsed.records)
    if limits.rows + rows > config.max_inflight_rows:
        raise limits.busy(f"{limits.rows} rows being answered")
    limits.rows += rows
    try:
        if rows <= config.row_path_max_rows:
            job = service.prepare(parsed, request_id, received)
        else:
            job = await run_in_threadpool(service.prepare, parsed, request_id, received)
        if len(job.rows) == 0:
            job.answer = []
        if job.answer is None:
            loop, done = asyncio.get_running_loop(), asyncio.Event()
            job.on_done = lambda: loop.call_soon_threadsafe(done.set)
            service.table.submit(job)
            try:
                await asyncio.wait_for(done.wait(), config.answer_timeout_seconds)
            except TimeoutError as exc:
                raise RequestError(503, "TEMPORARILY_UNAVAILABLE", f"no answer within "
                                   f"{config.answer_timeout_seconds:.0f} s; retry shortly") from exc
            if job.error is not None:
                raise job.error if isinstance(job.error, RequestError) else RequestError(
                    500, "INTERNAL_ERROR", f"scoring failed: {type(job.error).__name__}")
    finally:
        limits.rows -= rows
    used = job.model or service.models.serving()
    answered = job.answer or []
    version = answered[0]["model_version"] if answered else used.version
    fallback = answered[0]["fallback"] if answered else used.is_fallback
    headers |= {"X-Model-Name": service.system.model_name, "X-Model-Version": str(version),
                "X-Model-Alias": "baseline" if fallback else "champion"}
    content = json.dumps({"predictions": answered}, default=jsonable, separators=(",", ":"))
    return Response(content, media_type="application/json", headers=headers)


def build_app(services: dict[str, SystemService], default: str, config: ServeConfig) -> Starlette:
    """The app serving every system of `services` (`default` also at the root routes)."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from mlsys_assets.core.server.docs import docs_page, metrics_text, openapi

    limits = Limits(config)

    def post_invocations(name: str):
        async def endpoint(request: Request) -> Response:
            return await invoke(services[name], request, limits)
        return endpoint

    def get(name: str, what: str):
        async def endpoint(request: Request) -> Response:
            service = services[name]
            return JSONResponse(service.health() if what == "health" else service.version())
        return endpoint

    async def ping(request: Request) -> Response:
        loading = [name for name, s in services.items() if not s.ready.is_set()]
        if loading:
            return error_response(RequestError(503, "TEMPORARILY_UNAVAILABLE", f"loading: {', '.join(loading)}"))
        return PlainTextResponse("\n")

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi(services, default))

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(services, default))

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(metrics_text(services, limits), media_type="text/plain; version=0.0.4")

    routes = [Route("/ping", ping, methods=["GET"]), Route("/openapi.json", openapi_json, methods=["GET"]),
              Route("/docs", docs, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    for name in [default, *services]:
        prefix = "" if name == default and not any(r.path == "/invocations" for r in routes) else f"/{name}"
        routes += [Route(f"{prefix}/invocations", post_invocations(name), methods=["POST"]),
                   Route(f"{prefix}/health", get(name, "health"), methods=["GET"]),
                   Route(f"{prefix}/version", get(name, "version"), methods=["GET"])]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "ENDPOINT_NOT_FOUND", 405: "BAD_REQUEST"}.get(exc.status_code, "BAD_REQUEST")
        message = (f"no endpoint {request.url.path}" if exc.status_code == 404 else
                   f"{request.method} is not allowed on {request.url.path}" if exc.status_code == 405 else
                   str(exc.detail))
        return JSONResponse({"error_code": code, "message": message}, status_code=exc.status_code,
                            headers=exc.headers)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        for service in services.values():
            service.start()
        try:
            yield
        finally:
            for service in services.values():
                service.stop()

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
