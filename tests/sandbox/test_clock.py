"""The sandbox clock (``clock``): moved forward by tests, read by every emulator."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from dgprov_sandbox.clock import SandboxClock, naive_iso, unix_seconds

from ..conftest import Running


def test_the_clock_starts_at_wall_clock_time_in_naive_utc() -> None:
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    now = SandboxClock().now()
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert now.tzinfo is None
    assert before <= now <= after


def test_advance_moves_time_forward_only() -> None:
    clock = SandboxClock()
    clock.advance(3600)
    ahead = clock.now() - datetime.now(timezone.utc).replace(tzinfo=None)
    assert timedelta(minutes=59) < ahead <= timedelta(hours=1)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    assert clock.now() - datetime.now(timezone.utc).replace(tzinfo=None) > timedelta(minutes=59)


def test_wire_forms_of_a_moment() -> None:
    moment = datetime(2024, 2, 29, 12, 30, 15, 250)
    assert naive_iso(moment) == "2024-02-29T12:30:15.000250"
    assert naive_iso(moment.replace(microsecond=0)) == "2024-02-29T12:30:15"
    assert unix_seconds(datetime(1970, 1, 2)) == 86400
    assert unix_seconds(moment) == 1709209815


def test_one_clock_for_every_emulator(sandbox: Running) -> None:
    """``POST /_sandbox/clock`` moves Defguard's and Entra's time together."""
    assert sandbox.sandbox.entra is not None
    assert sandbox.state.clock is sandbox.sandbox.entra.clock
    before = sandbox.state.clock.now()
    sandbox.advance_clock(7200)
    assert sandbox.sandbox.entra.clock.now() - before >= timedelta(hours=2)
