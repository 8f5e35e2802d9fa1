"""The Defguard core emulator over real HTTP, on both server lines (reference §0-5, §9)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from dgprov_sandbox.http_common import FaultSettings

from ..conftest import ADMIN_TOKEN, DISABLED_ADMIN_TOKEN, Running, StartSandbox, example_tenant

UA = {"User-Agent": "dgprov-tests"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **UA}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def expiry_seconds(sandbox: Running, username: str) -> float:
    (token,) = sandbox.tokens(username)
    created = datetime.fromisoformat(token["created_at"])
    return (datetime.fromisoformat(token["expires_at"]) - created).total_seconds()


# ----------------------------------------------------------------------------------- auth


def test_version_header_per_line(sandbox: Running, line: str) -> None:
    response = sandbox.core.get("/api/v1/info")
    assert response.status_code == 200
    expected = {"1.6": "1.6.6", "2.0": "2.0.1"}[line]
    assert response.headers["defguard-component-version"] == expected
    assert response.json()["version"] == expected
    assert list(response.json()) == sorted(response.json())


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


# --------------------------------------------------------------------------------- groups


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


def test_group_by_id_on_2_0_refuses_names(start_sandbox: StartSandbox) -> None:
    sandbox = start_sandbox(line="2.0")
    by_name = sandbox.core.get("/api/v1/group/vpn-users")
    assert by_name.status_code == 400
    assert by_name.headers["content-type"].startswith("text/plain")
    assert by_name.text == "Invalid URL: Cannot parse `vpn-users` to a `i64`"
    by_id = sandbox.core.get("/api/v1/group/2")
    assert by_id.status_code == 200 and by_id.json()["name"] == "vpn-users"
    assert sandbox.core.get("/api/v1/group/99").json() == {"msg": "Group 99 not found"}


def test_group_route_checks_auth_before_the_path(start_sandbox: StartSandbox) -> None:
    sandbox = start_sandbox(line="2.0")
    assert sandbox.anonymous.get("/api/v1/group/vpn-users").status_code == 401


def test_group_info_works_on_both_lines(sandbox: Running) -> None:
    response = sandbox.core.get("/api/v1/group-info")
    groups = {g["name"]: g for g in response.json()}
    assert set(groups) == {"admin", "vpn-users", "contractors"}
    # Only explicit allow-lists count here, unlike GET /group/{..}.
    assert groups["vpn-users"]["vpn_locations"] == ["HQ"]
    assert groups["vpn-users"]["id"] == 2


def test_list_groups_shape(sandbox: Running, line: str) -> None:
    body = sandbox.core.get("/api/v1/group").json()
    if line == "1.6":
        assert body == {"groups": ["admin", "vpn-users", "contractors"]}
    else:
        assert body["data"] == ["admin", "vpn-users", "contractors"]
        assert body["pagination"] == {
            "current_page": 1,
            "next_page": None,
            "page_size": 50,
            "total_items": 3,
            "total_pages": 1,
        }


# ---------------------------------------------------------------------------------- users


def test_list_users_shape(sandbox: Running, line: str) -> None:
    body = sandbox.core.get("/api/v1/user").json()
    users = body if line == "1.6" else body["data"]
    assert [u["username"] for u in users][:3] == ["admin", "former.admin", "jdoe"]
    assert ("devices" in users[0]) is (line == "2.0")
    assert ("name" in users[0]) is (line == "2.0")


def test_pagination_on_2_0(start_sandbox: StartSandbox) -> None:
    tenant = example_tenant()
    for number in range(230):
        tenant["users"].append(
            {"username": f"bulk{number:03d}", "first_name": "B", "last_name": "U"}
        )
    sandbox = start_sandbox(tenant, "2.0")
    seen: list[str] = []
    page: int | None = 1
    while page is not None:
        body = sandbox.core.get("/api/v1/user", params={"page": page, "per_page": 1000}).json()
        assert body["pagination"]["page_size"] == 100
        seen += [u["username"] for u in body["data"]]
        page = body["pagination"]["next_page"]
    assert len(seen) == len(set(seen)) == 242
    default = sandbox.core.get("/api/v1/user").json()["pagination"]
    assert (default["page_size"], default["total_pages"]) == (50, 5)
    clamped = sandbox.core.get("/api/v1/user", params={"page": 0, "per_page": 0}).json()
    assert clamped["pagination"]["current_page"] == 1 and clamped["pagination"]["page_size"] == 1
    bad = sandbox.core.get("/api/v1/user", params={"page": "x"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/plain")


def test_get_user_shape(sandbox: Running, line: str) -> None:
    body = sandbox.core.get("/api/v1/user/enrolled").json()
    assert body["user"]["enrolled"] is True
    if line == "1.6":
        assert [d["name"] for d in body["devices"]] == ["ed-laptop"]
        assert "devices" not in body["user"]
    else:
        assert "devices" not in body
        assert [d["name"] for d in body["user"]["devices"]] == ["ed-laptop"]
        assert body["user"]["name"] == "Ed Enrolled"
    missing = sandbox.core.get("/api/v1/user/nobody")
    assert (missing.status_code, missing.json()) == (404, {"msg": "user nobody not found"})


def test_enrolled_flag_per_line(sandbox: Running, line: str) -> None:
    def enrolled(name: str) -> bool:
        flag: bool = sandbox.core.get(f"/api/v1/user/{name}").json()["user"]["enrolled"]
        return flag

    assert enrolled("pfetch") is True  # openid_sub counts as enrolled on both lines
    assert enrolled("ldapuser") is True
    assert enrolled("jdoe") is False


# ----------------------------------------------------------------------- start_enrollment


def test_start_enrollment_success(sandbox: Running) -> None:
    response = sandbox.core.post("/api/v1/user/jdoe/start_enrollment", json={})
    assert response.status_code == 201
    assert response.text.startswith('{"enrollment_token":')
    body = response.json()
    assert list(body) == ["enrollment_token", "enrollment_url"]
    assert len(body["enrollment_token"]) == 32 and body["enrollment_token"].isalnum()
    assert body["enrollment_url"] == sandbox.info["proxy_url"] + "/"
    assert expiry_seconds(sandbox, "jdoe") == 24 * 3600
    assert sandbox.core.get("/api/v1/user/jdoe").json()["user"]["enrolled"] is False


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("24h", 86400), ("1d", 86400), ("2w", 1_209_600), ("1h 30m", 5400), ("1.5h", 5400), ("0", 0)],
)
def test_token_expiration_time_grammar(sandbox: Running, duration: str, seconds: int) -> None:
    sandbox.issue("jdoe", token_expiration_time=duration)
    assert expiry_seconds(sandbox, "jdoe") == seconds


@pytest.mark.parametrize("duration", ["24", "1 day and a bit", "1.h", "", "1H"])
def test_bad_token_expiration_time(sandbox: Running, duration: str) -> None:
    response = sandbox.core.post(
        "/api/v1/user/jdoe/start_enrollment", json={"token_expiration_time": duration}
    )
    assert (response.status_code, response.json()) == (
        400,
        {"msg": "Failed to parse token expiration time"},
    )
    assert sandbox.tokens("jdoe") == []


def test_reissue_deletes_unused_tokens_but_keeps_started_ones(sandbox: Running) -> None:
    first = sandbox.issue("jdoe")
    second = sandbox.issue("jdoe")
    assert [t["token_sha256"] for t in sandbox.tokens("jdoe")] == [sha(second)]
    assert sandbox.proxy.post("/api/v1/enrollment/start", json={"token": second}).status_code == 200
    third = sandbox.issue("jdoe")
    assert {t["token_sha256"] for t in sandbox.tokens("jdoe")} == {sha(second), sha(third)}
    assert sha(first) not in {t["token_sha256"] for t in sandbox.tokens("jdoe")}


def test_missing_user_agent(sandbox: Running) -> None:
    response = sandbox.anonymous.post(
        "/api/v1/user/jdoe/start_enrollment",
        json={},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "User-Agent": ""},
    )
    assert (response.status_code, response.json()) == (400, {"msg": "Missing UserAgent header"})


@pytest.mark.parametrize(
    ("content", "content_type", "status", "starts"),
    [
        (b"{}", None, 415, "Expected request with `Content-Type: application/json`"),
        (b"", "application/json", 400, "Failed to parse the request body as JSON"),
        (b"{nope", "application/json", 400, "Failed to parse the request body as JSON"),
        (
            b'{"send_enrollment_notification": "yes"}',
            "application/json",
            422,
            "Failed to deserialize the JSON body into the target type: send_enrollment_notif",
        ),
        (b'{"email": 5}', "application/json", 422, "Failed to deserialize the JSON body"),
        (b"[1]", "application/json", 422, "Failed to deserialize the JSON body"),
    ],
)
def test_body_rejections_are_text(
    sandbox: Running, content: bytes, content_type: str | None, status: int, starts: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = sandbox.core.post(
        "/api/v1/user/jdoe/start_enrollment", content=content, headers=headers
    )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(starts)


def test_notification_without_email_is_checked_before_the_user(sandbox: Running) -> None:
    response = sandbox.core.post(
        "/api/v1/user/nobody/start_enrollment", json={"send_enrollment_notification": True}
    )
    assert (response.status_code, response.json()) == (
        400,
        {"msg": "Email notification is enabled, but email was not provided"},
    )
    response = sandbox.core.post("/api/v1/user/nobody/start_enrollment", json={})
    assert (response.status_code, response.json()) == (404, {"msg": "user nobody not found"})


def test_already_activated(sandbox: Running) -> None:
    response = sandbox.core.post("/api/v1/user/enrolled/start_enrollment", json={})
    assert (response.status_code, response.json()) == (
        400,
        {"msg": "User account is already activated"},
    )


def test_prefetched_user_rejected_on_2_0_only(sandbox: Running, line: str) -> None:
    response = sandbox.core.post("/api/v1/user/pfetch/start_enrollment", json={})
    if line == "2.0":
        assert (response.status_code, response.json()) == (
            400,
            {"msg": "User account is already activated"},
        )
    else:
        assert response.status_code == 201


def test_start_desktop_serves_prefetched_and_enrolled_users(sandbox: Running) -> None:
    for username in ("pfetch", "enrolled"):
        response = sandbox.core.post(
            f"/api/v1/user/{username}/start_desktop", json={"token_expiration_time": "1h"}
        )
        assert response.status_code == 201
        assert list(response.json()) == ["enrollment_token", "enrollment_url"]
        # start_desktop ignores token_expiration_time and uses the default lifetime.
        assert expiry_seconds(sandbox, username) == 24 * 3600
        (token,) = sandbox.tokens(username)
        assert token["email"] == sandbox.state.users[username].email
    assert sandbox.core.get("/api/v1/user/enrolled").json()["user"]["enrolled"] is True


def test_disabled_user(sandbox: Running) -> None:
    for route in ("start_enrollment", "start_desktop"):
        response = sandbox.core.post(f"/api/v1/user/dora/{route}", json={})
        assert (response.status_code, response.json()) == (
            401,
            {"msg": "Enrollment user is disabled"},
        )


def test_expired_clock_makes_licence_lapse(start_sandbox: StartSandbox, line: str) -> None:
    tenant = example_tenant()
    soon = (datetime.utcnow() + timedelta(hours=1)).isoformat() + "Z"
    tenant["license"] = {"tier": "business", "expires_at": soon}
    sandbox = start_sandbox(tenant, line)
    assert sandbox.core.get("/api/v1/group-info").status_code == 200
    sandbox.advance_clock(2 * 3600)
    assert sandbox.core.get("/api/v1/group-info").json() == {"msg": "Session is required"}


# --------------------------------------------------------------------- limits and faults


def test_rate_limiter_on_2_0(start_sandbox: StartSandbox) -> None:
    tenant = example_tenant()
    tenant["settings"].update(rate_limit_per_second=1, rate_limit_burst=3)
    sandbox = start_sandbox(tenant, "2.0")
    statuses = [sandbox.core.get("/api/v1/group-info").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    limited = sandbox.core.get("/api/v1/group-info")
    assert limited.status_code == 429
    assert limited.text.startswith("Too Many Requests! Wait for ")
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-after"] == limited.headers["retry-after"]


def test_no_rate_limiter_on_1_6(start_sandbox: StartSandbox) -> None:
    tenant = example_tenant()
    tenant["settings"].update(rate_limit_per_second=1, rate_limit_burst=1)
    sandbox = start_sandbox(tenant, "1.6")
    assert {sandbox.core.get("/api/v1/group-info").status_code for _ in range(5)} == {200}


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


def test_request_counts(sandbox: Running) -> None:
    sandbox.core.get("/api/v1/group-info")
    sandbox.issue("jdoe")
    counts = sandbox.anonymous.get("/_sandbox/requests").json()["requests"]
    assert counts["GET /api/v1/group-info"] == 1
    assert counts["POST /api/v1/user/{username}/start_enrollment"] == 1
