"""How long a connection may take and how many may be open: the limits, and the registry that
decides which connection gives way.

Pure bookkeeping (no sockets, no event loop): ``connections.GuardedProtocol`` tells the
registry when a connection opens, starts a request, finishes one and closes, and the registry
answers whether a new connection may stay and which other one must go to make room.

The rules, and why:

- A connection is *arriving* from its accept until its request head is complete (TLS
  handshake, head on its way), and again from the first byte of a later head; *kept alive*
  after a response until that byte (or while the client has not taken the answer yet);
  *busy* while it handles a request. A busy connection is never closed to make room.
- When room is needed, a kept-alive connection goes first: its client was answered and only
  has to reconnect. An arriving connection goes only when none is kept alive: a client on a
  slow link may need most of ``head_timeout`` for its head. Each time from the address
  holding the most connections, its oldest one: a flood from a few addresses closes its own
  connections, not those of the clients it crowds out.
- Requests in flight are limited apart (``max_requests``, answered 503 by the app above it),
  so idle connections never use up the requests' share, and the connection limit is higher
  than the request limit, so there is always a connection to close for a new one.
- One client address (an IPv4 address, an IPv6 /64, the smallest block one holder gets) may
  hold ``max_per_client`` connections; a new one beyond that replaces the address's own
  oldest kept-alive connection, else its oldest arriving one, or is refused if all of them
  are handling requests.
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
# A client whose receive window stays full this long is not reading what it asked for.
WRITE_TIMEOUT_SECONDS = 10.0
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
    # While the client takes none of an answer (the send buffers are full), until it is closed.
    write_timeout: float = WRITE_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS
    max_requests: int = MAX_REQUESTS
    max_per_client: int = MAX_CONNECTIONS_PER_CLIENT  # 0: no cap

    def check(self) -> None:
        for option, seconds in (
            ("--head-timeout", self.head_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--write-timeout", self.write_timeout),
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


class Ranking:
    """Client addresses by how many connections each holds, the most first (among equals, the
    one that got there first). O(1) to change, amortised O(1) to ask: the table is consulted on
    every accept while it is full, thousands of times a second under a flood."""

    def __init__(self) -> None:
        self._rank: dict[str, int] = {}
        self._by_rank: dict[int, dict[str, None]] = {}
        self._top = 0

    def set(self, client: str, rank: int) -> None:
        """``client``'s rank now; 0 takes it out."""
        old = self._rank.pop(client, 0)
        if old:
            same = self._by_rank[old]
            del same[client]
            if not same:
                del self._by_rank[old]
        if rank > 0:
            self._rank[client] = rank
            self._by_rank.setdefault(rank, {})[client] = None
            self._top = max(self._top, rank)

    def top(self) -> str | None:
        while self._top > 0 and self._top not in self._by_rank:
            self._top -= 1
        return next(iter(self._by_rank[self._top])) if self._top else None


class ConnectionRegistry:
    """The open connections of one server (one event loop): per address, the kept-alive ones
    and the arriving ones (TLS handshake, request head on its way), each in the order they
    entered that state; busy ones are only counted."""

    def __init__(
        self, limits: ConnectionLimits, count: Callable[[str], None] = lambda reason: None
    ) -> None:
        self.limits = limits
        self.count = count  # a connection closed or refused, by reason (a metric)
        self._client: dict[Closable, str] = {}
        self._per_client: Counter[str] = Counter()
        self._kept: dict[str, OrderedDict[Closable, None]] = {}
        self._arriving: dict[str, OrderedDict[Closable, None]] = {}
        self._most_kept = Ranking()  # addresses holding a kept-alive connection
        self._most_arriving = Ranking()  # addresses holding an arriving connection

    def __len__(self) -> int:
        return len(self._client)

    def admit(self, connection: Closable, client: str) -> bool:
        """Register a new (arriving) connection from ``client`` if it may stay, closing another
        to make room when needed; False when it must be refused."""
        cap = self.limits.max_per_client
        if cap and self._per_client[client] >= cap:
            own = self._oldest(self._kept, client) or self._oldest(self._arriving, client)
            if own is None:
                self.count("per_client_refused")
                return False
            self._evict(own, "per_client")
        if len(self._client) >= self.limits.max_connections:
            victim = self._victim()
            if victim is None:
                self.count("full_refused")
                return False
            self._evict(victim, "full")
        self._client[connection] = client
        self._per_client[client] += 1
        self._place(connection, self._arriving)
        return True

    def idle(self, connection: Closable) -> None:
        """``connection`` handles no request now (a response went out): kept alive."""
        self._place(connection, self._kept)

    def arriving(self, connection: Closable) -> None:
        """The next request's head has begun to arrive on a kept-alive ``connection``."""
        self._place(connection, self._arriving)

    def busy(self, connection: Closable) -> None:
        """``connection`` handles a request: it is not closed to make room."""
        self._place(connection, None)

    def forget(self, connection: Closable) -> None:
        """``connection`` is closed (idempotent)."""
        if connection not in self._client:
            return
        self._place(connection, None)
        client = self._client.pop(connection)
        self._per_client[client] -= 1
        if not self._per_client[client]:
            del self._per_client[client]
        self._rerank(client)

    def _victim(self) -> Closable | None:
        """The connection to close for a new one: a kept-alive one before an arriving one
        (a client that was answered loses the least), each from the address holding the most
        connections, the oldest of it first."""
        for group, ranking in (
            (self._kept, self._most_kept),
            (self._arriving, self._most_arriving),
        ):
            client = ranking.top()
            if client is not None:
                return self._oldest(group, client)
        return None

    @staticmethod
    def _oldest(group: dict[str, OrderedDict[Closable, None]], client: str) -> Closable | None:
        members = group.get(client)
        return next(iter(members)) if members else None

    def _place(
        self, connection: Closable, group: dict[str, OrderedDict[Closable, None]] | None
    ) -> None:
        """Move ``connection`` to the end of ``group`` (None: neither, it is busy)."""
        client = self._client.get(connection)
        if client is None:
            return
        for each in (self._kept, self._arriving):
            members = each.get(client)
            if members is not None and connection in members:
                del members[connection]
                if not members:
                    del each[client]
        if group is not None:
            group.setdefault(client, OrderedDict())[connection] = None
        self._rerank(client)

    def _rerank(self, client: str) -> None:
        held = self._per_client.get(client, 0)
        self._most_kept.set(client, held if client in self._kept else 0)
        self._most_arriving.set(client, held if client in self._arriving else 0)

    def _evict(self, connection: Closable, reason: str) -> None:
        self.forget(connection)
        self.count(reason)
        connection.evict()
