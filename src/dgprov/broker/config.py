"""What one broker is told: where Defguard and Entra are, how it listens, and its policies.

Checked before anything listens, so a broker that starts is one that can be reached safely:
plain HTTP only on a loopback address (a TLS-terminating proxy in front), both TLS files or
neither, a token lifetime Defguard will accept.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from .. import environment
from ..durations import parse_lifetime
from ..entra_auth import EntraSettings
from ..errors import UsageError
from ..urls import is_loopback
from .connection_limits import ConnectionLimits

EnrolledUsers = Literal["desktop", "refuse"]
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_TOKEN_LIFETIME = "1h"
RATE_WINDOW_SECONDS = 60.0
MAPPING_TTL_SECONDS = 30.0
JWKS_REFETCH_FLOOR_SECONDS = 30.0
NO_CLIENT_ID = (
    "no client id for the broker's own app registration: give --client-id or set "
    f"{environment.BROKER_CLIENT_ID} ({environment.CLIENT_ID}, the public client's, is not read)"
)
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def parse_listen(text: str) -> Listen:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); port 0 lets the kernel pick one."""
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(
            f"--listen {text!r}: give HOST:PORT such as 127.0.0.1:8080, [::1]:8080 or "
            "0.0.0.0:8443 (port 0 picks a free one)"
        )
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise UsageError(
                f"--listen {text!r}: the host must be an IP address or localhost"
            ) from None
    return Listen(host, int(port_text))


@dataclass(frozen=True)
class BrokerConfig:
    """One broker's settings; ``check`` refuses the combinations that must not run."""

    defguard_url: str
    group_name: str
    api_token: str
    entra: EntraSettings
    listen: Listen
    tls_cert: str | None = None
    tls_key: str | None = None
    token_lifetime: str = DEFAULT_TOKEN_LIFETIME
    enrolled_users: EnrolledUsers = "desktop"
    workers: int = 1
    ca_bundle: str | None = None
    # The client apps whose tokens are accepted (``azp`` in v2 tokens, ``appid`` in v1); empty:
    # any app the user consented to the broker's scope for.
    allowed_client_ids: tuple[str, ...] = ()
    # Whether Entra guest accounts (userType Guest) may obtain tokens (--allow-guests).
    allow_guests: bool = False
    # Policies with defaults that suit a service; tests shorten them.
    rate_window_seconds: float = RATE_WINDOW_SECONDS
    mapping_ttl_seconds: float = MAPPING_TTL_SECONDS
    jwks_refetch_floor_seconds: float = JWKS_REFETCH_FLOOR_SECONDS
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)  # per connection

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def check(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("--tls-cert and --tls-key go together: give both or neither")
        if not self.tls and not self.listen.loopback:
            raise UsageError(
                f"--listen {self.listen.host}: plain HTTP is served on loopback only (for a "
                "TLS-terminating proxy in front); give --tls-cert and --tls-key to listen there"
            )
        try:
            parse_lifetime(self.token_lifetime)
        except UsageError as exc:  # worded for generate-tokens' option
            raise UsageError(
                str(exc).replace("--enrollment-token-expiration-time", "--token-lifetime")
            ) from None
        if self.entra.auth not in ("client-secret", "certificate"):
            raise UsageError("--auth must be client-secret or certificate for the broker")
        if self.entra.tenant.lower() in ("common", "organizations", "consumers"):
            raise UsageError(
                f"--tenant {self.entra.tenant}: the broker accepts one tenant's users; give its "
                "tenant id or domain"
            )
        if not self.entra.client_id:  # before entra.check, which names DGPROV_CLIENT_ID
            raise UsageError(NO_CLIENT_ID)
        self.entra.check()
        for client_id in self.allowed_client_ids:
            if not GUID.fullmatch(client_id.strip().lower()):
                raise UsageError(
                    f"--allowed-client-id {client_id!r}: give the client app's application "
                    "(client) id, a GUID"
                )
        if self.workers < 1:
            raise UsageError("--workers must be 1 or more")
        if not (math.isfinite(self.rate_window_seconds) and self.rate_window_seconds >= 0):
            raise UsageError("--rate-window must be 0 or more seconds")
        self.connections.check()
