"""How long a connection may take and how many may be open: the limits, and the registry that
decides which connection gives way.

Pure bookkeeping (no sockets, no event loop): ``connections.GuardedProtocol`` tells the
registry when a connection opens, starts a request, finishes one and closes, and the registry
answers whether a new connection may stay and which idle one must go to make room.

The rules, and why:

- A connection is *idle* while it handles no request: during its TLS handshake, while its
  request head arrives, and between kept-alive requests. Idle connections cost a file
  descriptor and some memory, nothing else, so they are the ones closed when room is needed,
  the longest idle first; a connection handling a request is never closed to make room.
- Requests in flight are limited apart (``max_requests``, answered 503 by the app above it),
  so idle connections never use up the requests' share, and the connection limit is higher
  than the request limit, so there is always an idle connection to close for a new one.
- One client address (an IPv4 address, an IPv6 /64, the smallest block one holder gets) may
  hold ``max_per_client`` connections; a new one beyond that replaces the address's own
  longest idle connection, or is refused if all of them are handling requests.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import UsageError

HEAD_TIMEOUT_SECONDS = 10.0
# Longer than the idle timeout of common load balancers (60 s), so the broker never closes a
# kept-alive connection at the moment a balancer sends a request on it (a 502 there).
IDLE_TIMEOUT_SECONDS = 75.0
MAX_CONNECTIONS = 1024
MAX_REQUESTS = 512
MAX_CONNECTIONS_PER_CLIENT = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """What one broker process allows each connection, and all of them together."""

    # From accept (TLS handshake included), and from the first byte after an idle spell, to
    # the end of the request head.
    head_timeout: float = HEAD_TIMEOUT_SECONDS
    # After a response, until the next request's first byte.
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS
    max_requests: int = MAX_REQUESTS
    max_per_client: int = MAX_CONNECTIONS_PER_CLIENT  # 0: no cap

    def check(self) -> None:
        for option, seconds in (
            ("--head-timeout", self.head_timeout),
            ("--idle-timeout", self.idle_timeout),
        ):
            if not (math.isfinite(seconds) and seconds > 0):
                raise UsageError(f"{option} must be more than 0 seconds")
        if self.max_requests < 1:
            raise UsageError("--max-requests must be 1 or more")
        if self.max_connections <= self.max_requests:
            raise UsageError(
                f"--max-connections {self.max_connections}: give more than --max-requests "
                f"({self.max_requests}), so a new connection can always replace an idle one"
            )
        if self.max_per_client < 0:
            raise UsageError("--max-connections-per-client must be 0 (no cap) or more")


def client_key(host: str) -> str:
    """The address a per-client cap counts: IPv4 as is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP address (a Unix socket's empty name): one bucket
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Closable(Protocol):
    def evict(self) -> None:
        """Close the connection now, without waiting for the peer."""


class ConnectionRegistry:
    """The open connections of one server (one event loop), idle ones in the order they
    became idle."""

    def __init__(
        self, limits: ConnectionLimits, count: Callable[[str], None] = lambda reason: None
    ) -> None:
        self.limits = limits
        self.count = count  # a connection closed or refused, by reason (a metric)
        self._client: dict[Closable, str] = {}
        self._idle: OrderedDict[Closable, None] = OrderedDict()
        self._per_client: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._client)

    def admit(self, connection: Closable, client: str) -> bool:
        """Register a new (idle) connection from ``client`` if it may stay, closing an idle
        one to make room when needed; False when it must be refused."""
        cap = self.limits.max_per_client
        if cap and self._per_client[client] >= cap:
            own = next((c for c in self._idle if self._client[c] == client), None)
            if own is None:
                self.count("per_client_refused")
                return False
            self._evict(own, "per_client")
        if len(self._client) >= self.limits.max_connections:
            oldest = next(iter(self._idle), None)
            if oldest is None:
                self.count("full_refused")
                return False
            self._evict(oldest, "full")
        self._client[connection] = client
        self._per_client[client] += 1
        self._idle[connection] = None
        return True

    def idle(self, connection: Closable) -> None:
        """``connection`` handles no request now (a response went out)."""
        if connection in self._client:
            self._idle.pop(connection, None)
            self._idle[connection] = None

    def busy(self, connection: Closable) -> None:
        """``connection`` handles a request: it is not closed to make room."""
        self._idle.pop(connection, None)

    def forget(self, connection: Closable) -> None:
        """``connection`` is closed (idempotent)."""
        client = self._client.pop(connection, None)
        if client is None:
            return
        self._idle.pop(connection, None)
        self._per_client[client] -= 1
        if not self._per_client[client]:
            del self._per_client[client]

    def _evict(self, connection: Closable, reason: str) -> None:
        self.forget(connection)
        self.count(reason)
        connection.evict()
