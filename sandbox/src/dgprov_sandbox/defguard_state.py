"""The emulated Defguard core: users, groups, tokens, devices and the rules that govern them.

This module knows nothing about HTTP. It holds the state of one sandbox run and implements each
decision the real server makes, per server line (``1.6`` or ``2.0``), as recorded in
``shared/reference/defguard-api.md``. The HTTP layers (``core_app``, ``proxy_app``) translate
requests into calls here and the typed errors below into Defguard's exact status codes and bodies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import random
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .humantime import DurationError, parse_duration_seconds
from .tenant import Tenant

ServerLine = Literal["1.6", "2.0"]
SERVER_LINES: tuple[ServerLine, ...] = ("1.6", "2.0")
COMPONENT_VERSION: dict[ServerLine, str] = {"1.6": "1.6.6", "2.0": "2.0.1"}
PROXY_VERSION: dict[ServerLine, str] = {"1.6": "1.6.2", "2.0": "2.0.1"}

TOKEN_ENROLLMENT = "ENROLLMENT"
TOKEN_PASSWORD_RESET = "PASSWORD_RESET"

# The 1.6 line opens enterprise features for free below these limits (enterprise/limits.rs).
FREE_LIMIT_USERS = 5
FREE_LIMIT_USER_DEVICES = 10
FREE_LIMIT_LOCATIONS = 1

MFA_MODE_CODES = {"disabled": 1, "internal": 2, "external": 3}
SERVICE_LOCATION_DISABLED = 1

_ALNUM = string.ascii_letters + string.digits


class CoreError(Exception):
    """A core REST failure: rendered as ``{"msg": message}`` (or ``{}``) with ``status``."""

    def __init__(self, status: int, message: str | None) -> None:
        super().__init__(message or "")
        self.status = status
        self.message = message


class ProxyError(Exception):
    """An enrollment-proxy failure: rendered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SandboxClock:
    """Wall-clock time plus an offset that tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        """Naive UTC, as Defguard's chrono ``NaiveDateTime`` columns hold it."""
        return datetime.now(timezone.utc).replace(tzinfo=None) + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += timedelta(seconds=seconds)


def naive_iso(moment: datetime) -> str:
    """chrono's ``NaiveDateTime`` serialisation: no zone, microseconds when present."""
    return moment.isoformat()


def unix_seconds(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Device:
    id: int
    name: str
    pubkey: str
    user_id: int
    created: datetime
    # location id -> assigned address
    addresses: dict[int, str] = field(default_factory=dict)


@dataclass
class User:
    id: int
    username: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    is_active: bool
    password: str | None
    enrollment_pending: bool
    openid_sub: str | None
    from_ldap: bool
    groups: list[str] = field(default_factory=list)
    is_admin: bool = False

    def has_password(self) -> bool:
        return self.password is not None


@dataclass
class Group:
    id: int
    name: str
    is_admin: bool
    members: list[str]


@dataclass
class Location:
    id: int
    name: str
    network: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    endpoint: str
    port: int
    allowed_ips: list[str]
    dns: str | None
    keepalive_interval: int
    mfa_mode: str
    allowed_groups: list[str] | None
    pubkey: str
    _next_host: int = 0

    def allows(self, user: User) -> bool:
        return self.allowed_groups is None or any(g in self.allowed_groups for g in user.groups)

    def next_address(self) -> str:
        """The next unused host address (sequential; devices are never deleted here)."""
        network = self.network.network
        while True:
            self._next_host += 1
            if self._next_host >= network.num_addresses - 1:
                raise CoreError(400, f"Network {self.name} is full")
            candidate = network.network_address + self._next_host
            if candidate != self.network.ip:
                return str(candidate)


@dataclass
class EnrollmentToken:
    value: str
    kind: str
    user_id: int
    admin_id: int | None
    email: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    via: str = "start_enrollment"


@dataclass
class ApiToken:
    owner: str
    name: str
    sha256: str


@dataclass
class Session:
    """An authenticated core request: who, and whether it came through an API token."""

    user: User
    via_api_token: bool


@dataclass(frozen=True)
class StartRequest:
    """``StartEnrollmentRequest``, already type-checked by the HTTP layer."""

    send_enrollment_notification: bool = False
    email: str | None = None
    token_expiration_time: str | None = None


def _location_pubkey(rng: random.Random) -> str:
    private = X25519PrivateKey.from_private_bytes(rng.randbytes(32))
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def is_valid_wireguard_key(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def password_is_strong(password: str) -> bool:
    """Defguard's rule: 8-128 characters with a lower, an upper, a digit and a punctuation mark."""
    return (
        8 <= len(password) <= 128
        and any(c.islower() for c in password)
        and any(c.isupper() for c in password)
        and any(c.isdigit() for c in password)
        and any(c in string.punctuation for c in password)
    )


class DefguardState:
    """The whole emulated Defguard instance for one server line.

    Methods are synchronous and are called from one event loop, so each is atomic with respect
    to the others; the lock only guards reads from other threads (tests inspecting state).
    """

    def __init__(
        self,
        tenant: Tenant,
        line: ServerLine,
        *,
        own_proxy_url: str,
        core_url: str,
        seed: int = 0,
        clock: SandboxClock | None = None,
    ) -> None:
        self.line = line
        self.clock = clock or SandboxClock()
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        settings = tenant.get("settings", {})
        instance = tenant.get("instance", {})
        self.instance_id: str = instance.get("id") or "00000000-0000-4000-8000-000000000000"
        self.instance_name: str = instance.get("name", "Defguard")
        self.welcome_message: str = instance.get(
            "welcome_message", "You can now connect to the VPN."
        )
        self.openid_display_name: str | None = instance.get("openid_display_name")
        self.core_url = core_url
        self.public_proxy_url: str = settings.get("public_proxy_url") or own_proxy_url
        self.token_timeout = timedelta(hours=settings.get("enrollment_token_timeout_hours", 24))
        self.session_timeout = timedelta(
            minutes=settings.get("enrollment_session_timeout_minutes", 10)
        )
        self.admin_device_management: bool = settings.get("admin_device_management", False)
        self.ldap_remote_enrollment: bool = settings.get("ldap_remote_enrollment", False)
        self.smtp_configured: bool = settings.get("smtp_configured", False)
        self.vpn_setup_optional: bool = settings.get("vpn_setup_optional", False)
        self.only_client_activation: bool = settings.get("only_client_activation", False)
        self.rate_limit_per_second: int = settings.get("rate_limit_per_second", 0)
        self.rate_limit_burst: int = settings.get("rate_limit_burst", 0)
        self.license: dict[str, Any] | None = tenant.get("license")

        self.users: dict[str, User] = {}
        self.users_by_id: dict[int, User] = {}
        self.devices: dict[int, Device] = {}
        for person in tenant["users"]:
            if not person.get("username"):
                continue
            user = User(
                id=len(self.users) + 1,
                username=person["username"],
                first_name=person["first_name"],
                last_name=person["last_name"],
                email=person.get("email") or "",
                phone=person.get("phone"),
                is_active=person.get("active", True),
                password=person.get("password"),
                enrollment_pending=person.get("enrollment_pending", False),
                openid_sub=person.get("openid_sub"),
                from_ldap=person.get("from_ldap", False),
            )
            self.users[user.username] = user
            self.users_by_id[user.id] = user
        self.groups: dict[str, Group] = {}
        for spec in tenant["groups"]:
            group = Group(
                id=len(self.groups) + 1,
                name=spec["name"],
                is_admin=spec.get("is_admin", False),
                members=list(dict.fromkeys(spec.get("members", []))),
            )
            self.groups[group.name] = group
            for member in group.members:
                self.users[member].groups.append(group.name)
                self.users[member].is_admin |= group.is_admin
        self.api_tokens: dict[str, ApiToken] = {
            sha256_hex(t["token"]): ApiToken(t["owner"], t["name"], sha256_hex(t["token"]))
            for t in tenant["api_tokens"]
        }
        self.locations: list[Location] = []
        for spec in tenant.get("locations", []):
            network = ipaddress.ip_interface(spec["address"])
            self.locations.append(
                Location(
                    id=len(self.locations) + 1,
                    name=spec["name"],
                    network=network,
                    endpoint=spec["endpoint"],
                    port=spec.get("port", 51820),
                    allowed_ips=spec.get("allowed_ips") or [str(network.network)],
                    dns=spec.get("dns"),
                    keepalive_interval=spec.get("keepalive_interval", 25),
                    mfa_mode=spec.get("mfa_mode", "disabled"),
                    allowed_groups=spec.get("allowed_groups"),
                    pubkey=_location_pubkey(self._rng),
                )
            )
        self.tokens: dict[str, EnrollmentToken] = {}
        self._tokens_by_user: dict[int, set[str]] = {}
        self.polling_tokens: dict[str, int] = {}
        for person in tenant["users"]:
            for device in person.get("devices", []) if person.get("username") else []:
                self._add_device(self.users[person["username"]], device["name"], device["pubkey"])

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
        value = "dg-" + "".join(self._rng.choices(_ALNUM, k=32))
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

    # --------------------------------------------------------------------------- enrollment tokens

    def _new_token_value(self) -> str:
        return "".join(self._rng.choices(_ALNUM, k=32))

    def _issue(
        self, user: User, admin: User, email: str | None, ttl: timedelta, via: str
    ) -> EnrollmentToken:
        owned = self._tokens_by_user.setdefault(user.id, set())
        for value in [v for v in owned if not self.tokens[v].used_at]:
            del self.tokens[value]
            owned.discard(value)
        now = self.clock.now()
        token = EnrollmentToken(
            value=self._new_token_value(),
            kind=TOKEN_ENROLLMENT,
            user_id=user.id,
            admin_id=admin.id,
            email=email,
            created_at=now,
            expires_at=now + ttl,
            via=via,
        )
        self.tokens[token.value] = token
        owned.add(token.value)
        return token

    def _parse_ttl(self, text: str | None) -> timedelta:
        if text is None:
            return self.token_timeout
        try:
            seconds = parse_duration_seconds(text)
        except DurationError:
            raise CoreError(400, "Failed to parse token expiration time") from None
        try:
            ttl = timedelta(seconds=seconds)
            self.clock.now() + ttl
        except OverflowError:
            # chrono would overflow adding this to now(); the server answers with a 500.
            raise CoreError(500, "Internal server error") from None
        return ttl

    def start_enrollment(
        self, session: Session, username: str, body: StartRequest
    ) -> EnrollmentToken:
        """``POST /user/{username}/start_enrollment`` after the extractors have passed."""
        if body.send_enrollment_notification and body.email is None:
            raise CoreError(400, "Email notification is enabled, but email was not provided")
        user = self.get_user(username)
        ttl = self._parse_ttl(body.token_expiration_time)
        already = user.has_password() if self.line == "1.6" else self.is_enrolled(user)
        if already:
            raise CoreError(400, "User account is already activated")
        if not user.is_active:
            raise CoreError(401, "Enrollment user is disabled")
        token = self._issue(user, session.user, body.email, ttl, "start_enrollment")
        user.enrollment_pending = True
        return token

    def start_desktop(self, session: Session, username: str, body: StartRequest) -> EnrollmentToken:
        """``POST /user/{username}/start_desktop``: no enrolled check, fixed lifetime."""
        if self.admin_device_management and not session.user.is_admin:
            raise CoreError(403, "Only admin users can manage devices")
        user = self.get_user(username)
        if not session.user.is_admin and session.user.id != user.id:
            raise CoreError(403, "requires privileged access")
        if not user.is_active:
            raise CoreError(401, "Enrollment user is disabled")
        email = body.email if body.email is not None else user.email
        return self._issue(user, session.user, email, self.token_timeout, "start_desktop")

    # ---------------------------------------------------------------------- enrollment proxy side

    def start_session(self, value: str) -> EnrollmentToken:
        """``Token::start_session``: the checks behind ``POST /enrollment/start``."""
        token = self.tokens.get(value)
        if token is None:
            raise ProxyError(401, "invalid token")
        if token.kind != TOKEN_ENROLLMENT:
            raise ProxyError(403, "invalid token")
        user = self.users_by_id[token.user_id]
        if not user.is_active:
            raise ProxyError(403, "user is disabled")
        now = self.clock.now()
        if token.expires_at < now:
            raise ProxyError(401, "token expired")
        if token.used_at is not None:
            if now > token.used_at + self.session_timeout:
                raise ProxyError(401, "invalid token")
        else:
            token.used_at = now
        return token

    def session_token(self, value: str | None) -> EnrollmentToken:
        """The enrollment session behind a ``defguard_proxy`` cookie, still inside its window."""
        if value is None:
            raise ProxyError(401, "Missing authorization header")
        token = self.tokens.get(value)
        if token is None or token.used_at is None:
            raise ProxyError(401, "Session expired")
        if self.clock.now() > token.used_at + self.session_timeout:
            raise ProxyError(401, "Session expired")
        return token

    def deadline(self, token: EnrollmentToken) -> datetime:
        assert token.used_at is not None
        return token.used_at + self.session_timeout

    def activate_user(self, token: EnrollmentToken, password: str, phone: str | None) -> None:
        user = self.users_by_id[token.user_id]
        if not user.is_active:
            raise ProxyError(400, "user is disabled")
        if user.has_password():
            raise ProxyError(400, "user already activated")
        if phone is not None and not _valid_phone(phone):
            raise ProxyError(400, "invalid phone number")
        if not password_is_strong(password):
            raise ProxyError(400, "password not strong enough")
        user.password = password
        user.phone = phone if phone is not None else user.phone
        user.enrollment_pending = False

    def _add_device(self, user: User, name: str, pubkey: str) -> Device:
        device = Device(
            id=len(self.devices) + 1,
            name=name,
            pubkey=pubkey,
            user_id=user.id,
            created=self.clock.now(),
        )
        for location in self.locations:
            if location.allows(user):
                device.addresses[location.id] = location.next_address()
        self.devices[device.id] = device
        return device

    def create_device(self, token: EnrollmentToken, name: str, pubkey: str) -> Device:
        user = self.users_by_id[token.user_id]
        if not name.strip():
            raise ProxyError(400, "Cannot add a new device with no name")
        if not is_valid_wireguard_key(pubkey):
            raise ProxyError(400, "invalid pubkey")
        if any(d.pubkey == pubkey for d in self.devices.values()):
            raise ProxyError(400, "invalid key")
        if not user.is_active:
            raise ProxyError(400, "can't add device to disabled user")
        return self._add_device(user, name, pubkey)

    def device_for_session(self, token: EnrollmentToken, pubkey: str) -> Device:
        device = next((d for d in self.devices.values() if d.pubkey == pubkey), None)
        if device is None:
            raise ProxyError(404, "device not found")
        if device.user_id != token.user_id:
            raise ProxyError(401, "enrollment token is not valid for specified device")
        return device

    def new_polling_token(self, device: Device) -> str:
        value = self._new_token_value()
        self.polling_tokens[value] = device.id
        return value

    def device_for_polling_token(self, value: str) -> Device:
        device_id = self.polling_tokens.get(value)
        if device_id is None or device_id not in self.devices:
            raise ProxyError(401, "invalid token")
        return self.devices[device_id]


def _valid_phone(phone: str) -> bool:
    digits = phone[1:] if phone.startswith("+") else phone
    return 5 <= len(digits) <= 15 and digits.isdigit()
