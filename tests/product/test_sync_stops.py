"""``dgprov sync --state`` stopped part-way, as schedulers stop jobs (SIGTERM: systemd,
``timeout``), and killed outright (SIGKILL): the next run replaces none of the valid tokens the
stopped run stored. The run is the real CLI in a child process against the sandbox; the test
watches Graph's store until the run has stored enough tokens, then signals it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import Running, StartSandbox
from .test_sync import Sync, entra_args, rows, sha, token_hashes

COUNT = 48
NAMES = [f"user{n:04d}" for n in range(1, COUNT + 1)]
DEADLINE = 60.0


def big_tenant() -> dict[str, Any]:
    """``COUNT`` members, none enrolled, in a set without ``EnrollmentTokenExpiresAt`` (the case
    ``--state`` is for)."""
    document: dict[str, Any] = synthetic_tenant(COUNT, seed=20)
    attribute_set = document["entra"]["attribute_sets"][0]
    attribute_set["attributes"] = attribute_set["attributes"][:2]
    return document


def stored_tokens(running: Running) -> dict[str, str]:
    """The token Graph holds per member, read from the emulator's own store (it replaces a
    user's attributes whole on each write, so this read sees each write entirely or not)."""
    assert running.sandbox.entra is not None
    found = {}
    for user in list(running.sandbox.entra.users.values()):
        token = user.custom_security_attributes.get("Defguard", {}).get("EnrollmentToken")
        if token:
            found[user.user_principal_name.split("@")[0]] = token
    return found


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)  # a poll interval, not a wait for the outcome


def stop_part_way(
    running: Running, tmp_path: Path, state: Path, how: signal.Signals, after: int
) -> subprocess.CompletedProcess[str]:
    """Start ``sync --state`` as a child process, signal it once Graph holds ``after``
    tokens, and return how it ended."""
    sync = Sync(running, tmp_path)
    faults = running.sandbox.options.faults
    faults.latency_ms = 20.0  # every request; lets the test catch the run part-way
    args = entra_args(running, "sync", "--state", str(state), "--concurrency", "2")
    child = subprocess.Popen(
        [sys.executable, "-m", "dgprov", *args],
        env={**os.environ, **sync.env()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: len(stored_tokens(running)) >= after or child.poll() is not None,
            f"{after} stored tokens",
        )
        assert child.poll() is None, "the run ended before the test could stop it"
        child.send_signal(how)
        out, err = child.communicate(timeout=DEADLINE)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        faults.latency_ms = 0.0
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def next_run_replaces_none(running: Running, tmp_path: Path, state: Path, after: int) -> None:
    stored = stored_tokens(running)
    assert after <= len(stored) < COUNT
    issued = token_hashes(running)
    assert all(sha(token) in issued[name] for name, token in stored.items())  # all valid
    report = Sync(running, tmp_path).report("--state", str(state))
    decided = rows(report)
    assert {name: decided[name] for name in stored} == dict.fromkeys(stored, ("keep", "kept"))
    assert {name: decided[name] for name in NAMES if name not in stored} == dict.fromkeys(
        set(NAMES) - set(stored), ("issue", "provisioned")
    )
    now = stored_tokens(running)
    assert {name: now[name] for name in stored} == stored  # not one replaced in Graph
    later = token_hashes(running)
    assert all(later[name] == issued[name] for name in stored)  # nor in Defguard


@pytest.mark.parametrize(
    ("how", "after"),
    [(signal.SIGTERM, 1), (signal.SIGTERM, 9), (signal.SIGTERM, 26), (signal.SIGHUP, 9)],
)
def test_sigterm_stops_cleanly_and_the_next_run_keeps_what_was_stored(
    start_sandbox: StartSandbox, tmp_path: Path, how: signal.Signals, after: int
) -> None:
    """systemd and ``timeout`` send SIGTERM, a closed terminal SIGHUP: both stop like Ctrl-C."""
    running = start_sandbox(big_tenant())
    state = tmp_path / "state.json"
    ended = stop_part_way(running, tmp_path, state, how, after)
    assert ended.returncode == 1, ended.stderr  # some members not processed: not a crash
    assert f"stopped by {how.name}" in ended.stderr
    assert state.exists() and not state.with_name("state.json.journal").exists()
    next_run_replaces_none(running, tmp_path, state, after)


@pytest.mark.parametrize("after", [1, 9, 26])
def test_sigkill_loses_no_record_and_the_next_run_keeps_what_was_stored(
    start_sandbox: StartSandbox, tmp_path: Path, after: int
) -> None:
    running = start_sandbox(big_tenant())
    state = tmp_path / "state.json"
    ended = stop_part_way(running, tmp_path, state, signal.SIGKILL, after)
    assert ended.returncode == -signal.SIGKILL
    next_run_replaces_none(running, tmp_path, state, after)
    assert not state.with_name("state.json.journal").exists()  # folded into the file


def test_a_journal_line_cut_short_by_a_kill_does_not_stop_later_runs(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """Run 1 killed while writing a journal line (the fragment it left is written here), run 2
    appends its own records and is killed too, run 3 reads every whole line and replaces none of
    the tokens either run stored. Before, run 2's first line followed the fragment on the same
    line and every later run exited 2."""
    running = start_sandbox(big_tenant())
    state = tmp_path / "state.json"
    journal = state.with_name("state.json.journal")
    ended = stop_part_way(running, tmp_path, state, signal.SIGKILL, 5)
    assert ended.returncode == -signal.SIGKILL
    with journal.open("ab") as torn:
        torn.write(b'{"object_id": "0f1e2d3c-')  # the kill fell inside a line
    after = len(stored_tokens(running)) + 5
    ended = stop_part_way(running, tmp_path, state, signal.SIGKILL, after)
    assert ended.returncode == -signal.SIGKILL, ended.stderr
    assert journal.read_bytes().endswith(b"\n")
    next_run_replaces_none(running, tmp_path, state, after)
    assert not journal.exists()
