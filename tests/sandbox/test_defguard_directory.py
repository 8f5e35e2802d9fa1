"""Authentication, the licence gate, API tokens, users and groups (``defguard_directory``).

Driven over real HTTP through the core emulator, on both server lines (reference §0-3).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from ..conftest import ADMIN_TOKEN, DISABLED_ADMIN_TOKEN, Running, StartSandbox, example_tenant
from .conftest import bearer, sha


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({}, 401, {"msg": "Session is required"}),
        ({"Authorization": "Basic YWRtaW46cGFzcw=="}, 401, {"msg": "Invalid auth header"}),
        (bearer("dg-unknownunknownunknownunknown00"), 401, {"msg": "Invalid API token"}),
        (bearer(DISABLED_ADMIN_TOKEN), 401, {"msg": "Invalid API token"}),
    ],
)
def test_authentication_failures(
    sandbox: Running, headers: dict[str, str], status: int, body: dict[str, str]
) -> None:
    response = sandbox.anonymous.get("/api/v1/group-info", headers=headers)
    assert (response.status_code, response.json()) == (status, body)


def test_token_is_hashed_at_rest(sandbox: Running) -> None:
    assert sha(ADMIN_TOKEN) in sandbox.state.api_tokens
    assert all(ADMIN_TOKEN not in repr(t) for t in sandbox.state.api_tokens.values())


def test_token_of_a_non_admin_is_refused(start_sandbox: StartSandbox, line: str) -> None:
    tenant = example_tenant()
    tenant["api_tokens"].append({"owner": "jdoe", "name": "x", "token": "dg-" + "j" * 32})
    sandbox = start_sandbox(tenant, line)
    response = sandbox.anonymous.get("/api/v1/group-info", headers=bearer("dg-" + "j" * 32))
    assert response.status_code == 403
    assert response.json() == {"msg": "Token authentication is not allowed for normal users"}


@pytest.mark.parametrize(
    ("line", "users", "license", "status"),
    [
        ("2.0", 12, None, 401),
        ("2.0", 3, None, 401),
        ("2.0", 12, {"tier": "business", "expires_at": "2001-01-01T00:00:00Z"}, 401),
        ("2.0", 12, {"tier": "enterprise", "expires_at": None}, 200),
        ("1.6", 12, None, 401),
        ("1.6", 3, None, 200),
        ("1.6", 12, {"tier": "business", "expires_at": "2001-01-01T00:00:00Z"}, 401),
    ],
)
def test_licence_gate(
    start_sandbox: StartSandbox, line: str, users: int, license: Any, status: int
) -> None:
    """Without a licence the Bearer header is ignored: 'Session is required' (1.6: free limits)."""
    tenant = example_tenant()
    tenant["license"] = license
    keep = {"admin", "former.admin", "jdoe"} if users == 3 else None
    if keep:
        tenant["users"] = [u for u in tenant["users"] if u.get("username") in keep]
        for group in tenant["groups"]:
            group["members"] = [m for m in group["members"] if m in keep]
        tenant["locations"] = tenant["locations"][:1]
    sandbox = start_sandbox(tenant, line)
    response = sandbox.core.get("/api/v1/group-info")
    assert response.status_code == status
    if status == 401:
        assert response.json() == {"msg": "Session is required"}


def test_api_token_creation_returns_the_token_once(sandbox: Running) -> None:
    response = sandbox.core.post("/api/v1/user/admin/api_token", json={"name": "ci"})
    assert response.status_code == 201
    created = response.json()["token"]
    assert created.startswith("dg-") and len(created) == 35
    assert sandbox.anonymous.get("/api/v1/group-info", headers=bearer(created)).status_code == 200
    refused = sandbox.core.post("/api/v1/user/jdoe/api_token", json={"name": "x"})
    assert refused.json() == {"msg": "Cannot create API token for non-admin user"}


def test_expired_clock_makes_licence_lapse(start_sandbox: StartSandbox, line: str) -> None:
    tenant = example_tenant()
    soon = (datetime.utcnow() + timedelta(hours=1)).isoformat() + "Z"
    tenant["license"] = {"tier": "business", "expires_at": soon}
    sandbox = start_sandbox(tenant, line)
    assert sandbox.core.get("/api/v1/group-info").status_code == 200
    sandbox.advance_clock(2 * 3600)
    assert sandbox.core.get("/api/v1/group-info").json() == {"msg": "Session is required"}


def test_group_by_name_on_1_6(start_sandbox: StartSandbox) -> None:
    sandbox = start_sandbox(line="1.6")
    response = sandbox.core.get("/api/v1/group/vpn-users")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["id", "is_admin", "members", "name", "vpn_locations"]
    assert body["name"] == "vpn-users" and "dora" in body["members"]
    assert body["vpn_locations"] == ["HQ", "Lab"]
    missing = sandbox.core.get("/api/v1/group/nope")
    assert (missing.status_code, missing.json()) == (404, {"msg": "Group nope not found"})


def test_group_info_works_on_both_lines(sandbox: Running) -> None:
    response = sandbox.core.get("/api/v1/group-info")
    groups = {g["name"]: g for g in response.json()}
    assert set(groups) == {"admin", "vpn-users", "contractors"}
    # Only explicit allow-lists count here, unlike GET /group/{..}.
    assert groups["vpn-users"]["vpn_locations"] == ["HQ"]
    assert groups["vpn-users"]["id"] == 2


def test_enrolled_flag_per_line(sandbox: Running, line: str) -> None:
    def enrolled(name: str) -> bool:
        flag: bool = sandbox.core.get(f"/api/v1/user/{name}").json()["user"]["enrolled"]
        return flag

    assert enrolled("pfetch") is True  # openid_sub counts as enrolled on both lines
    assert enrolled("ldapuser") is True
    assert enrolled("jdoe") is False
