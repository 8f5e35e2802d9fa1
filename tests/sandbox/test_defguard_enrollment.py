"""Enrollment tokens from issue to session (``defguard_enrollment``), core and proxy side.

``start_enrollment`` and ``start_desktop`` over core's REST API, then ``enrollment/start`` and
``activate_user`` over the proxy, on both server lines (core v2.0.1 handlers/user.rs,
enrollment_management.rs, servers/enrollment.rs).
"""

from __future__ import annotations

import httpx
import pytest

from ..conftest import Running, StartSandbox, example_tenant
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


def activate(sandbox: Running, password: str, phone: str | None = None) -> tuple[int, object]:
    response = sandbox.proxy.post(
        "/api/v1/enrollment/activate_user", json={"password": password, "phone_number": phone}
    )
    return response.status_code, response.json().get("error") if response.content else None


PHONES = [
    ("+48 (91) 123-456", True),
    ("+1 202 555 0173", True),
    ("5550173", True),
    ("+48\u3000123456789", True),  # Rust's `\s` is White_Space
    ("+48123456789", True),
    ("+481234567890123", False),  # 15 digits: more than 3+3+4+4
    ("+48  123456789", False),
    ("123456\n", False),  # `$` is the very end, not before a final newline
    ("call me", False),
    ("", False),
]
PASSWORDS = [
    ("Aa1!aaa", False),  # 7 bytes
    ("\u00c4\u00e4\u0661!abcd", False),  # Ä, ä, Arabic-Indic one: not ASCII classes
    ("Aa1\u00a1aaaa", False),  # ¡ is punctuation, not ASCII punctuation
    ("A" * 60 + "a1!" + "\u00e9" * 33, False),  # 129 bytes
    ("Aa1!\u00e9\u00e9", True),  # 6 characters but 8 bytes
]


def test_phone_rule(sandbox: Running) -> None:
    """PHONE_NUMBER_REGEX (v2.0.1 crates/defguard_core/src/lib.rs:231), checked before the
    password (a refused activation leaves the session open for the next case)."""
    start_session(sandbox, sandbox.issue("jdoe"))
    for phone, valid in PHONES:
        expected = "password not strong enough" if valid else "invalid phone number"
        assert activate(sandbox, "weak", phone) == (400, expected), repr(phone)


def test_password_strength_in_bytes_and_ascii_classes(sandbox: Running) -> None:
    """check_password_strength (v2.0.1 crates/defguard_core/src/handlers/user.rs:96-118)."""
    start_session(sandbox, sandbox.issue("jdoe"))
    for password, strong in PASSWORDS:  # the one strong password comes last: it activates
        expected = (200, None) if strong else (400, "password not strong enough")
        assert activate(sandbox, password) == expected, repr(password)


def test_activate_user_check_order(sandbox: Running) -> None:
    """Phone, password, already activated, disabled (v2.0.1 servers/enrollment.rs:393-435)."""
    token = sandbox.core.post("/api/v1/user/enrolled/start_desktop", json={}).json()
    start_session(sandbox, token["enrollment_token"])
    assert activate(sandbox, "weak", "not a phone") == (400, "invalid phone number")
    assert activate(sandbox, "weak") == (400, "password not strong enough")
    with sandbox.state.lock:
        sandbox.state.users["enrolled"].is_active = False
    assert activate(sandbox, "Str0ng-Passw0rd!") == (400, "user already activated")
    with sandbox.state.lock:
        sandbox.state.users["enrolled"].password = None
    assert activate(sandbox, "Str0ng-Passw0rd!") == (400, "user is disabled")


def test_activation_replaces_the_phone_even_with_nothing(sandbox: Running) -> None:
    """``user.phone = request.phone_number`` (v2.0.1 servers/enrollment.rs:445)."""
    with sandbox.state.lock:
        sandbox.state.users["jdoe"].phone = "+48 111 222 333"
    start_session(sandbox, sandbox.issue("jdoe"))
    assert activate(sandbox, "Str0ng-Passw0rd!") == (200, None)
    assert sandbox.anonymous.get("/_sandbox/users/jdoe").json()["phone"] is None
    assert sandbox.core.get("/api/v1/user/jdoe").json()["user"]["phone"] is None


def test_ldap_remote_enrollment_completes_on_2_0(start_sandbox: StartSandbox, line: str) -> None:
    """v2.0.1 servers/enrollment.rs:490-492 marks LDAP users; 1.6.6 has no such flag."""
    tenant = example_tenant()
    tenant["settings"]["ldap_remote_enrollment"] = True
    sandbox = start_sandbox(tenant, line)
    user = sandbox.anonymous.get("/_sandbox/users/ldapuser").json()
    assert user["enrolled"] is (line == "1.6")  # 1.6: from_ldap always counts as enrolled
    token = sandbox.core.post("/api/v1/user/ldapuser/start_desktop", json={}).json()
    start_session(sandbox, token["enrollment_token"])
    assert activate(sandbox, "Str0ng-Passw0rd!") == (200, None)
    after = sandbox.anonymous.get("/_sandbox/users/ldapuser").json()
    assert after["ldap_remote_enrollment_completed"] is (line == "2.0")
    assert after["enrolled"] is True


@pytest.mark.parametrize("duration", ["1000y", "200000y", "260000y"])
def test_long_lifetimes_are_issued(sandbox: Running, duration: str) -> None:
    """humantime accepts up to u64 seconds; chrono adds up to year 262142 (rust_rules)."""
    sandbox.issue("jdoe", token_expiration_time=duration)
    (token,) = sandbox.tokens("jdoe")
    assert token["lifetime_seconds"] > 0


@pytest.mark.parametrize("duration", ["300000y", f"{9_223_372_036_854_776}s", "292000000000y"])
def test_lifetime_beyond_chrono_aborts_the_core(sandbox: Running, duration: str) -> None:
    """``Token::new`` panics (v2.0.1 db/models/enrollment.rs:106) and release builds abort
    (Cargo.toml:152): no answer, nothing changes (the transaction dies with the process), and
    the restarted core answers the next request."""
    first = sandbox.issue("jdoe")
    with pytest.raises(httpx.RemoteProtocolError):
        sandbox.core.post(
            "/api/v1/user/jdoe/start_enrollment", json={"token_expiration_time": duration}
        )
    assert [t["token_sha256"] for t in sandbox.tokens("jdoe")] == [sha(first)]
    assert sandbox.anonymous.get("/_sandbox/requests").json()["restarts"] == 1
    assert sandbox.core.get("/api/v1/user/jdoe").status_code == 200


def test_wrapped_lifetime_issues_an_expired_token(sandbox: Running) -> None:
    """Above i64::MAX seconds ``as i64`` wraps negative: a token expired when issued."""
    token = sandbox.issue("jdoe", token_expiration_time=f"{2**64 - 1}s")
    (stored,) = sandbox.tokens("jdoe")
    assert stored["lifetime_seconds"] == -1
    response = start_session(sandbox, token)
    assert (response.status_code, response.json()) == (401, {"error": "token expired"})


def test_session_window_is_strict(sandbox: Running) -> None:
    """``is_session_valid``: ``now < used_at + timeout`` (v2.0.1 db/models/enrollment.rs:151)."""
    token = sandbox.issue("jdoe")
    start_session(sandbox, token)
    sandbox.advance_clock(10 * 60 - 1)
    assert activate(sandbox, "weak") == (400, "password not strong enough")
    sandbox.advance_clock(1)
    assert activate(sandbox, "weak") == (401, "Session expired")
