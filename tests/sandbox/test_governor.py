"""The 2.0 core's rate limiter (``governor``): tower-governor 0.8.0 over governor 0.10.4.

Defguard v2.0.1 (crates/defguard_core/src/lib.rs:640-676) passes DEFGUARD_RATELIMIT_PERSECOND to
``per_second``, which sets the replenish *period* in seconds; the sandbox clock stands in for
time, so the tests move it instead of sleeping.
"""

from __future__ import annotations

import httpx
import pytest

from ..conftest import Running, StartSandbox, example_tenant


def limited(start_sandbox: StartSandbox, period: int, burst: int, line: str = "2.0") -> Running:
    tenant = example_tenant()
    tenant["settings"].update(rate_limit_per_second=period, rate_limit_burst=burst)
    return start_sandbox(tenant, line)


def status(sandbox: Running, **headers: str) -> int:
    return sandbox.core.get("/api/v1/group-info", headers=headers).status_code


def test_burst_then_one_request_per_period(start_sandbox: StartSandbox) -> None:
    sandbox = limited(start_sandbox, period=10, burst=3)
    assert [status(sandbox) for _ in range(4)] == [200, 200, 200, 429]
    sandbox.advance_clock(9)
    assert status(sandbox) == 429  # per_second(10) replenishes one request per 10 s
    sandbox.advance_clock(1)
    assert [status(sandbox), status(sandbox)] == [200, 429]
    sandbox.advance_clock(30)
    assert [status(sandbox) for _ in range(4)] == [200, 200, 200, 429]  # burst refilled


def test_refusal_shape_and_whole_seconds_rounded_down(start_sandbox: StartSandbox) -> None:
    """tower-governor src/lib.rs:124-149 and src/errors.rs:47-57: ``as_secs()`` of the wait."""
    sandbox = limited(start_sandbox, period=10, burst=1)
    assert status(sandbox) == 200
    refused = sandbox.core.get("/api/v1/group-info")
    assert refused.status_code == 429
    assert refused.text == "Too Many Requests! Wait for 9s"  # 10 s minus the time since
    assert refused.headers["retry-after"] == refused.headers["x-ratelimit-after"] == "9"
    assert "content-type" not in refused.headers
    assert refused.headers["defguard-component-version"] == "2.0.1"
    sandbox.advance_clock(9.5)
    assert sandbox.core.get("/api/v1/group-info").headers["retry-after"] == "0"


def test_retry_after_zero_when_less_than_a_second_remains(start_sandbox: StartSandbox) -> None:
    sandbox = limited(start_sandbox, period=1, burst=1)
    assert status(sandbox) == 200
    refused = sandbox.core.get("/api/v1/group-info")
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "0")
    sandbox.advance_clock(1)
    assert status(sandbox) == 200


def test_key_is_the_client_address(start_sandbox: StartSandbox) -> None:
    """SmartIpKeyExtractor (tower-governor src/key_extractor.rs:105-161): X-Forwarded-For's
    first address, X-Real-IP, Forwarded, then the peer; unparseable values are skipped."""
    sandbox = limited(start_sandbox, period=60, burst=1)
    assert status(sandbox, **{"X-Forwarded-For": "unknown, 10.0.0.1, 10.0.0.9"}) == 200
    assert status(sandbox, **{"X-Forwarded-For": "10.0.0.1"}) == 429
    assert status(sandbox, **{"X-Real-IP": "10.0.0.1"}) == 429
    assert status(sandbox, Forwarded='for="[::ffff:a00:1]:443"') == 200  # another address
    assert status(sandbox, Forwarded="for=10.0.0.2;proto=https") == 200
    assert status(sandbox, **{"X-Real-IP": "10.0.0.2"}) == 429
    assert status(sandbox) == 200  # the peer, 127.0.0.1
    assert status(sandbox) == 429


def test_only_the_api_is_limited(start_sandbox: StartSandbox) -> None:
    sandbox = limited(start_sandbox, period=60, burst=1)
    assert status(sandbox) == 200
    assert status(sandbox) == 429
    assert sandbox.anonymous.get("/_sandbox/requests").status_code == 200


@pytest.mark.parametrize(("period", "burst"), [(0, 5), (5, 0)])
def test_zero_disables(start_sandbox: StartSandbox, period: int, burst: int) -> None:
    """``GovernorConfigBuilder::finish`` returns None (src/governor.rs:233)."""
    sandbox = limited(start_sandbox, period=period, burst=burst)
    assert {status(sandbox) for _ in range(5)} == {200}


def test_no_rate_limiter_on_1_6(start_sandbox: StartSandbox) -> None:
    sandbox = limited(start_sandbox, period=60, burst=1, line="1.6")
    assert {status(sandbox) for _ in range(5)} == {200}


def test_a_core_restart_forgets_every_client(start_sandbox: StartSandbox) -> None:
    """The limiter lives in the process's memory: after an abort it starts empty."""
    sandbox = limited(start_sandbox, period=600, burst=2)
    assert [status(sandbox), status(sandbox), status(sandbox)] == [200, 200, 429]
    sandbox.advance_clock(600)  # one request replenished
    with pytest.raises(httpx.RemoteProtocolError):  # the core aborts: no answer
        sandbox.core.post(
            "/api/v1/user/jdoe/start_enrollment", json={"token_expiration_time": "300000y"}
        )
    assert [status(sandbox), status(sandbox), status(sandbox)] == [200, 200, 429]
