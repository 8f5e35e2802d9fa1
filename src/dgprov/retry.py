"""Retrying HTTP requests politely: Retry-After first, exponential backoff otherwise.

Both Defguard and Graph answer overload with 429/503/504 (Graph sometimes with a decimal
``Retry-After`` such as ``2.128``), and networks drop connections. Every remote call goes through
``send`` so that one policy decides, and so that a throttled service slows *all* workers down
through the shared ``Backpressure`` gate instead of each hammering it on its own. Everything a
server controls is bounded here: how long one answer may take (``deadline``), how large it may be
(``MAX_ANSWER_BYTES``) and how long it may make dgprov wait (``max_retry_after``,
``max_throttled``), so a broken or hostile server costs a clear error, never a stalled run.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import InvalidAnswer, TransportFailure

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
THROTTLE_STATUSES = frozenset({429, 503})  # "slow down", as opposed to one request's failure
MAX_ANSWER_BYTES = 16 * 2**20
RETRY_AFTER_RESOLUTION = 1.0  # Retry-After is in whole seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How long dgprov keeps asking, and how long it waits for any one answer.

    ``deadline`` bounds one attempt from sending to the last byte of the answer: httpx's
    timeouts only bound each read, so a server trickling a byte every few seconds would hold a
    worker forever. ``max_retry_after`` bounds what a server may ask dgprov to wait: a
    ``Retry-After`` of days would otherwise stall every worker sharing the backpressure.
    ``max_throttled`` bounds the time one call spends waiting out 429s, which spend no attempt.
    """

    attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 60.0
    deadline: float = 120.0
    max_retry_after: float = 120.0
    max_throttled: float = 600.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for ``attempt`` (0-based)."""
        return random.uniform(0, self.ceiling(attempt))

    def ceiling(self, attempt: int) -> float:
        """The exponential backoff's upper bound for ``attempt``, without jitter."""
        return min(self.max_delay, self.base_delay * 2.0**attempt)

    def throttled_delay(self, retry_after: float | None, attempt: int) -> float:
        """How long to wait after a 429/503: what the service asked, within bounds.

        ``Retry-After`` counts whole seconds, and tower-governor (Defguard 2.0) rounds down, so
        ``0`` means "within a second": the wait is at least the backoff's ceiling up to one
        second, so such answers cannot spend every attempt at once. Never more than
        ``max_retry_after``: every worker sharing the backpressure waits as long.
        """
        if retry_after is None:
            return self.backoff(attempt)
        floor = min(self.ceiling(attempt), RETRY_AFTER_RESOLUTION)
        return min(max(retry_after, floor), self.max_retry_after)


def retry_after_seconds(value: object) -> float | None:
    """``Retry-After`` in seconds (decimal seconds or an HTTP date); None when unreadable.

    Any value is accepted, since ``$batch`` items carry their headers as JSON of any type.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" and "nan" parse as floats but are no time to wait
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class AdaptiveLimit:
    """How many requests may be in flight: halved when the service throttles, +1 after a clean one.

    Waiting out ``Retry-After`` alone is not enough: writers that all resume at the same moment
    stampede the bucket that just refilled. Fewer requests in flight while throttled keeps the
    service busy without being refused.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self._in_flight = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._in_flight < self.limit)
            self._in_flight += 1

    async def __aexit__(self, *_: object) -> None:
        async with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def throttled(self) -> None:
        self.limit = max(1, self.limit // 2)

    def succeeded(self) -> None:
        self.limit = min(self.maximum, self.limit + 1)


class Backpressure:
    """A shared "nobody sends before" time, moved forward whenever a service says slow down."""

    def __init__(self) -> None:
        self._resume_at = 0.0
        self.throttled = 0

    def hold(self, seconds: float) -> None:
        self.throttled += 1
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def wait(self) -> None:
        delay = self._resume_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def read_answer(
    client: httpx.AsyncClient, method: str, url: str, *, service: str, **kwargs: Any
) -> httpx.Response:
    """One exchange, the answer read whole but never beyond ``MAX_ANSWER_BYTES``.

    The body is streamed and counted after decompression, so neither a huge answer nor a small
    compressed one that expands can exhaust memory; what is read becomes the response's content.
    """
    request = client.build_request(method, url, **kwargs)
    response = await client.send(request, stream=True)
    too_large = InvalidAnswer(
        service,
        response.status_code,
        f"the answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB; refused",
    )
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise too_large
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise too_large
    finally:
        await response.aclose()
    response._content = bytes(body)  # what ``aread`` would have stored, read within the cap
    return response


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    service: str,
    policy: RetryPolicy,
    backpressure: Backpressure | None = None,
    limit: AdaptiveLimit | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request with retries; the last answer is returned even when it is an error status.

    Requests are retried only where a repeat is harmless for dgprov: re-issuing an enrollment
    token deletes the previous unused one, and attribute writes are idempotent. A 429 is the
    service pacing its clients, not a failure: it is waited out (``Retry-After``, bounded)
    without spending one of the ``attempts``, for up to ``max_throttled`` seconds in all; so a
    worker that keeps arriving just after the bucket emptied is not failed for it. With
    ``limit``, each attempt takes a place in it and reports whether it was throttled, so the
    number of requests in flight follows what the service accepts.
    """
    last_error = ""
    attempt = 0  # failures so far: transport errors, deadlines, 5xx
    throttled = 0  # 429s so far
    waited = 0.0  # seconds spent waiting them out
    while attempt < policy.attempts:
        if backpressure is not None:
            await backpressure.wait()
        try:
            async with limit if limit is not None else contextlib.nullcontext():
                response = await asyncio.wait_for(
                    read_answer(client, method, url, service=service, **kwargs), policy.deadline
                )
        except (httpx.TransportError, asyncio.TimeoutError) as exc:
            last_error = (
                transport_problem(exc, url)
                if isinstance(exc, httpx.TransportError)
                else f"no complete answer within {policy.deadline:g} s"
            )
            attempt += 1
            if attempt < policy.attempts:
                await asyncio.sleep(policy.backoff(attempt - 1))
            continue
        slow_down = response.status_code in THROTTLE_STATUSES
        if limit is not None and slow_down:
            limit.throttled()
        elif limit is not None:
            limit.succeeded()
        if response.status_code not in RETRY_STATUSES:
            return response
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if response.status_code == 429:
            delay = policy.throttled_delay(retry_after, throttled)
            throttled += 1
            if waited + delay > policy.max_throttled:
                return response
            waited += delay
        else:
            attempt += 1
            if attempt >= policy.attempts:
                return response
            delay = policy.throttled_delay(retry_after, attempt - 1)
        if backpressure is not None and slow_down:
            backpressure.hold(delay)
        await asyncio.sleep(delay)
    plural = "s" if policy.attempts != 1 else ""
    raise TransportFailure(
        f"{service} could not be reached after {policy.attempts} attempt{plural} ({last_error}); "
        "check the URL, the network and the service's health, then run again"
    )


# OpenSSL's words for a server that answered in plain text where a TLS handshake was expected.
NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


def transport_problem(exc: httpx.TransportError, url: str) -> str:
    """What went wrong, in the terms that say what to fix: a name that does not resolve (DNS,
    a typo), a port where nothing listens (the wrong port, a stopped service), a certificate
    that is not trusted (``--ca-bundle``); else the exception's name."""
    try:
        target = exc.request.url  # the absolute URL, also when ``url`` was a path
    except RuntimeError:
        target = httpx.URL(url)
    host = target.host or str(target)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"the name {host} does not resolve"
        if isinstance(cause, ConnectionRefusedError):
            port = target.port or {"https": 443, "http": 80}.get(target.scheme)
            return f"nothing accepts connections on {host} port {port}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"{host}'s certificate is not trusted ({cause.verify_message}); see --ca-bundle"
        if isinstance(cause, ssl.SSLError) and cause.reason in NOT_TLS_REASONS:
            return f"{host} port {target.port or 443} does not answer in TLS (is it http://?)"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__
