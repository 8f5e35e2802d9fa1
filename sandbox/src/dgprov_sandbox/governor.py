"""The 2.0 core's rate limiter: tower_governor 0.8.0 over governor 0.10.4, as Defguard sets it up.

Defguard v2.0.1 (crates/defguard_core/src/lib.rs:640-676) builds
``GovernorConfigBuilder::default().key_extractor(SmartIpKeyExtractor)
.per_second(DEFGUARD_RATELIMIT_PERSECOND).burst_size(DEFGUARD_RATELIMIT_BURST)`` and layers it
over the ``/api/v1`` routes. Despite its name, ``per_second(n)`` sets the *period* after which
one request is replenished to n seconds (tower-governor 0.8.0 src/governor.rs:161-164), so the
sustained rate is one request every n seconds, after a burst of ``burst``; either setting 0
disables the limiter (``finish`` returns None, :233). The decision is governor's GCRA
(governor v0.10.4 governor/src/gcra.rs:88-132) and the refusal tower-governor's
(src/lib.rs:124-149, src/errors.rs:47-57): 429, body ``Too Many Requests! Wait for {n}s``
without a content type, ``x-ratelimit-after`` and ``retry-after`` both ``n``, where n is the wait
in *whole seconds rounded down* (``Duration::as_secs``), so often 0. Time is the sandbox clock, so
tests move it instead of sleeping; a core restart (``reset``) forgets every client, as the
in-memory limiter of a restarted process does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from .clock import SandboxClock
from .http_common import ASGIApp, Receive, Scope, Send

NANOS = 1_000_000_000
IpKey = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IpKey | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> IpKey | None:
    """The first ``for=`` of a ``Forwarded`` header that names an address (RFC 7239): a bare
    or quoted IP, ``ip:port`` or ``[v6]:port``; obfuscated identifiers name none."""
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, node = pair.strip().partition("=")
            if name.strip().lower() != "for":
                continue
            node = node.strip().strip('"')
            if node.startswith("["):
                found = _ip(node[1 : node.find("]")])
            else:
                found = _ip(node) or _ip(node.rsplit(":", 1)[0])
            if found is not None:
                return found
    return None


def client_key(scope: Scope) -> IpKey | None:
    """``SmartIpKeyExtractor`` (tower-governor 0.8.0 src/key_extractor.rs:105-161): the first
    parseable ``X-Forwarded-For`` entry, then ``X-Real-IP``, then ``Forwarded``, then the peer.
    Keys are addresses, so two spellings of one address share a bucket."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        headers.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
    for entry in headers.get("x-forwarded-for", "").split(","):
        if (found := _ip(entry.strip())) is not None:
            return found
    if (found := _ip(headers.get("x-real-ip", ""))) is not None:
        return found
    if (found := _forwarded_for(headers.get("forwarded", ""))) is not None:
        return found
    client = scope.get("client")
    return _ip(client[0]) if client else None


class RateLimiter:
    """GCRA per client address; ``period`` seconds per request after a burst of ``burst``."""

    def __init__(
        self,
        app: ASGIApp,
        period: int,
        burst: int,
        clock: SandboxClock,
        prefix: str = "/api/v1",
    ) -> None:
        self.app = app
        self.enabled = period > 0 and burst > 0
        self.clock = clock
        self.prefix = prefix
        self.t = period * NANOS  # Gcra::new: t = replenish_1_per, tau = t * (burst - 1)
        self.tau = self.t * max(burst - 1, 0)
        self.burst = burst
        self.tat: dict[IpKey, int] = {}
        self.start = self._now()

    def _now(self) -> int:
        return int(self.clock.monotonic() * NANOS)

    def reset(self) -> None:
        """A restarted core builds a new, empty limiter."""
        self.tat.clear()
        self.start = self._now()

    def wait_nanos(self, key: IpKey) -> int | None:
        """``test_and_update``: None when admitted, else how long until a request would be."""
        t0 = self._now() - self.start
        tat = self.tat.get(key, t0)
        earliest = max(tat - self.tau, 0)
        if t0 < earliest:
            # wait_time_from reads the clock again after deciding, so some time has passed.
            return earliest - max(self._now() - self.start, t0 + 1)
        self.tat[key] = max(tat, t0) + self.t
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        key = client_key(scope)
        if key is None:
            await _plain(send, 500, "Unable To Extract Key!", [])
            return
        wait = self.wait_nanos(key)
        if wait is None:
            await self.app(scope, receive, send)
            return
        seconds = str(max(wait, 0) // NANOS).encode()
        headers = [(b"x-ratelimit-after", seconds), (b"retry-after", seconds)]
        await _plain(send, 429, f"Too Many Requests! Wait for {seconds.decode()}s", headers)


async def _plain(send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]) -> None:
    """tower-governor's ``Response<String>``: no content type."""
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def core_limiter(period: int, burst: int, clock: SandboxClock) -> Callable[[ASGIApp], RateLimiter]:
    """A factory ``build_core_app`` applies to the routed app (inside the version header)."""
    return lambda app: RateLimiter(app, period, burst, clock)
