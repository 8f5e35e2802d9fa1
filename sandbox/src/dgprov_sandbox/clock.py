"""The one clock every emulator reads, so that tests move time instead of sleeping.

A sandbox run owns one ``SandboxClock``; the Defguard state, the Entra sign-in service and Graph
all take it, so ``POST /_sandbox/clock`` expires enrollment tokens, sessions, licences, device
codes and access tokens together. Moments are naive UTC, as Defguard's chrono columns hold them;
the helpers turn them into the two wire forms the emulators send.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone


class SandboxClock:
    """Wall-clock time plus an offset that tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        """Naive UTC, as Defguard's chrono ``NaiveDateTime`` columns hold it."""
        return datetime.now(timezone.utc).replace(tzinfo=None) + self._offset

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (the rate limiter's quanta clock), moved by ``advance``."""
        return time.monotonic() + self._offset.total_seconds()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += timedelta(seconds=seconds)


def naive_iso(moment: datetime) -> str:
    """chrono's ``NaiveDateTime`` serialisation: no zone, microseconds when present."""
    return moment.isoformat()


def unix_seconds(moment: datetime) -> int:
    return int(moment.replace(tzinfo=timezone.utc).timestamp())
