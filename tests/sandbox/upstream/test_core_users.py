"""Ports of Defguard core's ``crates/defguard_core/tests/integration/api/user.rs``.

Tags v2.0.1 and v1.6.6. Cookie logins are API tokens: a normal user's token is refused with 403
("Token authentication is not allowed for normal users"), the same status upstream's cookie
session of a normal user gets from the admin-only routes.
"""

from __future__ import annotations

from .conftest import Hogwarts, enrollment_session


def test_list_users(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/user.rs:244,
    v1.6.6:crates/defguard_core/tests/integration/api/user.rs:197."""
    assert hogwarts.anonymous.get("/api/v1/user").status_code == 401
    assert hogwarts.hpotter.get("/api/v1/user").status_code == 403  # normal user
    assert hogwarts.admin.get("/api/v1/user").status_code == 200


def test_get_user(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/user.rs:268,
    v1.6.6:crates/defguard_core/tests/integration/api/user.rs:221 (read as admin: a normal
    user's own token is refused, so the self-read is not reachable with tokens)."""
    assert hogwarts.anonymous.get("/api/v1/user/hpotter").status_code == 401
    user = hogwarts.admin.get("/api/v1/user/hpotter").json()["user"]
    assert (user["first_name"], user["last_name"]) == ("Harry", "Potter")


def test_check_password_strength(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/user.rs:708,
    v1.6.6:crates/defguard_core/tests/integration/api/user.rs:393 (``POST /user`` is not
    emulated; ``activate_user`` applies the same ``check_password_strength``)."""
    enrollment_session(hogwarts, "adumbledore2")
    weak = [
        "1H$",
        "notsostrong1!",
        "noSoStrong1234",
        "notSostrong!",
    ]  # short, no upper/special/digit
    for password in weak:
        response = hogwarts.proxy.post(
            "/api/v1/enrollment/activate_user", json={"password": password}
        )
        assert (response.status_code, response.json()) == (
            400,
            {"error": "password not strong enough"},
        ), password
    strong = hogwarts.proxy.post(
        "/api/v1/enrollment/activate_user", json={"password": "strongPass1234$!"}
    )
    assert strong.status_code == 200
