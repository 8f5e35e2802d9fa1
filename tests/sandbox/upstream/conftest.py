"""The world of Defguard core's integration tests, as a sandbox tenant.

Upstream's tests log in with a cookie (``POST /api/v1/auth``), which the sandbox does not
emulate; these ports authenticate with API tokens instead (core accepts them wherever a session
is needed, ``crates/defguard_core/src/auth/mod.rs``), one per test user. What upstream reads from
its database, the ports read from the sandbox's ``/_sandbox/`` inspection API.

The tenant mirrors ``crates/defguard_core/tests/integration/common.rs`` (v2.0.1
``initialize_users``: ``admin`` and ``hpotter``, a Business licence without expiry) plus the users
the tests create through ``POST /api/v1/user``, in the same order so ids match.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dgprov_sandbox.tenant import validate_tenant

from ...conftest import Running, StartSandbox

ADMIN_TOKEN = "dg-UpstreamTestsAdminToken000000001"
HPOTTER_TOKEN = "dg-UpstreamTestsHarryPotter00000002"
STRONG_PASSWORD = "Test1234!"  # proxy_manager tests' support.rs:52


def hogwarts_tenant() -> dict[str, Any]:
    def person(username: str, first: str, last: str, email: str) -> dict[str, Any]:
        return {"username": username, "first_name": first, "last_name": last, "email": email}

    users = [
        person("admin", "DefGuard", "Administrator", "admin@defguard") | {"password": "pass123"},
        person("hpotter", "Harry", "Potter", "h.potter@hogwart.edu.uk") | {"password": "pass123"},
        person("adumbledore", "Albus", "Dumbledore", "a.dumbledore@hogwart.edu.uk")
        | {"phone": "1234", "password": "Password1234543$!"},
        person("adumbledore2", "Albus", "Dumbledore", "a.dumbledore2@hogwart.edu.uk")
        | {"phone": "1234"},
        person("ldapuser", "Ldap", "User", "ldapuser@example.com") | {"from_ldap": True},
    ]
    return validate_tenant(
        {
            "license": {"tier": "business", "expires_at": None},
            "users": users,
            "groups": [
                {"name": "admin", "is_admin": True, "members": ["admin"]},
                {"name": "hogwards", "members": ["hpotter"]},
            ],
            "api_tokens": [
                {"owner": "admin", "name": "upstream tests", "token": ADMIN_TOKEN},
                {"owner": "hpotter", "name": "dummy token", "token": HPOTTER_TOKEN},
            ],
            "locations": [
                {"name": "network", "address": "10.1.1.1/24", "endpoint": "192.168.4.14"}
            ],
        }
    )


class Hogwarts:
    """A running sandbox of the hogwarts tenant with clients per identity."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.core = running.core
        self.proxy = running.proxy
        self.anonymous = running.anonymous
        self.admin = self.client(ADMIN_TOKEN)
        self.hpotter = self.client(HPOTTER_TOKEN)

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.running.info["defguard_url"],
            headers={"Authorization": f"Bearer {token}", "User-Agent": "upstream-tests"},
        )

    def user(self, username: str) -> dict[str, Any]:
        """What upstream reads with ``User::find_by_username`` (the inspection view)."""
        found: dict[str, Any] = self.anonymous.get(f"/_sandbox/users/{username}").json()
        return found

    def tokens(self, username: str | None = None) -> list[dict[str, Any]]:
        """``Token::fetch_all``, optionally for one user."""
        params = {"username": username} if username else {}
        found: list[dict[str, Any]] = self.anonymous.get("/_sandbox/tokens", params=params).json()[
            "tokens"
        ]
        return found

    def close(self) -> None:
        self.admin.close()
        self.hpotter.close()


@pytest.fixture
def hogwarts(start_sandbox: StartSandbox, line: str) -> Iterator[Hogwarts]:
    """The hogwarts tenant on the server line under test."""
    world = Hogwarts(start_sandbox(hogwarts_tenant(), line))
    yield world
    world.close()


def start_enrollment(world: Hogwarts, username: str, **body: Any) -> httpx.Response:
    return world.admin.post(f"/api/v1/user/{username}/start_enrollment", json=body)


def enrollment_session(world: Hogwarts, username: str) -> str:
    """``create_enrollment_token`` + ``start_enrollment_session`` of the proxy_manager tests:
    a token issued by admin and started through the proxy (cookie kept by the client)."""
    response = world.admin.post(f"/api/v1/user/{username}/start_desktop", json={})
    assert response.status_code == 201, response.text
    token: str = response.json()["enrollment_token"]
    started = world.proxy.post("/api/v1/enrollment/start", json={"token": token})
    assert started.status_code == 200, started.text
    return token
