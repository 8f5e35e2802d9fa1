"""Injected faults (``http_common``), seen through the emulators.

Latency, 500/503 answers and dropped connections are seeded and deterministic; Graph's injected
errors use Graph's envelope.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from dgprov_sandbox.http_common import FaultSettings

from ..conftest import Running, StartSandbox, example_tenant, graph_client, sign_in


def _statuses(sandbox: Running, count: int) -> list[int | str]:
    outcomes: list[int | str] = []
    for _ in range(count):
        try:
            outcomes.append(sandbox.core.get("/api/v1/group-info").status_code)
        except httpx.TransportError:
            outcomes.append("dropped")
    return outcomes


def test_faults_are_deterministic_by_seed(start_sandbox: StartSandbox) -> None:
    faults = FaultSettings(error_rate=0.3, drop_rate=0.2, seed=42)
    first = _statuses(start_sandbox(faults=faults), 40)
    second = _statuses(start_sandbox(faults=faults), 40)
    assert first == second
    assert {200, "dropped"} <= set(first) and set(first) & {500, 503}
    other = _statuses(
        start_sandbox(faults=FaultSettings(error_rate=0.3, drop_rate=0.2, seed=7)), 40
    )
    assert other != first


def test_dropped_connection_gets_no_response(start_sandbox: StartSandbox) -> None:
    sandbox = start_sandbox(faults=FaultSettings(drop_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        sandbox.core.get("/api/v1/group-info")
    # Dropped requests are not applied, and inspection is exempt from faults.
    with pytest.raises(httpx.TransportError):
        sandbox.core.post("/api/v1/user/jdoe/start_enrollment", json={})
    assert sandbox.tokens("jdoe") == []


def test_latency_is_added(start_sandbox: StartSandbox) -> None:
    sandbox = start_sandbox(faults=FaultSettings(latency_ms=150))
    response = sandbox.core.get("/api/v1/group-info")
    assert response.status_code == 200
    assert response.elapsed >= timedelta(milliseconds=150)


def test_graph_faults_use_graph_errors(start_sandbox: StartSandbox) -> None:
    from dgprov_sandbox.http_common import FaultSettings

    running = start_sandbox(example_tenant(), faults=FaultSettings(error_rate=1.0, seed=3))
    client = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    responses = [client.get("/me") for _ in range(12)]
    assert {r.status_code for r in responses} == {503, 504}
    assert all(
        r.json()["error"]["code"] in ("serviceNotAvailable", "gatewayTimeout") for r in responses
    )
    assert any("Retry-After" in r.headers for r in responses if r.status_code == 503)
    dropped = start_sandbox(example_tenant(), faults=FaultSettings(drop_rate=1.0))
    token = sign_in(dropped, dropped.info["admin_upn"])
    with pytest.raises(httpx.TransportError):
        graph_client(dropped.info, token).get("/me")
