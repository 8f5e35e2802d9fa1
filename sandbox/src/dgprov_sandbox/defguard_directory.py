"""The emulated Defguard core's directory: who exists, who may call, and the licence gate.

The lowest of the state layers that ``DefguardState`` stacks (directory, then enrollment, then
devices). It decides authentication exactly as core's ``SessionExtractor`` does, including the
enterprise gate that makes an unlicensed 2.0 server ignore API tokens, and answers the user and
group lookups the REST handlers need. Like every layer it knows nothing about HTTP.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from .clock import SandboxClock
from .defguard_model import (
    ALNUM,
    ApiToken,
    CoreError,
    Device,
    Group,
    Location,
    ServerLine,
    Session,
    User,
    sha256_hex,
)

# The 1.6 line opens enterprise features for free below these limits (enterprise/limits.rs).
FREE_LIMIT_USERS = 5
FREE_LIMIT_USER_DEVICES = 10
FREE_LIMIT_LOCATIONS = 1


class DefguardDirectory:
    """Users, groups, locations and API tokens, and who may use them.

    The fields below are seeded by ``DefguardState.__init__`` from the tenant; each field is
    declared on the lowest layer that reads it.
    """

    line: ServerLine
    clock: SandboxClock
    lock: threading.RLock
    _rng: random.Random
    ldap_remote_enrollment: bool
    license: dict[str, Any] | None
    users: dict[str, User]
    users_by_id: dict[int, User]
    devices: dict[int, Device]
    groups: dict[str, Group]
    api_tokens: dict[str, ApiToken]
    locations: list[Location]

    # ----------------------------------------------------------------- licence and enterprise gate

    def business_license_valid(self) -> bool:
        if self.license is None:
            return False
        expires = self.license.get("expires_at")
        if expires is None:
            return True
        moment = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        return moment > self.clock.now()

    def within_free_limits(self) -> bool:
        user_devices = len(self.devices)
        return (
            len(self.users) <= FREE_LIMIT_USERS
            and user_devices <= FREE_LIMIT_USER_DEVICES
            and len(self.locations) <= FREE_LIMIT_LOCATIONS
        )

    def enterprise_enabled(self) -> bool:
        """Whether API tokens (and other enterprise features) work at all."""
        if self.business_license_valid():
            return True
        return self.line == "1.6" and self.within_free_limits()

    # ------------------------------------------------------------------------------ authentication

    def authenticate(self, authorization: str | None) -> Session:
        """Resolve the caller as ``SessionExtractor`` + ``SessionInfo`` do.

        With the enterprise gate closed the Bearer header is ignored entirely, which is why an
        unlicensed 2.0 server answers a perfectly valid API token with "Session is required".
        The sandbox has no cookie login, so every non-token request ends there too.
        """
        if authorization is not None and self.enterprise_enabled():
            scheme, _, credentials = authorization.partition(" ")
            if scheme != "Bearer" or not credentials.strip():
                raise CoreError(401, "Invalid auth header")
            api_token = self.api_tokens.get(sha256_hex(credentials.strip()))
            owner = self.users.get(api_token.owner) if api_token else None
            if owner is None or not owner.is_active:
                raise CoreError(401, "Invalid API token")
            if not owner.is_admin:
                raise CoreError(403, "Token authentication is not allowed for normal users")
            return Session(owner, via_api_token=True)
        raise CoreError(401, "Session is required")

    @staticmethod
    def require_admin(session: Session) -> None:
        if not session.user.is_active:
            raise CoreError(403, "user is disabled")
        if not session.user.is_admin:
            raise CoreError(403, "access denied")

    def add_api_token(self, owner: User, name: str) -> str:
        """Create an API token; only its SHA-256 is kept, the value is returned once."""
        value = "dg-" + "".join(self._rng.choices(ALNUM, k=32))
        self.api_tokens[sha256_hex(value)] = ApiToken(owner.username, name, sha256_hex(value))
        return value

    # ---------------------------------------------------------------------------- users and groups

    def is_enrolled(self, user: User) -> bool:
        if user.enrollment_pending:
            return False
        if self.line == "2.0":
            if user.from_ldap:
                return not self.ldap_remote_enrollment or user.has_password()
            return user.has_password() or user.openid_sub is not None
        return user.has_password() or user.openid_sub is not None or user.from_ldap

    def get_user(self, username: str) -> User:
        user = self.users.get(username)
        if user is None:
            raise CoreError(404, f"user {username} not found")
        return user

    def user_devices(self, user: User) -> Iterator[Device]:
        return (d for d in self.devices.values() if d.user_id == user.id)

    def group_vpn_locations(self, group: Group, *, include_allow_all: bool) -> list[str]:
        return [
            loc.name
            for loc in self.locations
            if (loc.allowed_groups is None and include_allow_all)
            or (loc.allowed_groups is not None and group.name in loc.allowed_groups)
        ]

    def find_group(self, key: str | int) -> Group:
        for group in self.groups.values():
            if (isinstance(key, int) and group.id == key) or group.name == key:
                return group
        raise CoreError(404, f"Group {key} not found")
