"""The records of the emulated Defguard core and the typed errors its decisions raise.

Plain data shared by the state layers (``defguard_directory``, ``defguard_enrollment``,
``defguard_devices``) and by the HTTP faces (``core_app``, ``proxy_app``), which translate
``CoreError`` and ``ProxyError`` into Defguard's exact status codes and bodies, and ``CoreCrash``
into a connection dropped without an answer. The constants are per server line: Defguard core
v1.6.6 and v2.0.1, proxy v1.6.2 (docs/sandbox.md cites the file behind each).
"""

from __future__ import annotations

import hashlib
import ipaddress
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ServerLine = Literal["1.6", "2.0"]
SERVER_LINES: tuple[ServerLine, ...] = ("1.6", "2.0")
COMPONENT_VERSION: dict[ServerLine, str] = {"1.6": "1.6.6", "2.0": "2.0.1"}
PROXY_VERSION: dict[ServerLine, str] = {"1.6": "1.6.2", "2.0": "2.0.1"}

TOKEN_ENROLLMENT = "ENROLLMENT"
TOKEN_PASSWORD_RESET = "PASSWORD_RESET"

MFA_MODE_CODES = {"disabled": 1, "internal": 2, "external": 3}
SERVICE_LOCATION_DISABLED = 1

# ClientTrafficPolicy (v2.0.1 crates/defguard_core/src/enterprise/db/models/
# enterprise_settings.rs:77): the proxy reports `policy as i32` on both lines (v1.6.6
# crates/defguard_core/src/grpc/mod.rs:854).
TRAFFIC_NONE, TRAFFIC_DISABLE_ALL, TRAFFIC_FORCE_ALL = 0, 1, 2

# Alphabet of the tokens the emulated server draws (API, enrollment and polling tokens).
ALNUM = string.ascii_letters + string.digits


class CoreError(Exception):
    """A core REST failure: rendered as ``{"msg": message}`` (or ``{}``) with ``status``."""

    def __init__(self, status: int, message: str | None) -> None:
        super().__init__(message or "")
        self.status = status
        self.message = message


class CoreCrash(Exception):
    """A panic in core: release builds abort (``panic = "abort"``, v2.0.1 Cargo.toml:152,
    v1.6.6 :125), so the request gets no answer and the process restarts."""


class ProxyError(Exception):
    """An enrollment-proxy failure: rendered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
    ldap_remote_enrollment_completed: bool = False
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
    expires_at: datetime  # created_at + lifetime_seconds, clamped to Python's calendar
    lifetime_seconds: int
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
