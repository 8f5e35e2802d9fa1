"""HTTP plumbing shared by the emulators: axum-style body parsing, faults, crashes, counters.

Both Defguard services are axum applications, so malformed requests are rejected by extractors
with **text/plain** bodies before any handler runs. Emulating that here, rather than answering
with a tidy JSON error, is what lets a client's error handling be tested honestly.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Router

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INSPECTION_PREFIX = "/_sandbox"
JSON_SYNTAX_PREFIX = "Failed to parse the request body as JSON: "


class Rejection(Exception):
    """An axum extractor rejection: a status and a text/plain body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    def response(self) -> Response:
        return PlainTextResponse(self.text, status_code=self.status)


def _is_json_content_type(header: str | None) -> bool:
    if header is None:
        return False
    mime = header.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


async def read_json_body(request: Request) -> Any:
    """axum's ``Json`` extractor: 415 without the content type, 400 when the JSON is malformed."""
    if not _is_json_content_type(request.headers.get("content-type")):
        raise Rejection(415, "Expected request with `Content-Type: application/json`")
    raw = await request.body()
    if not raw.strip():
        raise Rejection(400, f"{JSON_SYNTAX_PREFIX}EOF while parsing a value at line 1 column 0")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise Rejection(400, f"{JSON_SYNTAX_PREFIX}expected value{where}") from None


def _serde_describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "a sequence"
    return "a map"


_EXPECTED = {bool: "a boolean", str: "a string"}


class BodyReader:
    """Typed field access on a decoded JSON body with serde's 422 wording on mismatch."""

    def __init__(self, body: Any, struct: str) -> None:
        if not isinstance(body, dict):
            raise Rejection(
                422,
                self._prefix(f"invalid type: {_serde_describe(body)}, expected struct {struct}"),
            )
        self.body = body

    @staticmethod
    def _prefix(detail: str) -> str:
        return f"Failed to deserialize the JSON body into the target type: {detail}"

    def _typed(self, name: str, kind: type, *, optional: bool) -> Any:
        value = self.body[name]
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            expected = _EXPECTED[kind]
            raise Rejection(
                422,
                self._prefix(
                    f"{name}: invalid type: {_serde_describe(value)}, expected {expected}"
                ),
            )
        return value

    def required(self, name: str, kind: type) -> Any:
        if name not in self.body:
            raise Rejection(422, self._prefix(f"missing field `{name}`"))
        return self._typed(name, kind, optional=False)

    def optional(self, name: str, kind: type) -> Any:
        return self._typed(name, kind, optional=True) if name in self.body else None

    def defaulted(self, name: str, kind: type, default: Any) -> Any:
        return self._typed(name, kind, optional=False) if name in self.body else default


Handler = Callable[[Request], Awaitable[Response]]


def answering_errors(
    error_type: type[Exception], render: Callable[[Any], Response]
) -> Callable[[Handler], Handler]:
    """Wrap handlers so a service's own error type and axum rejections become responses."""

    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except Rejection as rejection:
                return rejection.response()
            except error_type as error:
                return render(error)

        return endpoint

    return wrap


def json_response(payload: Any, status: int = 200, *, sort_keys: bool) -> Response:
    """Compact JSON as serde_json writes it; core sorts keys, the proxy keeps field order."""
    text = json.dumps(payload, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    return Response(text, status_code=status, media_type="application/json")


@dataclass
class FaultSettings:
    """Injected infrastructure faults, drawn from one seeded RNG so a run can be replayed."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0


class FaultInjector:
    """ASGI middleware adding latency, 500/503 answers and dropped connections.

    The inspection API under ``/_sandbox/`` is exempt: tests must be able to read state while
    the service they exercise misbehaves.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: FaultSettings,
        rng: random.Random,
        error_response: Callable[[random.Random], Response] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.rng = rng
        self.error_response = error_response or plain_server_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(INSPECTION_PREFIX):
            await self.app(scope, receive, send)
            return
        settings = self.settings
        if settings.latency_ms > 0:
            await asyncio.sleep(settings.latency_ms / 1000)
        draw = self.rng.random()
        if draw < settings.drop_rate:
            await _drop_connection(send)
            return
        if draw < settings.drop_rate + settings.error_rate:
            await self.error_response(self.rng)(scope, receive, send)
            return
        await self.app(scope, receive, send)


ABORTED = "dgprov_sandbox.aborted"


class Unanswered(Response):
    """The answer of a request whose server process died: nothing is sent, and
    ``CrashDropper`` closes the connection once the app returns."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ABORTED] = True


class CrashDropper:
    """ASGI middleware, right inside ``FaultInjector``: drops the connection of a request the
    app left ``Unanswered`` and reports the crash (the emulated process restarts)."""

    def __init__(self, app: ASGIApp, on_crash: Callable[[], None]) -> None:
        self.app = app
        self.on_crash = on_crash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http" and scope.get(ABORTED):
            self.on_crash()
            await _drop_connection(send)


def plain_server_error(rng: random.Random) -> Response:
    """A 500 or 503 as a load balancer in front of Defguard would answer."""
    if rng.random() < 0.5:
        return PlainTextResponse("Service Unavailable", status_code=503)
    return PlainTextResponse("Internal Server Error", status_code=500)


async def _drop_connection(send: Send) -> None:
    """Close the TCP connection without an answer, as a crashed upstream or a reset would.

    uvicorn's ``send`` is a bound method of the request cycle that owns the transport; closing
    that is a real drop. Should a server not expose it, a response that promises a body and
    ends early makes the server abort the connection, which clients see the same way.
    """
    cycle: Any = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.close()
        # Tell uvicorn the client is gone, so it neither logs nor answers the unanswered request.
        if hasattr(cycle, "disconnected"):
            cycle.disconnected = True
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class RequestCounter:
    """ASGI middleware counting requests per route template, for tests and benchmarks."""

    def __init__(self, app: ASGIApp, router: Router, counts: Counter[str]) -> None:
        self.app = app
        self.router = router
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(INSPECTION_PREFIX):
            self.counts[f"{scope['method']} {self._template(scope)}"] += 1
        await self.app(scope, receive, send)

    def _template(self, scope: Scope) -> str:
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", scope["path"]))
        return str(scope["path"])


class ExtraHeaders:
    """ASGI middleware appending fixed headers to every response."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class ClockDate:
    """ASGI middleware adding ``Date`` from the sandbox clock, as hyper adds it to every answer
    of core (hyper-v1 src/proto/h1/role.rs: ``Date`` unless the service set one), so a client
    reading the server's time sees the clock tests move. The server's own ``Date`` is off."""

    def __init__(self, app: ASGIApp, now: Callable[[], datetime.datetime]) -> None:
        self.app = app
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp = self.now().replace(tzinfo=datetime.timezone.utc)
                date = email.utils.format_datetime(stamp, usegmt=True).encode()
                message["headers"] = [*message.get("headers", []), (b"date", date)]
            await send(message)

        await self.app(scope, receive, send_with_date if scope["type"] == "http" else send)
