"""Ports of Defguard core's polling tests, over the proxy's ``POST /api/v1/poll``.

v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/polling.rs drives
``PollingServer::info`` (v2.0.1 crates/defguard_core/src/enterprise/grpc/polling.rs, the same
code in v1.6.6) with gRPC requests; the ports poll through the proxy (v1.6.2
src/handlers/polling.rs), where FailedPrecondition "no valid license" is 402 and
PermissionDenied 403 (src/error.rs:35-85, src/handlers/mod.rs:76-85). The device and its polling
token come from a real enrollment (``create_device``) instead of database inserts.
"""

from __future__ import annotations

from typing import Any

from ...conftest import StartSandbox
from ..conftest import new_pubkey
from .conftest import Hogwarts, enrollment_session, hogwarts_tenant


def device_with_polling_token(world: Hogwarts) -> dict[str, Any]:
    enrollment_session(world, "adumbledore2")
    response = world.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "laptop", "pubkey": new_pubkey()}
    )
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def test_polling_returns_updated_device_config(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/polling.rs:15."""
    created = device_with_polling_token(hogwarts)
    response = hogwarts.proxy.post("/api/v1/poll", json={"token": created["token"]})
    assert response.status_code == 200
    assert response.json()["device_config"] is not None


def test_polling_answer_carries_no_token(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/src/enterprise/grpc/polling.rs:92 and
    v1.6.6:crates/defguard_core/src/enterprise/grpc/polling.rs:90 build the answer with
    ``token: None``; the desktop client then keeps its token (client v1.6.9:src-tauri/src/
    commands.rs:589), which therefore keeps working."""
    created = device_with_polling_token(hogwarts)
    for _ in range(3):
        response = hogwarts.proxy.post("/api/v1/poll", json={"token": created["token"]})
        assert response.status_code == 200
        assert response.json()["device_config"]["token"] is None


def test_polling_requires_business_license(start_sandbox: StartSandbox, line: str) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/polling.rs:53."""
    tenant = hogwarts_tenant()
    soon = "2000-01-01T00:00:00Z"
    tenant["license"] = {"tier": "business", "expires_at": soon}  # expired: no valid licence
    for number in range(6):  # over 1.6's free limits, which would open the gate
        tenant["users"].append({"username": f"x{number}", "first_name": "X", "last_name": "Y"})
    world = Hogwarts(start_sandbox(tenant, line))
    try:
        response = world.proxy.post("/api/v1/poll", json={"token": "t" * 32})
        assert (response.status_code, response.json()) == (
            402,
            {"error": "Enterprise features are not enabled"},
        )
    finally:
        world.close()


def test_polling_invalid_token_returns_error(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/polling.rs:83."""
    response = hogwarts.proxy.post(
        "/api/v1/poll", json={"token": "this-token-does-not-exist-00000000"}
    )
    assert (response.status_code, response.json()) == (403, {"error": "invalid token"})


def test_polling_inactive_user_returns_error(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/polling.rs:110."""
    created = device_with_polling_token(hogwarts)
    hogwarts.anonymous.post("/_sandbox/users/adumbledore2", json={"active": False})
    response = hogwarts.proxy.post("/api/v1/poll", json={"token": created["token"]})
    assert (response.status_code, response.json()) == (403, {"error": "user inactive"})
