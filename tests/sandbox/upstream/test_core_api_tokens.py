"""Ports of Defguard core's ``crates/defguard_core/tests/integration/api/api_tokens.rs``.

Tags v2.0.1 and v1.6.6. The token listing, renaming and deleting routes are not emulated, so the
ports keep creation and authentication; cookie sessions are the admin's API token, and "log out"
is simply a request without one.
"""

from __future__ import annotations

import httpx
import pytest

from ...conftest import StartSandbox
from .conftest import HPOTTER_TOKEN, Hogwarts, hogwarts_tenant


def test_normal_user_cannot_access_token_endpoints(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/api_tokens.rs:22,
    v1.6.6:crates/defguard_core/tests/integration/api/api_tokens.rs:19 (creation)."""
    response = hogwarts.hpotter.post("/api/v1/user/hpotter/api_token", json={"name": "dummy token"})
    assert response.status_code == 403


def test_normal_user_cannot_use_token_auth(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/api_tokens.rs:65,
    v1.6.6:crates/defguard_core/tests/integration/api/api_tokens.rs:62."""
    response = hogwarts.anonymous.get(
        "/api/v1/me", headers={"authorization": f"Bearer {HPOTTER_TOKEN}"}
    )
    assert response.status_code == 403


def test_admin_user_can_manage_api_tokens(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/api_tokens.rs:98,
    v1.6.6:crates/defguard_core/tests/integration/api/api_tokens.rs:95 (creation part)."""
    for number in (1, 2, 3):
        response = hogwarts.admin.post(
            "/api/v1/user/admin/api_token", json={"name": f"dummy token {number}"}
        )
        assert response.status_code == 201
    refused = hogwarts.admin.post("/api/v1/user/hpotter/api_token", json={"name": "nope"})
    assert refused.status_code == 403


def test_admin_user_can_use_api_tokens_to_authenticate(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/api_tokens.rs:204,
    v1.6.6:crates/defguard_core/tests/integration/api/api_tokens.rs:201."""
    response = hogwarts.admin.post("/api/v1/user/admin/api_token", json={"name": "dummy token 1"})
    assert response.status_code == 201
    token = response.json()["token"]
    assert hogwarts.anonymous.get("/api/v1/me").status_code == 401
    good = hogwarts.anonymous.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
    assert good.status_code == 200
    wrong_name = hogwarts.anonymous.get(
        "/api/v1/me", headers={"not_actually_authorization": f"Bearer {token}"}
    )
    assert wrong_name.status_code == 401
    wrong_scheme = hogwarts.anonymous.get("/api/v1/me", headers={"authorization": f"Bear {token}"})
    assert wrong_scheme.status_code == 401
    again = hogwarts.anonymous.get("/api/v1/me", headers={"authorization": f"Bearer {token}"})
    assert again.status_code == 200 and again.json()["username"] == "admin"


def test_token_invalidation_dg25_3(start_sandbox: StartSandbox, line: str) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/api_tokens.rs:288,
    v1.6.6:crates/defguard_core/tests/integration/api/api_tokens.rs:285
    (``dg25_3_test_token_invalidation``). hpotter joins the admin group in the tenant; enabling
    and disabling is ``POST /_sandbox/users/hpotter`` (what ``PUT /user`` does to ``is_active``)."""
    tenant = hogwarts_tenant()
    tenant["groups"][0]["members"].append("hpotter")
    world = Hogwarts(start_sandbox(tenant, line))
    try:
        created = world.hpotter.post(
            "/api/v1/user/hpotter/api_token", json={"name": "dummy token 1"}
        )
        assert created.status_code == 201
        token = {"authorization": f"Bearer {created.json()['token']}"}
        assert world.anonymous.get("/api/v1/me", headers=token).status_code == 200
        disabled = world.anonymous.post("/_sandbox/users/hpotter", json={"active": False})
        assert disabled.json()["is_active"] is False
        if line == "2.0":
            inactive = world.admin.post(
                "/api/v1/user/hpotter/api_token", json={"name": "inactive user token"}
            )
            assert inactive.status_code == 403
            world.anonymous.post("/_sandbox/users/hpotter", json={"active": True})
        assert world.anonymous.get("/api/v1/me", headers=token).status_code == 401
    finally:
        world.close()


FORBIDDEN = [
    "<script>alert(1)</script>",
    "<h1><a href='x'>click</a></h1>",
    "token&name",
    'token"name',
    "token`name",
    "read:users<admin>",
    "ci/cd&deploy",
]
ALLOWED = [
    "my-token",
    "token_1",
    "Token 2026",
    "ci.deploy",
    "read-only (prod)",
    "read:users",
    "ci/cd",
    "env:prod/deploy",
]


@pytest.mark.parametrize("line", ["2.0"])
def test_add_api_token_dg26_8(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/api_tokens.rs:405
    (``dg26_8_test_add_api_token``; 2.0 only, 1.6.6 takes any name)."""
    for name, status in [(n, 400) for n in FORBIDDEN] + [(n, 201) for n in ALLOWED]:
        response: httpx.Response = hogwarts.admin.post(
            "/api/v1/user/admin/api_token", json={"name": name}
        )
        assert response.status_code == status, f"expected {status} for name: {name!r}"
