"""Defguard 2.0's rate limiter (tower-governor) against a full run at the default concurrency.

Its own file because the limit makes the run last its ~12 s on purpose: 60 members and the
preflight against one request per second after a burst of 50. One per second because Defguard's
``rate_limit_per_second = n`` is, despite its name, a period (one request every n seconds, so 5
would mean minutes here); the frozen emulator reads it as n per second, and 1 is the same rate
in both readings. Upstream's Retry-After is then often 0 (whole seconds, rounded down).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import StartSandbox
from .test_generate_tokens import Invoker, invoke

__all__ = ["invoke"]  # the fixture

MEMBERS = 60
PER_SECOND = 1
BURST = 50


def test_sixty_members_against_one_per_second_all_provisioned(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    """32 issuers at once meet 429s with ``Retry-After``; fewer in flight while refused (the
    adaptive limit) keeps each member's retries for real failures, so nobody fails."""
    tenant = synthetic_tenant(MEMBERS, 12)
    tenant["settings"]["rate_limit_per_second"] = PER_SECOND
    tenant["settings"]["rate_limit_burst"] = BURST
    running = start_sandbox(tenant, "2.0")
    report = tmp_path / "report.json"
    started = time.monotonic()
    result = invoke(running, "--report", str(report))
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["members"]
    assert len(rows) == MEMBERS
    assert {row["outcome"] for row in rows} == {"provisioned"}, [
        (row["username"], row["reason"]) for row in rows if row["outcome"] != "provisioned"
    ]
    # The limiter was really in the way: more requests than its burst, at its rate.
    assert elapsed >= (MEMBERS - BURST) / PER_SECOND
