"""Enrollment tokens from issue to session (``defguard_enrollment``), core and proxy side.

``start_enrollment`` and ``start_desktop`` over core's REST API, then ``enrollment/start`` and
``activate_user`` over the proxy, on both server lines (reference §4-6).
"""

from __future__ import annotations

import pytest

from ..conftest import Running
from .conftest import expiry_seconds, new_pubkey, sha, start_session


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


def test_token_states(sandbox: Running) -> None:
    def start(token: str) -> tuple[int, object]:
        response = start_session(sandbox, token)
        return response.status_code, response.json().get("error")

    assert start("x" * 32) == (401, "invalid token")

    used = sandbox.issue("jdoe")
    first = start_session(sandbox, used).json()["deadline_timestamp"]
    sandbox.advance_clock(5 * 60)
    again = start_session(sandbox, used)
    assert again.status_code == 200 and again.json()["deadline_timestamp"] == first
    sandbox.advance_clock(6 * 60)
    assert start(used) == (401, "invalid token")

    expired = sandbox.issue("obrien", token_expiration_time="1h")
    sandbox.advance_clock(3601)
    assert start(expired) == (401, "token expired")

    disabled = sandbox.issue("mlopez")
    with sandbox.state.lock:
        sandbox.state.users["mlopez"].is_active = False
    assert start(disabled) == (403, "user is disabled")


def test_wrong_token_type(sandbox: Running) -> None:
    token = sandbox.issue("jdoe")
    with sandbox.state.lock:
        sandbox.state.tokens[token].kind = "PASSWORD_RESET"
    response = start_session(sandbox, token)
    assert (response.status_code, response.json()) == (403, {"error": "invalid token"})


def test_activation_errors(sandbox: Running) -> None:
    missing = sandbox.proxy.post("/api/v1/enrollment/activate_user", json={"password": "x"})
    assert (missing.status_code, missing.json()) == (401, {"error": "Missing authorization header"})
    token = sandbox.core.post("/api/v1/user/enrolled/start_desktop", json={}).json()
    start_session(sandbox, token["enrollment_token"])
    again = sandbox.proxy.post(
        "/api/v1/enrollment/activate_user", json={"password": "Str0ng-Passw0rd!"}
    )
    assert (again.status_code, again.json()) == (400, {"error": "user already activated"})
    sandbox.advance_clock(11 * 60)
    late = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "x", "pubkey": new_pubkey()}
    )
    assert (late.status_code, late.json()) == (401, {"error": "Session expired"})
