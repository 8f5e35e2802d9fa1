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
