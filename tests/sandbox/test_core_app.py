"""The HTTP face of the Defguard core emulator (``core_app``): headers, extractor order, shapes.

Over real HTTP on both server lines (core v1.6.6 and v2.0.1, crates/defguard_core/src/handlers):
what a client sees of each handler before and after the state decides, including axum's text/plain
rejections and the per-line JSON shapes.
"""

from __future__ import annotations

import pytest

from ..conftest import Running, StartSandbox
from .conftest import without_user_agent


def test_version_header_per_line(sandbox: Running, line: str) -> None:
    response = sandbox.core.get("/api/v1/info")
    assert response.status_code == 200
    expected = {"1.6": "1.6.6", "2.0": "2.0.1"}[line]
    assert response.headers["defguard-component-version"] == expected
    assert response.json()["version"] == expected
    assert list(response.json()) == sorted(response.json())


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


def test_list_users_shape(sandbox: Running, line: str) -> None:
    body = sandbox.core.get("/api/v1/user").json()
    users = body if line == "1.6" else body["data"]
    assert [u["username"] for u in users][:3] == ["admin", "former.admin", "jdoe"]
    assert ("devices" in users[0]) is (line == "2.0")
    assert ("name" in users[0]) is (line == "2.0")


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


def test_missing_user_agent(sandbox: Running) -> None:
    """``ApiRequestContext`` needs the header; an empty value is still a ``UserAgent``."""
    response = without_user_agent(
        sandbox.core, "POST", "/api/v1/user/jdoe/start_enrollment", json={}
    )
    assert (response.status_code, response.json()) == (400, {"msg": "Missing UserAgent header"})
    empty = sandbox.core.post(
        "/api/v1/user/jdoe/start_enrollment", json={}, headers={"User-Agent": ""}
    )
    assert empty.status_code == 201


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


def test_request_counts(sandbox: Running) -> None:
    sandbox.core.get("/api/v1/group-info")
    sandbox.issue("jdoe")
    counts = sandbox.anonymous.get("/_sandbox/requests").json()["requests"]
    assert counts["GET /api/v1/group-info"] == 1
    assert counts["POST /api/v1/user/{username}/start_enrollment"] == 1


def test_list_devices_is_every_device_for_admins(sandbox: Running, line: str) -> None:
    """``GET /device`` (v1.6.6 handlers/wireguard.rs:1266, v2.0.1 :1261): admin only, the
    ``Device`` columns without networks, in one answer."""
    assert sandbox.anonymous.get("/api/v1/device").status_code == 401
    devices = sandbox.core.get("/api/v1/device").json()
    enrolled = sandbox.state.users["enrolled"]
    assert [d["user_id"] for d in devices] == [enrolled.id]
    assert set(devices[0]) == {
        "configured",
        "created",
        "description",
        "device_type",
        "id",
        "name",
        "user_id",
        "wireguard_pubkey",
    }
    assert devices[0]["device_type"] == "user" and devices[0]["name"] == "ed-laptop"


def test_group_members_change_through_the_inspection_api(sandbox: Running) -> None:
    added = sandbox.anonymous.post(
        "/_sandbox/groups/contractors/members", json={"username": "jdoe"}
    )
    assert added.status_code == 200 and added.json()["members"] == ["jdoe"]
    groups = {g["name"]: g["members"] for g in sandbox.core.get("/api/v1/group-info").json()}
    assert groups["contractors"] == ["jdoe"]
    assert "contractors" in sandbox.core.get("/api/v1/user/jdoe").json()["user"]["groups"]
    removed = sandbox.anonymous.delete("/_sandbox/groups/vpn-users/members/jdoe")
    assert removed.status_code == 200 and "jdoe" not in removed.json()["members"]
    groups = {g["name"]: g["members"] for g in sandbox.core.get("/api/v1/group-info").json()}
    assert "jdoe" not in groups["vpn-users"]
    assert (
        sandbox.anonymous.post(
            "/_sandbox/groups/nope/members", json={"username": "jdoe"}
        ).status_code
        == 404
    )
    assert (
        sandbox.anonymous.post(
            "/_sandbox/groups/vpn-users/members", json={"username": "x"}
        ).status_code
        == 404
    )
    assert sandbox.anonymous.post("/_sandbox/groups/vpn-users/members", json={}).status_code == 400


def test_date_header_follows_the_sandbox_clock(sandbox: Running) -> None:
    """hyper adds ``Date`` to every answer; the sandbox's is its clock's, which tests move."""
    import email.utils

    before = email.utils.parsedate_to_datetime(sandbox.core.get("/api/v1/info").headers["date"])
    sandbox.advance_clock(3 * 3600)
    response = sandbox.core.get("/api/v1/info")
    assert len(response.headers.get_list("date")) == 1
    after = email.utils.parsedate_to_datetime(response.headers["date"])
    assert 3 * 3600 - 5 < (after - before).total_seconds() < 3 * 3600 + 60
