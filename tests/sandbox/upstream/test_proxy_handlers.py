"""Ports of the enrollment proxy's handlers (DefGuard/proxy v1.6.2, the newest public proxy).

The proxy has one handler test (src/handlers/mod.rs:150); the other ports are named after the
code lines whose observable behaviour they pin: the cookie the handlers keep
(src/handlers/enrollment.rs), the mapping of core's gRPC errors to HTTP (src/error.rs) and the
plain routes and headers of src/http.rs. Both server lines use this proxy.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from ..conftest import new_pubkey
from .conftest import STRONG_PASSWORD, Hogwarts, enrollment_session

VALID_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15",
]
INVALID_AGENTS = [
    '<h1><a href="//isec.pl">CLICK HERE</a></h1>',
    '<html><script>alert("test")</script></html>',
]


@pytest.mark.parametrize("agent", [*VALID_AGENTS, *INVALID_AGENTS, None])
def test_user_agent_sanitization_dg25_16(hogwarts: Hogwarts, agent: str | None) -> None:
    """v1.6.2:src/handlers/mod.rs:150: ``DeviceInfo`` extraction succeeds for every agent, HTML
    or none (it is only sanitised), so the request is served."""
    token = hogwarts.admin.post("/api/v1/user/adumbledore2/start_desktop", json={}).json()
    request = hogwarts.proxy.build_request(
        "POST", "/api/v1/enrollment/start", json={"token": token["enrollment_token"]}
    )
    if agent is None:
        del request.headers["user-agent"]
    else:
        request.headers["user-agent"] = agent
    assert hogwarts.proxy.send(request).status_code == 200


def test_start_sets_the_session_cookie_until_the_deadline(hogwarts: Hogwarts) -> None:
    """v1.6.2:src/handlers/enrollment.rs:57-60: ``defguard_proxy`` expires at
    ``deadline_timestamp``."""
    token = hogwarts.admin.post("/api/v1/user/adumbledore2/start_desktop", json={}).json()
    response = hogwarts.proxy.post(
        "/api/v1/enrollment/start", json={"token": token["enrollment_token"]}
    )
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("defguard_proxy=")
    expires = cookie.split("Expires=", 1)[1].split(";")[0]
    deadline = response.json()["deadline_timestamp"]
    assert int(parsedate_to_datetime(expires).timestamp()) == deadline


def test_activate_user_removes_the_cookie(hogwarts: Hogwarts) -> None:
    """v1.6.2:src/handlers/enrollment.rs:89-95: an empty 200 and the cookie removed."""
    enrollment_session(hogwarts, "adumbledore2")
    response = hogwarts.proxy.post(
        "/api/v1/enrollment/activate_user", json={"password": STRONG_PASSWORD}
    )
    assert (response.status_code, response.content) == (200, b"")
    assert "defguard_proxy" not in hogwarts.proxy.cookies


@pytest.mark.parametrize("route", ["activate_user", "create_device", "network_info"])
def test_token_comes_only_from_the_cookie(hogwarts: Hogwarts, route: str) -> None:
    """v1.6.2:src/handlers/enrollment.rs:79-81, :113-115, :141-143: the body's token is
    replaced by the cookie's, so without a cookie core sees none (v2.0.1
    servers/enrollment.rs:72-75)."""
    token = hogwarts.admin.post("/api/v1/user/adumbledore2/start_desktop", json={}).json()
    body = {
        "password": STRONG_PASSWORD,
        "name": "laptop",
        "pubkey": new_pubkey(),
        "token": token["enrollment_token"],
    }
    response = hogwarts.proxy.post(f"/api/v1/enrollment/{route}", json=body)
    assert (response.status_code, response.json()) == (
        401,
        {"error": "Missing authorization header"},
    )


def test_core_errors_become_http_statuses(hogwarts: Hogwarts) -> None:
    """v1.6.2:src/error.rs:35-85: Unauthenticated 401, PermissionDenied 403, InvalidArgument 400,
    NotFound 404 with tonic's Display of the status (tonic-v0.14.2 tonic/src/status.rs:749)."""
    unknown = hogwarts.proxy.post("/api/v1/enrollment/start", json={"token": "nope"})
    assert (unknown.status_code, unknown.json()) == (401, {"error": "invalid token"})
    enrollment_session(hogwarts, "adumbledore2")
    bad_key = hogwarts.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "x", "pubkey": "x"}
    )
    assert (bad_key.status_code, bad_key.json()) == (400, {"error": "invalid pubkey"})
    missing = hogwarts.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": new_pubkey()})
    assert missing.status_code == 404
    assert missing.json()["error"].startswith("status: 'Some requested entity was not found'")
    poll = hogwarts.proxy.post("/api/v1/poll", json={"token": "nope"})
    assert (poll.status_code, poll.json()) == (403, {"error": "invalid token"})


def test_plain_routes_and_headers(hogwarts: Hogwarts) -> None:
    """v1.6.2:src/http.rs:94-112 (info, health, health-grpc) and :133-167 (headers);
    ``defguard-component-version`` comes from ``DefguardVersionLayer`` (:292)."""
    info = hogwarts.proxy.get("/api/v1/info")
    assert list(info.json()) == ["version"]
    for route in ("/api/v1/health", "/api/v1/health-grpc"):
        assert hogwarts.proxy.get(route).text == "alive"
    headers = info.headers
    assert headers["x-powered-by"] == "Defguard"
    assert headers["defguard-core-connected"] == "true"
    assert headers["defguard-core-version"] in ("1.6.6", "2.0.1")
    assert "defguard-component-version" in headers
