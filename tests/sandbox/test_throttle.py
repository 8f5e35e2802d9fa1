"""Graph throttling: costs, buckets, 429s inside and outside batches, and a measured write storm."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from dgprov_sandbox.tenant import synthetic_tenant
from dgprov_sandbox.throttle import Throttle, format_retry_after, request_cost

from ..conftest import StartSandbox, graph_client, public_client, sign_in, trust
from .conftest import sandbox_process

CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"


def patch_body(value: str) -> dict[str, Any]:
    return {
        "customSecurityAttributes": {
            "Defguard": {"@odata.type": CSA_TYPE, "EnrollmentToken": value}
        }
    }


# ---------------------------------------------------------------------------- pure units


@pytest.mark.parametrize(
    ("method", "route", "query", "cost"),
    [
        ("GET", "users", {}, 2),
        ("GET", "users", {"$select": "id"}, 1),
        ("GET", "members", {}, 3),
        ("GET", "transitiveMembers", {"$select": "id", "$top": "5"}, 3),
        ("GET", "", {"$top": "5"}, 1),
        ("PATCH", "", {}, 1),
    ],
)
def test_request_costs(method: str, route: str, query: dict[str, str], cost: int) -> None:
    assert request_cost(method, route, query) == cost


def test_retry_after_format() -> None:
    assert format_retry_after(2.0) == "2"
    assert format_retry_after(2.1271) == "2.128"
    assert format_retry_after(0.0001) == "0.001"


def test_write_bucket_with_a_fake_clock() -> None:
    now = [0.0]
    throttle = Throttle("t", 10, enabled=True, quota_scale=0.01, clock=lambda: now[0])
    allowed = [throttle.admit("app", 1, write=True).allowed for _ in range(31)]
    assert allowed == [True] * 30 + [False]
    refused = throttle.admit("app", 1, write=True)
    assert refused.information == "WriteLimitExceeded"
    assert refused.retry_after == pytest.approx(150 / 30)
    assert refused.scope == "Tenant_Application/Write/app/t"
    now[0] += refused.retry_after
    assert throttle.admit("app", 1, write=True).allowed
    assert throttle.admit("other-app", 1, write=True).allowed


def test_resource_unit_bucket_by_tenant_size() -> None:
    small = Throttle("t", 10, enabled=True, quota_scale=0.001, clock=lambda: 0.0)
    large = Throttle("t", 600, enabled=True, quota_scale=0.001, clock=lambda: 0.0)
    assert sum(small.admit("a", 1, write=False).allowed for _ in range(20)) == 3  # 3,500 * 0.001
    assert sum(large.admit("a", 1, write=False).allowed for _ in range(20)) == 8  # 8,000 * 0.001


# --------------------------------------------------------------------------- over HTTP


def test_429_outside_and_inside_batches_and_recovery(start_sandbox: StartSandbox) -> None:
    """Time is the sandbox clock: one write comes back every 5 s, so the burst is not refilled."""
    running = start_sandbox(synthetic_tenant(5, 2), throttle="documented", quota_scale=0.01)
    client = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    target = running.info["user_upns"][0]
    statuses = [
        client.patch(f"/users/{target}", json=patch_body(str(i))).status_code for i in range(30)
    ]
    assert statuses == [204] * 30  # the burst: 3,000 writes * 0.01
    refused = client.patch(f"/users/{target}", json=patch_body("x"))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert refused.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert refused.headers["x-ms-throttle-scope"].startswith("Tenant_Application/Write/")
    wait = float(refused.headers["Retry-After"])
    assert 0 < wait <= 150 / 30 + 0.01
    running.advance_clock(wait / 2)
    assert client.patch(f"/users/{target}", json=patch_body("early")).status_code == 429
    running.advance_clock(wait / 2)  # honouring Retry-After is the behaviour under test
    assert client.patch(f"/users/{target}", json=patch_body("y")).status_code == 204

    running.advance_clock(150)  # the write bucket refills completely
    items = [
        {
            "id": str(i),
            "method": "PATCH",
            "url": f"/users/{target}",
            "headers": {"Content-Type": "application/json"},
            "body": patch_body(str(i)),
        }
        for i in range(20)
    ]
    first = client.post("/$batch", json={"requests": items}).json()["responses"]
    second = client.post("/$batch", json={"requests": items}).json()["responses"]
    assert [r["status"] for r in first].count(204) == 20
    throttled = [r for r in second if r["status"] == 429]
    assert [r["status"] for r in second].count(204) == 10 and len(throttled) == 10
    for item in throttled:
        assert float(item["headers"]["Retry-After"]) > 0
        assert item["headers"]["x-ms-throttle-information"] == "WriteLimitExceeded"
        assert item["body"]["error"]["code"] == "TooManyRequests"


def test_throttle_off_never_refuses(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(synthetic_tenant(3, 2), quota_scale=0.001, time_scale=0.001)
    client = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    target = running.info["user_upns"][0]
    assert {
        client.patch(f"/users/{target}", json=patch_body("a")).status_code for _ in range(40)
    } == {204}


# ------------------------------------------------------------------------------ write storm

STORM_WRITES = 150
STORM_THREADS = 8
WRITE_BURST = 30  # 3,000 * 0.01
STORM_TIME_SCALE = 0.005
WRITE_RATE = WRITE_BURST / (150 * STORM_TIME_SCALE)  # 40 writes/s: a loaded CI machine keeps up


def test_write_storm_is_held_to_the_scaled_rate() -> None:
    """150 PATCHes against --quota-scale 0.01 --time-scale 0.005: 30 writes per 0.75 s."""
    storm = ["--users", "10", "--throttle", "documented", "--quota-scale", "0.01"]
    with sandbox_process(
        *storm, "--time-scale", str(STORM_TIME_SCALE), "--auto-approve-as", "admin"
    ) as info:
        app = public_client(info)
        token = app.acquire_token_by_device_flow(
            app.initiate_device_flow(
                scopes=["User.Read.All", "CustomSecAttributeAssignment.ReadWrite.All"]
            )
        )["access_token"]
        accepted: list[float] = []
        refused: list[str | None] = []
        lock = threading.Lock()
        remaining = iter(range(STORM_WRITES))
        targets = info["user_upns"]

        def worker() -> None:
            with httpx.Client(
                base_url=info["graph_url"],
                verify=trust(info),
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                while True:
                    with lock:
                        number = next(remaining, None)
                    if number is None:
                        return
                    while True:
                        response = client.patch(
                            f"/users/{targets[number % len(targets)]}", json=patch_body(str(number))
                        )
                        if response.status_code == 204:
                            with lock:
                                accepted.append(time.monotonic())
                            break
                        assert response.status_code == 429, response.text
                        with lock:
                            refused.append(response.headers.get("Retry-After"))
                        time.sleep(float(response.headers["Retry-After"]))

        started = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(STORM_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        elapsed = max(accepted) - started
    assert len(accepted) == STORM_WRITES
    assert refused and all(value is not None and float(value) > 0 for value in refused)
    # After the initial burst the writes must flow at the scaled rate, within 20 %.
    sustained_rate = (STORM_WRITES - WRITE_BURST) / elapsed
    summary = f"{STORM_WRITES} writes, {elapsed:.3f} s, {sustained_rate:.0f}/s"
    print(f"storm: {summary}, {len(refused)} answered 429")
    assert WRITE_RATE * 0.8 <= sustained_rate <= WRITE_RATE * 1.2
