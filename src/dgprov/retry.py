"""Retrying HTTP requests politely: Retry-After first, exponential backoff otherwise.

Both Defguard and Graph answer overload with 429/503/504 (Graph sometimes with a decimal
``Retry-After`` such as ``2.128``), and networks drop connections. Every remote call goes through
``send`` so that one policy decides, and so that a throttled service slows *all* workers down
through the shared ``Backpressure`` gate instead of each hammering it on its own.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import TransportFailure

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for ``attempt`` (0-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (decimal seconds or an HTTP date); None when unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
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


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    service: str,
    policy: RetryPolicy,
    backpressure: Backpressure | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request with retries; the last answer is returned even when it is an error status.

    Requests are retried only where a repeat is harmless for dgprov: re-issuing an enrollment
    token deletes the previous unused one, and attribute writes are idempotent.
    """
    last_error = ""
    for attempt in range(policy.attempts):
        if backpressure is not None:
            await backpressure.wait()
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            last_error = type(exc).__name__
            await asyncio.sleep(policy.backoff(attempt))
            continue
        if response.status_code not in RETRY_STATUSES or attempt == policy.attempts - 1:
            return response
        delay = retry_after_seconds(response.headers.get("retry-after"))
        if delay is None:
            delay = policy.backoff(attempt)
        if backpressure is not None and response.status_code in (429, 503):
            backpressure.hold(delay)
        await asyncio.sleep(delay)
    raise TransportFailure(
        f"{service} could not be reached after {policy.attempts} attempts ({last_error}); check "
        "the URL, the network and the service's health, then run again"
    )
