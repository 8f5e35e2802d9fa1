"""Ports of Defguard core's ``crates/defguard_core/tests/integration/api/enrollment.rs``.

Tags v2.0.1 and v1.6.6; each test names its upstream line on both. Users upstream creates with
``POST /api/v1/user`` are seeded in the tenant (``conftest.hogwarts_tenant``); cookie logins are
API tokens; database reads are the ``/_sandbox/`` inspection API.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from ...conftest import StartSandbox
from .conftest import Hogwarts, hogwarts_tenant, start_enrollment


def test_initialize_enrollment(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:17,
    v1.6.6:crates/defguard_core/tests/integration/api/enrollment.rs:14."""
    assert hogwarts.tokens() == []
    assert start_enrollment(hogwarts, "adumbledore").status_code == 400  # has a password
    assert hogwarts.tokens() == []
    response = start_enrollment(hogwarts, "adumbledore2")
    assert response.status_code == 201
    (token,) = hogwarts.tokens()
    assert token["username"] == "adumbledore2" and token["admin"] == "admin"
    assert hogwarts.admin.get("/api/v1/user/adumbledore2").json()["user"]["id"] == 4
    assert token["used_at"] is None


def test_enroll_disabled_user(start_sandbox: StartSandbox, line: str) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:89,
    v1.6.6:crates/defguard_core/tests/integration/api/enrollment.rs:86."""
    tenant = hogwarts_tenant()
    tenant["users"][3]["active"] = False  # upstream disables adumbledore with PUT /user
    world = Hogwarts(start_sandbox(tenant, line))
    try:
        assert start_enrollment(world, "adumbledore2").status_code == 401
    finally:
        world.close()


def test_enrollment_pending_unset_for_regular_user(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:129,
    v1.6.6:crates/defguard_core/tests/integration/api/enrollment.rs:126."""
    user = hogwarts.user("adumbledore")
    assert user["enrollment_pending"] is False
    assert user["enrolled"] is True


def test_request_enrollment(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:166,
    v1.6.6:crates/defguard_core/tests/integration/api/enrollment.rs:163."""
    assert hogwarts.tokens() == []
    before = hogwarts.user("adumbledore2")
    assert (before["enrollment_pending"], before["enrolled"]) == (False, False)
    response = start_enrollment(
        hogwarts,
        "adumbledore2",
        email="a.dumbledore2@hogwart.edu.uk",
        send_enrollment_notification=False,
    )
    assert response.status_code == 201
    after = hogwarts.user("adumbledore2")
    assert (after["enrollment_pending"], after["enrolled"]) == (True, False)
    (token,) = hogwarts.tokens()
    assert token["used_at"] is None


@pytest.mark.parametrize(("duration", "hours"), [(None, 24), ("3d", 72), ("1w", 7 * 24), ("2h", 2)])
def test_enrollment_token_expiration_time(
    hogwarts: Hogwarts, duration: str | None, hours: int
) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:226,
    v1.6.6:crates/defguard_core/tests/integration/api/enrollment.rs:223 (one request per case;
    upstream issues them in sequence, and each replaces the previous unused token)."""
    start_enrollment(hogwarts, "adumbledore2", token_expiration_time="5h")  # an earlier token
    body = {"email": "a.dumbledore2@hogwart.edu.uk", "send_enrollment_notification": False}
    if duration is not None:
        body["token_expiration_time"] = duration
    assert start_enrollment(hogwarts, "adumbledore2", **body).status_code == 201
    (token,) = hogwarts.tokens()
    lifetime = datetime.fromisoformat(token["expires_at"]) - datetime.fromisoformat(
        token["created_at"]
    )
    assert lifetime.total_seconds() == hours * 3600


def test_enrollment_pending_unset_for_desktop_client(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:314,
    v1.6.6:crates/defguard_core/tests/integration/api/enrollment.rs:311."""
    assert hogwarts.tokens() == []
    user = hogwarts.user("adumbledore")
    assert (user["enrollment_pending"], user["enrolled"]) == (False, True)
    response = hogwarts.admin.post(
        "/api/v1/user/adumbledore/start_desktop",
        json={
            "username": "adumbledore",
            "email": "a.dumbledore@hogwart.edu.uk",
            "send_enrollment_notification": False,
        },
    )
    assert response.status_code == 201
    (token,) = hogwarts.tokens()
    assert token["used_at"] is None
    user = hogwarts.user("adumbledore")
    assert (user["enrollment_pending"], user["enrolled"]) == (False, True)


@pytest.mark.parametrize("line", ["2.0"])
def test_ldap_user_enrolled_via_api_when_remote_enrollment_disabled(hogwarts: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:378 (2.0 only)."""
    details = hogwarts.admin.get("/api/v1/user/ldapuser").json()
    assert details["user"]["enrolled"] is True


def test_ldap_user_not_enrolled_via_api_when_remote_enrollment_enabled(
    start_sandbox: StartSandbox,
) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/enrollment.rs:421 (2.0 only)."""
    tenant = hogwarts_tenant()
    tenant["settings"] = {"ldap_remote_enrollment": True}
    world = Hogwarts(start_sandbox(tenant, "2.0"))
    try:
        details = world.admin.get("/api/v1/user/ldapuser").json()
        assert details["user"]["enrolled"] is False
    finally:
        world.close()
