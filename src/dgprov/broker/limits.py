"""The per-user rate limit and the short-lived caches, both bounded in memory.

Kept in the process: the broker stores nothing, so replicas share no state, and each replica
(each ``--workers`` process) keeps its own window (docs/broker.md says what that means).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

MAX_ENTRIES = 200_000  # users remembered at once; the oldest are forgotten first

T = TypeVar("T")


class RateLimiter:
    """One grant per user per window: asking again within it is refused with the wait left."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._granted: OrderedDict[str, float] = OrderedDict()

    def wait_left(self, user: str) -> float:
        """Seconds until ``user`` may ask again; 0 when they may now."""
        self._forget_expired()
        since = self._granted.get(user)
        return 0.0 if since is None else max(0.0, self.window - (self.clock() - since))

    def record(self, user: str) -> None:
        """``user`` asks for a token now (counted whatever Defguard then answers)."""
        self._granted[user] = self.clock()
        self._granted.move_to_end(user)
        while len(self._granted) > MAX_ENTRIES:
            self._granted.popitem(last=False)

    def forget(self, user: str) -> None:
        """Undo ``record``: the request it counted never reached Defguard."""
        self._granted.pop(user, None)

    def _forget_expired(self) -> None:
        now = self.clock()
        while self._granted:
            oldest = next(iter(self._granted.values()))
            if now - oldest < self.window:
                break
            self._granted.popitem(last=False)


class TtlCache(Generic[T]):
    """Values for ``ttl`` seconds; concurrent misses of one key share one load."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._values: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[T]] = {}

    def forget(self, key: str) -> None:
        self._values.pop(key, None)

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        held = self._values.get(key)
        if held is not None and self.clock() - held[0] < self.ttl:
            return held[1]
        if key in self._loading:
            return await asyncio.shield(self._loading[key])
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(value)
        self._values[key] = (self.clock(), value)
        self._values.move_to_end(key)
        while len(self._values) > MAX_ENTRIES:
            self._values.popitem(last=False)
        return value
