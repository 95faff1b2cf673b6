"""The Open Inference Protocol REST API on Starlette: routes only translate; errors map to HTTP here.

Each route reads what the request says (path parameters, the body within its size limit) and hands
it to the ``DataPlane``, which knows the model; every ``ServerError`` becomes its status here.

``create_app(settings, predictor=None)`` builds the ASGI app. The model loads at start-up (lifespan,
in a thread) before the worker accepts connections; ``/v2/health/ready`` says whether the session
exists (a failed load keeps the process up but never ready). Health answers 200 for true and 400
for false, as the protocol asks (any 4xx; a probe fails on it like on a 503). ``app_from_env`` is
the factory the uvicorn workers call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelship_contract import image as image_contract
from modelship_contract.manifest import ManifestError

from . import logs
from .dataplane import DataPlane
from .errors import InvalidInput, PayloadTooLarge, ServerError
from .metrics import CONTENT_TYPE, Metrics
from .predictor import Predictor
from .protocol import error_body
from .settings import Settings

log = logging.getLogger("modelserver")
JSON = "application/json"
_REQUEST_ID_HEADER = b"x-request-id"
_NOT_READY = 400
_INTERNAL_ERROR = "internal error; see the server log for this request id"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def _error(message: str, status: int) -> Response:
    return Response(error_body(message), status_code=status, media_type=JSON)


def _valid_request_id(raw: bytes) -> str | None:
    if 0 < len(raw) <= 128 and all(33 <= c < 127 for c in raw):
        return raw.decode("ascii")
    return None


class RequestContext:
    """Pure ASGI middleware: request id, access log and request metrics (cheaper than BaseHTTPMiddleware).

    It also turns an unexpected exception into the protocol's JSON 500: Starlette's own handler for
    ``Exception`` runs outside every middleware, where the request id is already gone from the log
    record and the response.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = None
        for key, value in scope["headers"]:
            if key == _REQUEST_ID_HEADER:
                request_id = _valid_request_id(value)
                break
        if request_id is None:
            request_id = uuid.uuid4().hex
        token = logs.request_id_var.set(request_id)
        status = 500
        started = False
        recorded = False
        header = (_REQUEST_ID_HEADER, request_id.encode("ascii"))

        def record() -> None:
            nonlocal recorded
            recorded = True
            elapsed = time.perf_counter() - start
            endpoint = scope.get("endpoint")
            route = endpoint.__name__ if endpoint is not None else "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            if self.access_log:
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", []), header]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted and logged before the last byte leaves, so a client that has its answer
                # always finds it in /metrics and in the log.
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error", extra={"method": scope["method"], "path": scope["path"]})
            if started:
                raise
            await _error(_INTERNAL_ERROR, 500)(scope, receive, send_with_id)
        finally:
            if not recorded:
                record()
            logs.request_id_var.reset(token)


def create_app(settings: Settings, predictor: Predictor | None = None) -> Starlette:
    """The ASGI app for ``settings.model_dir`` (or the given, possibly already loaded, predictor)."""
    metrics = Metrics()
    if predictor is None:
        predictor = Predictor.from_settings(settings)
    plane = DataPlane(predictor, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("starting", extra={"model_dir": str(plane.predictor.model_dir), "model": plane.manifest.ref})
        # Load before yielding: uvicorn accepts on a worker only once its start-up is done, so with
        # several workers sharing the socket a request (or a readiness probe) never reaches a
        # worker whose model is still loading. A failed load leaves the process up, never ready.
        await asyncio.to_thread(plane.load)
        try:
            yield
        finally:
            log.info("shutdown complete")

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        return _json({"ready": plane.ready}, 200 if plane.ready else _NOT_READY)

    async def server_metadata(request: Request) -> Response:
        return _json(plane.server_metadata())

    async def metadata(request: Request) -> Response:
        return _json(plane.model_metadata(request.path_params["name"], request.path_params.get("version")))

    async def model_ready(request: Request) -> Response:
        found = plane.model(request.path_params["name"], request.path_params.get("version"))
        return _json({"name": found.name, "ready": plane.ready}, 200 if plane.ready else _NOT_READY)

    async def infer(request: Request) -> Response:
        # An unknown model (404) or one not loaded (503) is refused before the body is read.
        found = plane.model(request.path_params["name"], request.path_params.get("version"), loaded=True)
        body = await _read_body(request, settings.max_body_bytes)
        return Response(plane.infer(found, body), media_type=JSON)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    async def on_server_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServerError)
        if exc.status >= 500:
            log.warning("request refused", extra={"error": str(exc), "status": exc.status})
        return _error(str(exc), exc.status)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            served = plane.manifest.name
            message = f"no route for {request.url.path}: see /v2, /v2/models/{served} and /metrics"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return Response(
            error_body(message), status_code=exc.status_code, media_type=JSON, headers=exc.headers
        )

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route(image_contract.LIVE_PATH, live, methods=["GET"]),
        Route(image_contract.READY_PATH, ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route(model, metadata, methods=["GET"]),
        Route(versioned, metadata, methods=["GET"]),
        Route(f"{model}/ready", model_ready, methods=["GET"]),
        Route(f"{versioned}/ready", model_ready, methods=["GET"]),
        Route(f"{model}/infer", infer, methods=["POST"]),
        Route(f"{versioned}/infer", infer, methods=["POST"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(RequestContext, metrics=metrics, access_log=settings.access_log)],
        exception_handlers={
            ServerError: on_server_error,
            HTTPException: on_http_error,
        },
    )
    app.state.plane = plane
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody reads this answer; a 4xx keeps a client's hang-up out of the server-error counts.
        raise InvalidInput(f"the client disconnected after {size} bytes of the request body") from None
    return b"".join(chunks)


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: settings from ``MODELSHIP_*``, logs as JSON."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    try:
        return create_app(settings)
    except ManifestError as exc:
        raise SystemExit(f"modelserver: {exc}") from None
