"""Retrying, backpressure and the adaptive limit, against ``httpx.MockTransport``.

Every remote call goes through ``send``: whether dgprov is polite to a throttled Graph or
Defguard, and whether it gives up cleanly on a dead network, is decided here and nowhere else.
Delays are kept to hundredths of a second; the tests never sleep themselves.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Sequence

import httpx
import pytest

from dgprov.errors import TransportFailure
from dgprov.retry import (
    RETRY_STATUSES,
    AdaptiveLimit,
    Backpressure,
    RetryPolicy,
    retry_after_seconds,
    send,
)

FAST = RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0)  # backoff is always 0 s
SECRET = "dg-Sup3rSecretApiToken000000000000001"
TOLERANCE = 0.002  # the event loop may wake a timer up to its clock resolution early

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers requests from a script, one answer per request, remembering when each came."""

    def __init__(self, answers: Sequence[httpx.Response | Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def call(
    handler: Handler,
    policy: RetryPolicy = FAST,
    backpressure: Backpressure | None = None,
) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="https://defguard.example",
            headers={"Authorization": f"Bearer {SECRET}"},
        ) as client:
            return await send(
                client,
                "POST",
                "/api/v1/user/alice/start_enrollment",
                service="Defguard",
                policy=policy,
                backpressure=backpressure,
                json={"send_enrollment_notification": False},
            )

    return asyncio.run(go())


# ---------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("2.128", 2.128), ("0", 0.0), ("-3", 0.0), (" 7 ", 7.0)],
)
def test_retry_after_in_decimal_seconds(value: str, expected: float) -> None:
    """Graph sends fractions such as ``2.128``; negative values mean "now"."""
    assert retry_after_seconds(value) == expected


def test_retry_after_as_an_http_date() -> None:
    """An HTTP date is turned into the seconds from now until then."""
    moment = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after_seconds(moment)
    assert seconds is not None
    assert 28.0 <= seconds <= 30.0


def test_retry_after_date_in_the_past_means_now() -> None:
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "Someday, 99 Foo 2015", "1h"])
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    """Unreadable values fall back to backoff instead of failing the request."""
    assert retry_after_seconds(value) is None


# ---------------------------------------------------------------------------------- send


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_is_retried_after_retry_after(status: int) -> None:
    """The service's own Retry-After is waited out (backoff here would be 0 s)."""
    recorder = Recorder(
        [httpx.Response(status, headers={"Retry-After": "0.05"}), httpx.Response(201, json={})]
    )
    response = call(recorder)
    assert response.status_code == 201
    assert len(recorder.requests) == 2
    assert recorder.times[1] - recorder.times[0] >= 0.05 - TOLERANCE


def test_every_retry_status_is_retried() -> None:
    """429, 500, 502, 503 and 504 are all answers worth waiting out."""
    statuses = sorted(RETRY_STATUSES)
    recorder = Recorder([*(httpx.Response(s) for s in statuses), httpx.Response(201)])
    response = call(recorder, RetryPolicy(attempts=len(statuses) + 1, base_delay=0.0))
    assert response.status_code == 201
    assert len(recorder.requests) == len(statuses) + 1


def test_last_error_answer_is_returned_after_all_attempts() -> None:
    """The caller gets the real answer to report, not an exception, once attempts run out."""
    recorder = Recorder([httpx.Response(503, headers={"Retry-After": "0.001"}, json={"n": 1})])
    response = call(recorder)
    assert response.status_code == 503
    assert response.json() == {"n": 1}
    assert len(recorder.requests) == FAST.attempts


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_other_client_errors_are_returned_at_once(status: int) -> None:
    """A refusal will not change by asking again: exactly one request."""
    recorder = Recorder([httpx.Response(status, json={"msg": "no"})])
    response = call(recorder)
    assert response.status_code == status
    assert len(recorder.requests) == 1


def test_transport_errors_are_retried_then_recovered() -> None:
    """A dropped connection is retried like a 503."""
    request = httpx.Request("POST", "https://defguard.example")
    recorder = Recorder(
        [httpx.ConnectError("refused", request=request), httpx.Response(201, json={"ok": 1})]
    )
    assert call(recorder).json() == {"ok": 1}
    assert len(recorder.requests) == 2


def test_transport_failure_names_the_service_and_no_secret() -> None:
    """After the last attempt the error says what failed, never what was sent."""
    request = httpx.Request("POST", f"https://x:{SECRET}@defguard.example")
    recorder = Recorder([httpx.ConnectError(f"refused with {SECRET}", request=request)])
    with pytest.raises(TransportFailure) as caught:
        call(recorder)
    message = str(caught.value)
    assert message.startswith("Defguard could not be reached after 4 attempts (ConnectError)")
    assert SECRET not in message
    assert len(recorder.requests) == FAST.attempts


def test_throttling_holds_the_shared_backpressure() -> None:
    """A 429/503 slows down every worker sharing the gate, for the time the service asked."""
    gate = Backpressure()
    recorder = Recorder([httpx.Response(429, headers={"Retry-After": "0.03"}), httpx.Response(200)])
    call(recorder, backpressure=gate)
    assert gate.throttled == 1


def test_server_errors_do_not_hold_the_backpressure() -> None:
    """A 500 is one request's trouble, not a request to slow everyone down."""
    gate = Backpressure()
    recorder = Recorder([httpx.Response(500), httpx.Response(502), httpx.Response(200)])
    assert call(recorder, backpressure=gate).status_code == 200
    assert gate.throttled == 0


def test_backoff_stays_within_its_bounds() -> None:
    """Full jitter: never negative, never above the exponential cap or ``max_delay``."""
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    for attempt in range(10):
        cap = min(3.0, 0.5 * 2**attempt)
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(0.0 <= d <= cap for d in delays)
    assert max(policy.backoff(9) for _ in range(200)) > 0.5 * 2  # grows beyond the base


# ---------------------------------------------------------------------------- Backpressure


def test_backpressure_wait_lasts_at_least_the_hold() -> None:
    gate = Backpressure()

    async def go() -> float:
        gate.hold(0.04)
        start = time.monotonic()
        await gate.wait()
        return time.monotonic() - start

    assert asyncio.run(go()) >= 0.04 - TOLERANCE
    assert gate.throttled == 1


def test_shorter_hold_does_not_shorten_a_longer_one() -> None:
    """Two workers throttled differently: everyone waits for the later time."""
    gate = Backpressure()

    async def go() -> float:
        gate.hold(0.05)
        gate.hold(0.001)
        start = time.monotonic()
        await gate.wait()
        return time.monotonic() - start

    assert asyncio.run(go()) >= 0.05 - TOLERANCE - 0.001
    assert gate.throttled == 2


def test_backpressure_without_hold_does_not_wait() -> None:
    gate = Backpressure()

    async def go() -> float:
        start = time.monotonic()
        await gate.wait()
        return time.monotonic() - start

    assert asyncio.run(go()) < 0.01


# --------------------------------------------------------------------------- AdaptiveLimit


def test_limit_halves_when_throttled_never_below_one() -> None:
    limit = AdaptiveLimit(8)
    seen = []
    for _ in range(5):
        limit.throttled()
        seen.append(limit.limit)
    assert seen == [4, 2, 1, 1, 1]


def test_limit_grows_by_one_never_above_the_maximum() -> None:
    limit = AdaptiveLimit(5)
    limit.throttled()
    limit.throttled()
    seen = []
    for _ in range(6):
        limit.succeeded()
        seen.append(limit.limit)
    assert seen == [2, 3, 4, 5, 5, 5]


async def holders_at_once(limit: AdaptiveLimit, workers: int) -> tuple[int, int]:
    """``(holders while all wait, peak)`` for ``workers`` tasks that hold until released."""
    inside, peak = 0, 0
    full, release = asyncio.Event(), asyncio.Event()

    async def worker() -> None:
        nonlocal inside, peak
        async with limit:
            inside += 1
            peak = max(peak, inside)
            if inside >= limit.limit:
                full.set()
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.wait_for(full.wait(), 5)
    for _ in range(workers):  # give any task the limit failed to stop the turns it needs
        await asyncio.sleep(0)
    while_full = inside
    release.set()
    await asyncio.gather(*tasks)
    return while_full, peak


def test_limit_bounds_concurrent_holders() -> None:
    """The limit is a real bound on requests in flight, not just a number."""
    limit = AdaptiveLimit(3)
    assert asyncio.run(holders_at_once(limit, 10)) == (3, 3)


def test_throttled_limit_bounds_concurrent_holders() -> None:
    """After throttling, fewer may be in flight than the maximum."""
    limit = AdaptiveLimit(8)
    limit.throttled()
    limit.throttled()
    assert asyncio.run(holders_at_once(limit, 10)) == (2, 2)
