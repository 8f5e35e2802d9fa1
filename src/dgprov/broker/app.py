"""The broker's HTTP face (ASGI, starlette): routes in, JSON and Prometheus text out.

Every provisioning answer carries ``X-Request-Id`` (the audit line's id) and ``Server-Timing``
(time spent in Defguard, Graph, the authority and the broker itself); a refusal is
``{"error": code, "message": ...}`` with its status, and never echoes what the client sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import BrokerConfig
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
        broker.audit(record.line(elapsed))
        response.headers["X-Request-Id"] = record.request_id
        response.headers["Server-Timing"] = timing.header(elapsed)
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

    return Starlette(
        routes=[
            Route("/v1/provisioning", provisioning, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def create_app(config: BrokerConfig) -> Starlette:
    return build_app(Broker(config))
