"""Authentication, the licence gate, API tokens, users and groups (``defguard_directory``).

Driven over real HTTP through the core emulator, on both server lines (core v2.0.1 and v1.6.6
crates/defguard_core/src/auth/mod.rs, handlers/).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from ..conftest import ADMIN_TOKEN, DISABLED_ADMIN_TOKEN, Running, StartSandbox, example_tenant
from .conftest import bearer, sha, without_user_agent


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        ({}, 401, {"msg": "Session is required"}),
        ({"Authorization": "Basic YWRtaW46cGFzcw=="}, 401, {"msg": "Invalid auth header"}),
        ({"Authorization": f"Bearer{ADMIN_TOKEN}"}, 401, {"msg": "Invalid auth header"}),
        ({"Authorization": "Bear " + ADMIN_TOKEN}, 401, {"msg": "Invalid auth header"}),
        ({"Authorization": "Bearer   x"}, 401, {"msg": "Invalid API token"}),
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


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(sandbox: Running, scheme: str) -> None:
    """headers-v0.4.1 src/common/authorization.rs:87 (``eq_ignore_ascii_case``); ``token()``
    trims leading blanks (:188)."""
    for value in (f"{scheme} {ADMIN_TOKEN}", f"{scheme}   {ADMIN_TOKEN}"):
        response = sandbox.anonymous.get("/api/v1/me", headers={"Authorization": value})
        assert response.status_code == 200
        assert response.json()["username"] == "admin"


@pytest.mark.parametrize(("overdue_days", "status"), [(13, 200), (15, 401)])
def test_subscription_licence_grace(
    start_sandbox: StartSandbox, line: str, overdue_days: int, status: int
) -> None:
    """A subscription stays valid MAX_OVERDUE_TIME (14 days) past expiry (v2.0.1
    enterprise/license.rs:403, :541); a plain licence lapses at once."""
    expired = (datetime.utcnow() - timedelta(days=overdue_days)).isoformat() + "Z"
    tenant = example_tenant()
    tenant["license"] = {"tier": "business", "expires_at": expired, "subscription": True}
    assert start_sandbox(tenant, line).core.get("/api/v1/group-info").status_code == status
    tenant["license"]["subscription"] = False
    assert start_sandbox(tenant, line).core.get("/api/v1/group-info").status_code == 401


@pytest.mark.parametrize(
    ("name", "allowed_on_2_0"),
    [
        ("my-token", True),
        ("read-only (prod)", True),
        ("env:prod/deploy", True),
        ("Zażółć", True),
        ("", False),
        ("token&name", False),
        ("<script>", False),
    ],
)
def test_api_token_names(sandbox: Running, line: str, name: str, allowed_on_2_0: bool) -> None:
    """2.0's ``validate_name`` (v2.0.1 crates/defguard_core/src/handlers/mod.rs:590); 1.6.6
    takes any name."""
    response = sandbox.core.post("/api/v1/user/admin/api_token", json={"name": name})
    if line == "1.6" or allowed_on_2_0:
        assert response.status_code == 201
    else:
        assert (response.status_code, response.json()) == (
            400,
            {"msg": "Name contains forbidden characters"},
        )


def test_api_token_for_an_inactive_admin(sandbox: Running, line: str) -> None:
    """v2.0.1 api_tokens.rs:52 refuses; v1.6.6 has no such check (the token is then unusable)."""
    response = sandbox.core.post("/api/v1/user/former.admin/api_token", json={"name": "x"})
    if line == "2.0":
        assert (response.status_code, response.json()) == (
            403,
            {"msg": "Cannot create API token for inactive user"},
        )
    else:
        assert response.status_code == 201
        token = response.json()["token"]
        assert sandbox.anonymous.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_api_token_checks_the_licence_first(start_sandbox: StartSandbox, line: str) -> None:
    """``LicenseInfo`` is the handler's first extractor, so even an anonymous caller gets 403."""
    tenant = example_tenant()
    tenant["license"] = None
    sandbox = start_sandbox(tenant, line)
    if line == "1.6":  # the example tenant is over 1.6's free limits
        assert sandbox.state.enterprise_enabled() is False
    response = sandbox.anonymous.post("/api/v1/user/admin/api_token", json={"name": "x"})
    assert (response.status_code, response.json()) == (
        403,
        {"msg": "Enterprise features are disabled"},
    )


def test_api_token_needs_a_user_agent_and_a_known_user(sandbox: Running) -> None:
    no_agent = without_user_agent(
        sandbox.core, "POST", "/api/v1/user/admin/api_token", json={"name": "x"}
    )
    assert (no_agent.status_code, no_agent.json()) == (400, {"msg": "Missing UserAgent header"})
    missing = sandbox.core.post("/api/v1/user/nobody/api_token", json={"name": "x"})
    assert (missing.status_code, missing.json()) == (404, {"msg": "user nobody not found"})


def test_deactivating_a_user_deletes_their_api_tokens(start_sandbox: StartSandbox) -> None:
    """``modify_user`` (v2.0.1 handlers/user.rs:782): re-enabling does not revive the tokens."""
    tenant = example_tenant()
    tenant["groups"][0]["members"].append("jdoe")  # jdoe becomes an admin
    tenant["api_tokens"].append({"owner": "jdoe", "name": "j", "token": "dg-" + "j" * 32})
    sandbox = start_sandbox(tenant)
    jdoe = bearer("dg-" + "j" * 32)
    assert sandbox.anonymous.get("/api/v1/me", headers=jdoe).status_code == 200
    for active in (False, True):
        control = sandbox.anonymous.post("/_sandbox/users/jdoe", json={"active": active})
        assert control.json()["is_active"] is active
    assert sandbox.anonymous.get("/api/v1/me", headers=jdoe).json() == {"msg": "Invalid API token"}


def listed(sandbox: Running) -> list[str]:
    body = sandbox.core.get("/api/v1/user", params={"per_page": 100}).json()
    users = body if isinstance(body, list) else body["data"]
    return [u["username"] for u in users]


def test_user_list_in_heap_order(sandbox: Running) -> None:
    """No ORDER BY (v2.0.1 crates/model_derive/src/lib.rs:225-226): an UPDATE writes a new row
    version, which the scan meets last; start_enrollment saves the user."""
    before = listed(sandbox)
    assert before[:3] == ["admin", "former.admin", "jdoe"]
    assert listed(sandbox) == before  # reading changes nothing
    sandbox.issue("jdoe")
    assert listed(sandbox) == [u for u in before if u != "jdoe"] + ["jdoe"]


def test_user_list_stable_order(start_sandbox: StartSandbox, line: str) -> None:
    sandbox = start_sandbox(line=line, user_list_order="stable")
    before = listed(sandbox)
    sandbox.issue("jdoe")
    assert listed(sandbox) == before


def test_user_list_unstable_order_is_seeded(start_sandbox: StartSandbox) -> None:
    from dgprov_sandbox.http_common import FaultSettings

    runs = [
        start_sandbox(user_list_order="unstable", faults=FaultSettings(seed=seed))
        for seed in (5, 5, 6)
    ]
    sequences = [[listed(run) for _ in range(3)] for run in runs]
    assert sequences[0] == sequences[1] != sequences[2]
    first, second, _ = sequences[0]
    assert first != second and sorted(first) == sorted(second)
