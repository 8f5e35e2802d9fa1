"""The README's "Moving from generate-tokens to sync", run as written: which first sync keeps
the tokens generate-tokens handed out, and which replaces them."""

from __future__ import annotations

from pathlib import Path

from ..conftest import StartSandbox
from .test_sync import MEMBERS, Sync, rows, stored, tenant, token_hashes

LIFETIME_SECONDS = 24 * 3600


def test_a_first_sync_with_a_new_state_file_keeps_the_handed_out_tokens(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    jobs = Sync(running, tmp_path)
    assert jobs(command="generate-tokens").exit_code == 0
    handed_out = {name: stored(running, name)["EnrollmentToken"] for name in MEMBERS[:4]}
    issued = token_hashes(running)
    state = str(tmp_path / "state.json")
    first = jobs.report("--state", state)
    assert rows(first) == {name: ("keep", "kept") for name in MEMBERS[:4]}
    assert token_hashes(running) == issued  # nothing issued, so nothing deleted in Defguard
    assert {name: stored(running, name)["EnrollmentToken"] for name in MEMBERS[:4]} == handed_out
    running.advance_clock(LIFETIME_SECONDS + 60)  # one lifetime after that first sync
    later = jobs.report("--state", state)
    assert {decision for decision, _ in rows(later).values()} == {"renew"}


def test_a_first_sync_keeping_expiries_in_the_directory_renews_them_once(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """What the README warns about: no --state, and no expiry beside generate-tokens' values."""
    running = start_sandbox(tenant())
    jobs = Sync(running, tmp_path)
    assert jobs(command="generate-tokens").exit_code == 0
    first = jobs.report()
    assert rows(first) == {name: ("renew", "provisioned") for name in MEMBERS[:4]}
    second = jobs.report()
    assert rows(second) == {name: ("keep", "kept") for name in MEMBERS[:4]}
