"""Ports of Defguard core's enrollment server tests, over the proxy's HTTP API.

v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs drives
``EnrollmentServer`` (servers/enrollment.rs) with gRPC requests from a mock proxy; the ports send
the HTTP requests the real proxy (v1.6.2 src/handlers/enrollment.rs) turns into them, so a gRPC
code becomes the proxy's status (src/error.rs:70-85: InvalidArgument 400, Unauthenticated 401).
The server is the same on v1.6.6 (crates/defguard_core/src/grpc/enrollment.rs), so the ports run
on both lines except where 2.0 added behaviour. Tokens upstream creates in the database are
``start_desktop`` tokens; the gateway events and MFA setup are not emulated.
"""

from __future__ import annotations

import pytest

from ...conftest import StartSandbox
from ..conftest import new_pubkey, sha
from .conftest import STRONG_PASSWORD, Hogwarts, enrollment_session, hogwarts_tenant


def new_device(world: Hogwarts, name: str, pubkey: str) -> dict[str, object]:
    response = world.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": name, "pubkey": pubkey}
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def activate(world: Hogwarts, password: str) -> tuple[int, object]:
    response = world.proxy.post("/api/v1/enrollment/activate_user", json={"password": password})
    return response.status_code, response.json() if response.content else None


def test_new_device_creates_device_and_returns_configs(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:26."""
    enrollment_session(hogwarts, "adumbledore2")
    pubkey = "AA0aJzRBTltodYKPnKm2w9Dd6vcEER4rOEVSX2x5hpM="
    config = new_device(hogwarts, "My Laptop", pubkey)
    assert config["device"] and config["configs"]
    devices = hogwarts.user("adumbledore2")["devices"]
    assert [d["wireguard_pubkey"] for d in devices] == [pubkey]


def test_new_device_creates_polling_token(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:85."""
    enrollment_session(hogwarts, "adumbledore2")
    config = new_device(
        hogwarts, "Polling Test Laptop", "BB1bKzSCUmupeZLQnLn3x0Ee7wfGF5sROR0WY3y6iqM="
    )
    token = config["token"]
    assert isinstance(token, str) and token
    (device,) = hogwarts.user("adumbledore2")["devices"]
    assert device["polling_tokens_sha256"] == [sha(token)]


def test_activate_user_happy_path(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:135."""
    enrollment_session(hogwarts, "adumbledore2")
    assert activate(hogwarts, STRONG_PASSWORD) == (200, None)
    user = hogwarts.user("adumbledore2")
    assert user["has_password"] is True and user["enrollment_pending"] is False


def test_activate_user_weak_password_returns_error(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:187."""
    enrollment_session(hogwarts, "adumbledore2")
    assert activate(hogwarts, "weak") == (400, {"error": "password not strong enough"})


def test_activate_user_already_activated_returns_error(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:213."""
    enrollment_session(hogwarts, "adumbledore2")
    assert activate(hogwarts, STRONG_PASSWORD) == (200, None)
    enrollment_session(hogwarts, "adumbledore2")  # a fresh token and session
    assert activate(hogwarts, STRONG_PASSWORD) == (400, {"error": "user already activated"})


def test_existing_device_returns_config_and_rotates_polling_token(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:324."""
    enrollment_session(hogwarts, "adumbledore2")
    pubkey = new_pubkey()
    old = new_device(hogwarts, "laptop", pubkey)["token"]
    enrollment_session(hogwarts, "adumbledore2")
    response = hogwarts.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": pubkey})
    assert response.status_code == 200
    new = response.json()["token"]
    assert new != old
    (device,) = hogwarts.user("adumbledore2")["devices"]
    assert device["polling_tokens_sha256"] == [sha(new)]  # the old one is deleted


def test_existing_device_wrong_user_returns_error(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:383
    (Unauthenticated is 401; here the session is started, so the owner check answers)."""
    enrollment_session(hogwarts, "adumbledore2")
    pubkey = new_pubkey()
    new_device(hogwarts, "laptop", pubkey)
    hogwarts.proxy.cookies.clear()
    enrollment_session(hogwarts, "hpotter")
    response = hogwarts.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": pubkey})
    assert (response.status_code, response.json()) == (
        401,
        {"error": "enrollment token is not valid for specified device"},
    )


def test_activate_user_sets_is_enrolled(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:747."""
    enrollment_session(hogwarts, "adumbledore2")
    activate(hogwarts, STRONG_PASSWORD)
    user = hogwarts.user("adumbledore2")
    assert user["enrolled"] is True and user["ldap_remote_enrollment_completed"] is False


@pytest.mark.parametrize("line", ["2.0"])
def test_activate_ldap_user_sets_ldap_remote_enrollment_completed(
    start_sandbox: StartSandbox, line: str
) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:779
    (2.0 only: v1.6.6 has no such flag)."""
    world = remote_ldap_world(start_sandbox)
    try:
        assert world.user("ldapuser")["enrolled"] is False
        enrollment_session(world, "ldapuser")
        activate(world, STRONG_PASSWORD)
        user = world.user("ldapuser")
        assert user["ldap_remote_enrollment_completed"] is True and user["enrolled"] is True
    finally:
        world.close()


@pytest.mark.parametrize("line", ["2.0"])
def test_activate_non_ldap_user_does_not_set_ldap_remote_enrollment_completed(
    start_sandbox: StartSandbox, line: str
) -> None:
    """v2.0.1:crates/defguard_proxy_manager/src/tests/proxy_manager/handler/enrollment.rs:835."""
    world = remote_ldap_world(start_sandbox)
    try:
        enrollment_session(world, "adumbledore2")
        activate(world, STRONG_PASSWORD)
        user = world.user("adumbledore2")
        assert user["ldap_remote_enrollment_completed"] is False and user["enrolled"] is True
    finally:
        world.close()


def remote_ldap_world(start_sandbox: StartSandbox) -> Hogwarts:
    """``ldap_remote_enrollment_enabled`` set, as the two LDAP tests set it in the database."""
    tenant = hogwarts_tenant()
    tenant["settings"] = {"ldap_remote_enrollment": True}
    return Hogwarts(start_sandbox(tenant, "2.0"))
