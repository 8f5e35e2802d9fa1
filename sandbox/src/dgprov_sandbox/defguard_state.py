"""The emulated Defguard core: users, groups, tokens, devices and the rules that govern them.

This knows nothing about HTTP. ``DefguardState`` holds the state of one sandbox run, seeded here
from the tenant, and implements each decision the real server makes, per server line (``1.6`` or
``2.0``), as core v1.6.6 and v2.0.1 make them (docs/sandbox.md cites each file). The decisions live
in layers, each a module of its own: ``defguard_directory`` (licence gate, authentication, users and
groups), ``defguard_enrollment`` (enrollment tokens and sessions) and ``defguard_devices`` (devices
and polling tokens); the records and typed errors are in ``defguard_model``. The HTTP layers
(``core_app``, ``proxy_app``) translate requests into calls here and the typed errors into
Defguard's exact status codes and bodies.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import threading
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .clock import SandboxClock
from .defguard_devices import DefguardDevices
from .defguard_directory import UserOrder
from .defguard_model import (
    ApiToken,
    Device,
    EnrollmentToken,
    Group,
    Location,
    ServerLine,
    User,
    sha256_hex,
)
from .tenant import Tenant


def _location_pubkey(rng: random.Random) -> str:
    private = X25519PrivateKey.from_private_bytes(rng.randbytes(32))
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


class DefguardState(DefguardDevices):
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
        user_order: UserOrder = "heap",
    ) -> None:
        self.line = line
        self.clock = clock or SandboxClock()
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self.seed = seed
        self.user_order = user_order
        self._listings = 0
        self.restarts = 0  # core processes that aborted on a panic (CoreCrash) and restarted
        settings = tenant.get("settings", {})
        instance = tenant.get("instance", {})
        self.instance_id: str = instance.get("id") or "00000000-0000-4000-8000-000000000000"
        self.instance_name: str = instance.get("name", "Defguard")
        self.welcome_message: str = instance.get(
            "welcome_message", "You can now connect to the VPN."
        )
        self.openid_display_name: str | None = instance.get("openid_display_name")
        self.client_traffic_policy: int = instance.get("client_traffic_policy", 0)
        self.mfa_required: bool | None = instance.get("mfa_required")
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
                ldap_remote_enrollment_completed=person.get(
                    "ldap_remote_enrollment_completed", False
                ),
            )
            self.users[user.username] = user
            self.users_by_id[user.id] = user
        self._heap: list[int] = list(self.users_by_id)
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
                    allowed_ips=spec.get("allowed_ips", [str(network.network)]),
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
