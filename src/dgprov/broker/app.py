"""The broker's HTTP face (ASGI, starlette): routes in, JSON and Prometheus text out.

Every provisioning answer carries ``X-Request-Id`` (the audit line's id) and ``Server-Timing``
(time spent in Defguard, Graph, the authority and the broker itself); a refusal is
``{"error": code, "message": ...}`` with its status, and never echoes what the client sent.

Requests in flight are limited here (``RequestLimit``), apart from connections: an idle
connection never takes a request's place, and ``/healthz`` is answered whatever the load, so a
liveness probe does not restart a broker that is merely busy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .decisions import Refusal
from .metrics import Timing, current_timing
from .service import AuditRecord, Broker, new_request_id

log = logging.getLogger("dgprov.broker")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# What a caller hears when a service behind the broker fails; what the service said (hosts,
# its own messages) goes to the audit line only.
UNAVAILABLE = {
    "defguard_unavailable": "Defguard did not give the broker a token for you now; try again "
    "later, or give your administrator the request id",
    "entra_unavailable": "the broker cannot reach Entra ID now; try again later, or give your "
    "administrator the request id",
}


UNLIMITED_PATHS = frozenset({"/healthz"})  # constant work: answered even at the limit
BUSY_RETRY_SECONDS = 1


class RequestLimit:
    """At most ``limit`` requests in flight; beyond it 503 ``busy`` with ``Retry-After``."""

    def __init__(self, app: ASGIApp, limit: int, on_busy: Callable[[str], None]) -> None:
        self.app = app
        self.limit = limit
        self.on_busy = on_busy
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.on_busy(scope["path"])
            busy = Refusal(
                503,
                "busy",
                f"the broker is answering {self.limit} requests at once; try again in a moment",
                retry_after=BUSY_RETRY_SECONDS,
            )
            await _refusal_response(busy)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def _refusal_response(refusal: Refusal) -> JSONResponse:
    headers = {}
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(refusal.retry_after)
    return JSONResponse(
        {"error": refusal.code, "message": refusal.message},
        status_code=refusal.status,
        headers=headers,
    )


def build_app(broker: Broker) -> Starlette:
    async def provisioning(request: Request) -> Response:
        started = time.perf_counter()
        record = AuditRecord(new_request_id())
        timing = Timing()
        current_timing.set(timing)
        try:
            body = await broker.provision(request.headers.get("authorization"), record)
            record.outcome, record.status = "provisioned", 200
            response: Response = JSONResponse(body)
        except Refusal as refusal:
            record.outcome, record.status = refusal.code, refusal.status
            record.detail = refusal.detail  # names the caller must not hear (a 409's accounts)
            if refusal.code in UNAVAILABLE:
                record.detail = refusal.message
                refusal = Refusal(refusal.status, refusal.code, UNAVAILABLE[refusal.code])
            response = _refusal_response(refusal)
        except Exception as exc:  # a bug: answer, log its kind, never the request
            log.error("request %s failed: %s", record.request_id, type(exc).__name__)
            record.outcome, record.status = "internal_error", 500
            response = _refusal_response(
                Refusal(500, "internal_error", f"see the broker's log, request {record.request_id}")
            )
        elapsed = time.perf_counter() - started
        broker.metrics.observe(record.outcome, elapsed)
        # Kept whatever the log's speed: Defguard was asked for a token (and may have issued).
        await broker.audit_log.write(record.line(elapsed), keep=record.action is not None)
        response.headers["X-Request-Id"] = record.request_id
        response.headers["Server-Timing"] = timing.header(elapsed)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def configuration(request: Request) -> Response:
        """No token needed: the client asks this before anyone signs in."""
        try:
            response: Response = JSONResponse(broker.client_settings())
        except Refusal as refusal:
            response = _refusal_response(refusal)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        reason = await broker.readiness()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(broker.metrics.exposition(), media_type=METRICS_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await broker.start()
        try:
            yield
        finally:
            await broker.aclose()

    def busy(path: str) -> None:
        if path == "/v1/provisioning":
            broker.metrics.observe("busy", 0.0)

    limit = broker.config.connections.max_requests
    return Starlette(
        middleware=[Middleware(RequestLimit, limit=limit, on_busy=busy)],
        routes=[
            Route("/v1/provisioning", provisioning, methods=["POST"]),
            Route("/v1/config", configuration, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
