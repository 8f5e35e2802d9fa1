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
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

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
from .rust_rules import is_alphanumeric

# The 1.6 line opens enterprise features for free below these limits (enterprise/limits.rs).
FREE_LIMIT_USERS = 5
FREE_LIMIT_USER_DEVICES = 10
FREE_LIMIT_LOCATIONS = 1
# Subscription licences stay valid this long past their expiry (MAX_OVERDUE_TIME, v2.0.1
# crates/defguard_core/src/enterprise/license.rs:541 and :403; v1.6.6 license.rs:624 and :487).
SUBSCRIPTION_GRACE = timedelta(days=14)
# validate_name (v2.0.1 crates/defguard_core/src/handlers/mod.rs:590): API token names.
NAME_SYMBOLS = frozenset(" -_.():/")

UserOrder = Literal["heap", "stable", "unstable"]
USER_ORDERS: tuple[UserOrder, ...] = ("heap", "stable", "unstable")


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer`` header, as headers 0.4.1 decodes it.

    ``Authorization::<Bearer>::decode`` (headers-v0.4.1 src/common/authorization.rs:80-95):
    the scheme matches case-insensitively and must be followed by a space; the value must be
    visible ASCII (``HeaderValue::to_str``); ``Bearer::token`` (:188) trims leading whitespace.
    None means the header is not a Bearer credential at all.
    """
    if any(not (" " <= char <= "~" or char == "\t") for char in header):
        return None
    if len(header) <= 6 or header[6] != " " or header[:6].lower() != "bearer":
        return None
    return header[7:].lstrip(" \t")


def valid_token_name(name: str) -> bool:
    """``validate_name``: non-empty, alphanumeric or one of `` -_.():/``."""
    return bool(name) and all(is_alphanumeric(c) or c in NAME_SYMBOLS for c in name)


class DefguardDirectory:
    """Users, groups, locations and API tokens, and who may use them.

    The fields below are seeded by ``DefguardState.__init__`` from the tenant; each field is
    declared on the lowest layer that reads it.
    """

    line: ServerLine
    clock: SandboxClock
    lock: threading.RLock
    _rng: random.Random
    seed: int
    user_order: UserOrder
    _heap: list[int]
    _listings: int
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
        """``validate_license``: present and not ``is_max_overdue`` (v2.0.1 license.rs:483).

        A licence without expiry never expires; others expire once ``valid_until < now``, a
        subscription only 14 days later (``time_overdue() > MAX_OVERDUE_TIME``). Both tiers the
        tenant file allows, Business and Enterprise, satisfy the Business gate.
        """
        if self.license is None:
            return False
        expires = self.license.get("expires_at")
        if expires is None:
            return True
        moment = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        now = self.clock.now()
        if self.license.get("subscription", False):
            return now - moment <= SUBSCRIPTION_GRACE
        return not moment < now

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
            credentials = bearer_token(authorization)
            if credentials is None:
                raise CoreError(401, "Invalid auth header")
            api_token = self.api_tokens.get(sha256_hex(credentials))
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

    def user_for_admin_or_self(self, session: Session, username: str) -> User:
        """``user_for_admin_or_self`` (v2.0.1 crates/defguard_core/src/handlers/mod.rs:540)."""
        if session.user.username != username and not session.user.is_admin:
            raise CoreError(403, "requires privileged access")
        return self.get_user(username)

    def add_api_token(self, session: Session, username: str, name: str) -> str:
        """``add_api_token`` after its extractors (v2.0.1
        crates/defguard_core/src/enterprise/handlers/api_tokens.rs:27-93; v1.6.6 :28-77, which
        has neither the inactive-owner check nor ``validate_name``). Only the SHA-256 is kept."""
        owner = self.user_for_admin_or_self(session, username)
        if not owner.is_admin:
            raise CoreError(403, "Cannot create API token for non-admin user")
        if self.line == "2.0":
            if not owner.is_active:
                raise CoreError(403, "Cannot create API token for inactive user")
            if not valid_token_name(name):
                raise CoreError(400, "Name contains forbidden characters")
        value = "dg-" + "".join(self._rng.choices(ALNUM, k=32))
        self.api_tokens[sha256_hex(value)] = ApiToken(owner.username, name, sha256_hex(value))
        return value

    def set_active(self, user: User, active: bool) -> None:
        """What ``modify_user`` does to ``is_active`` (v2.0.1 handlers/user.rs:782, v1.6.6
        :749): deactivating deletes the user's API tokens, so re-enabling does not revive them."""
        if user.is_active and not active:
            for key in [k for k, t in self.api_tokens.items() if t.owner == user.username]:
                del self.api_tokens[key]
        user.is_active = active
        self.touch_user(user)

    # ---------------------------------------------------------------------------- users and groups

    def is_enrolled(self, user: User) -> bool:
        """``User::is_enrolled`` (v2.0.1 crates/defguard_common/src/db/models/user.rs:290;
        v1.6.6 crates/defguard_core/src/db/models/user.rs:255)."""
        if user.enrollment_pending:
            return False
        if self.line == "2.0":
            if user.from_ldap:
                return user.ldap_remote_enrollment_completed or not self.ldap_remote_enrollment
            return user.has_password() or user.openid_sub is not None
        return user.has_password() or user.openid_sub is not None or user.from_ldap

    # --------------------------------------------------------------------------- user scan order

    def touch_user(self, user: User) -> None:
        """Record an UPDATE of the user's row: PostgreSQL writes a new row version, which a
        sequential scan then meets last (``heap`` order)."""
        self._heap.remove(user.id)
        self._heap.append(user.id)

    def users_in_scan_order(self) -> list[User]:
        """Users as ``SELECT ... FROM "user"`` without ``ORDER BY`` returns them
        (``all``/``all_paginated``, v2.0.1 crates/model_derive/src/lib.rs:225-226).

        ``heap``: creation order, an updated row moving to the end; ``stable``: id order always;
        ``unstable``: a new seeded permutation for every listing.
        """
        if self.user_order == "stable":
            ids = sorted(self.users_by_id)
        elif self.user_order == "heap":
            ids = list(self._heap)
        else:
            ids = sorted(self.users_by_id)
            random.Random(f"{self.seed}:users:{self._listings}").shuffle(ids)
            self._listings += 1
        return [self.users_by_id[i] for i in ids]

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

    def add_member(self, group: Group, user: User) -> None:
        """What ``add_group_member`` changes (v2.0.1 crates/defguard_core/src/handlers/group.rs:654,
        v1.6.6 the same handler): a row in ``group_user``; the user's row is not updated. A
        member already in the group stays once."""
        if user.username not in group.members:
            group.members.append(user.username)
            user.groups.append(group.name)
            user.is_admin |= group.is_admin

    def remove_member(self, group: Group, user: User) -> None:
        """``remove_group_member`` (v2.0.1 handlers/group.rs:714): the ``group_user`` row goes;
        admin rights remain only through another admin group."""
        if user.username in group.members:
            group.members.remove(user.username)
            user.groups.remove(group.name)
            user.is_admin = any(self.groups[name].is_admin for name in user.groups)

    def find_group(self, key: str | int) -> Group:
        for group in self.groups.values():
            if (isinstance(key, int) and group.id == key) or group.name == key:
                return group
        raise CoreError(404, f"Group {key} not found")
