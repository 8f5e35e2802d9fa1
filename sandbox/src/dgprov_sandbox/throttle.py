"""Graph's identity-and-access throttling: token buckets of resource units and of writes.

Per application and tenant Graph allows a number of resource units per 10 s (3,500 / 5,000 /
8,000 by tenant size) and 3,000 writes per 150 s. Each request costs resource units by route
and query; writes also take one unit from the write bucket. ``time_scale`` multiplies every
window and ``quota_scale`` every quota, so tests reach the limits in seconds; with both equal
the documented rates hold with smaller bursts.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

RU_WINDOW_SECONDS = 10.0
WRITE_WINDOW_SECONDS = 150.0
WRITE_QUOTA = 3_000


def resource_unit_quota(tenant_users: int) -> int:
    """Resource units per 10 s for one app in one tenant, by tenant size."""
    if tenant_users < 50:
        return 3_500
    if tenant_users <= 500:
        return 5_000
    return 8_000


def request_cost(method: str, route: str, query: dict[str, str]) -> int:
    """Resource units one request costs: base cost by route, then the query modifiers."""
    if method != "GET":
        return 1
    base = {"users": 2, "members": 3, "transitiveMembers": 5, "memberOf": 2}.get(route, 1)
    if "$select" in query:
        base -= 1
    if "$expand" in query:
        base += 1
    top = query.get("$top", "")
    if top.isdigit() and int(top) < 20:
        base -= 1
    return max(1, base)


class _Bucket:
    def __init__(self, capacity: float, window: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.tokens = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        missing = amount - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate


@dataclass(frozen=True)
class Verdict:
    """The outcome of one admission: allowed, or refused with how long to wait and why."""

    allowed: bool
    cost: int
    retry_after: float = 0.0
    information: str = ""
    scope: str = ""
    usage: float = 0.0  # share of the tighter bucket in use, for x-ms-throttle-limit-percentage


class Throttle:
    """Admission control for one tenant, per client application."""

    def __init__(
        self,
        tenant_id: str,
        tenant_users: int,
        *,
        enabled: bool,
        time_scale: float = 1.0,
        quota_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant_id = tenant_id
        self.enabled = enabled
        self.ru_capacity = resource_unit_quota(tenant_users) * quota_scale
        self.ru_window = RU_WINDOW_SECONDS * time_scale
        self.write_capacity = WRITE_QUOTA * quota_scale
        self.write_window = WRITE_WINDOW_SECONDS * time_scale
        self.clock = clock
        self._buckets: dict[str, tuple[_Bucket, _Bucket]] = {}
        self._lock = threading.Lock()

    def admit(self, app_id: str, cost: int, *, write: bool) -> Verdict:
        if not self.enabled:
            return Verdict(True, cost)
        with self._lock:
            now = self.clock()
            if app_id not in self._buckets:
                self._buckets[app_id] = (
                    _Bucket(self.ru_capacity, self.ru_window, now),
                    _Bucket(self.write_capacity, self.write_window, now),
                )
            units, writes = self._buckets[app_id]
            units.refill(now)
            writes.refill(now)
            unit_wait = units.wait_for(cost)
            write_wait = writes.wait_for(1) if write else 0.0
            kind = "Write" if write else "Read"
            scope = f"Tenant_Application/{kind}/{app_id}/{self.tenant_id}"
            if unit_wait > 0 or write_wait > 0:
                information = (
                    "WriteLimitExceeded" if write_wait >= unit_wait else "ResourceUnitLimitExceeded"
                )
                return Verdict(False, cost, max(unit_wait, write_wait), information, scope)
            units.tokens -= cost
            if write:
                writes.tokens -= 1
            usage = max(
                1 - units.tokens / units.capacity,
                (1 - writes.tokens / writes.capacity) if write else 0.0,
            )
            return Verdict(True, cost, scope=scope, usage=usage)


def format_retry_after(seconds: float) -> str:
    """Whole seconds when exact, else up to three decimals rounded up (Graph sends e.g. 2.128)."""
    rounded = math.ceil(seconds * 1000) / 1000
    rounded = max(rounded, 0.001)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.3f}".rstrip("0")
