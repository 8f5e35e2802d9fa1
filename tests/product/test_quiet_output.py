"""What an administrator's log shows of a run: progress without a terminal, skipped members by
reason. Through the real CLI against the sandbox, where stderr is not a terminal (as under cron,
journald or Task Scheduler)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.cli import main
from dgprov.commands.render import Progress

from ..conftest import Running, StartSandbox
from .test_generate_tokens import cli_args, environment


def signed_in(start_sandbox: StartSandbox, users: int | None = None) -> Running:
    """A sandbox (synthetic with ``users`` members, else the example tenant) whose device
    codes its admin approves."""
    running = start_sandbox(synthetic_tenant(users, 2) if users is not None else None)
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
    return running


PROGRESS_LINE = re.compile(r"^progress: (\d+)/(\d+) members settled \((\d+) %\)$")


def test_without_a_terminal_progress_is_a_line_per_tenth(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = signed_in(start_sandbox, 45)
    result = CliRunner().invoke(main, cli_args(running), env=environment(running, tmp_path))
    assert result.exit_code == 0, result.output
    shown = [PROGRESS_LINE.match(line) for line in result.output.splitlines()]
    counts = [(int(m[1]), int(m[2])) for m in shown if m is not None]
    assert counts and counts[-1] == (45, 45)
    assert 2 <= len(counts) <= 10  # at most one per tenth crossed, never one per member
    done = [count for count, _ in counts]
    assert done == sorted(done) and len(set(done)) == len(done)
    assert "\r" not in result.output  # no bar redrawn in a log


def test_a_line_every_30_seconds_in_a_slow_run(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    progress = Progress(clock=lambda: now[0])
    progress.on_terminal = False
    for done in range(1, 6):  # 5 of 1,000: never a tenth
        now[0] += 10
        progress(done, 1000)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["progress: 3/1000 members settled (0 %)"]  # at 30 s, not before


def test_skipped_members_are_summarised_by_reason(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = signed_in(start_sandbox)  # the example tenant: disabled, missing, enrolled users
    result = CliRunner().invoke(
        main,
        cli_args(running, "--enrolled-users", "skip"),
        env=environment(running, tmp_path),
    )
    summary = re.search(r"^skipped\s+(\d+)$", result.output, re.M)
    assert summary is not None, result.output
    lines = re.findall(r"^skipped (\d+): (.+) \((.+)\)$", result.output, re.M)
    assert len(lines) >= 2  # more than one reason in this tenant
    assert sum(int(count) for count, _, _ in lines) == int(summary[1])
    counts = [int(count) for count, _, _ in lines]
    assert counts == sorted(counts, reverse=True)
    for count, _, names in lines:
        listed = names.split(" and ")[0].split(", ")
        assert len(listed) == min(int(count), 3)


def test_the_plain_cache_warning_is_said_once_per_cache(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """Two scheduled runs sharing one cache: the second says nothing about the cache."""
    running = signed_in(start_sandbox, 3)
    env = {**os.environ, **environment(running, tmp_path / "cache")}
    env["DGPROV_LOCK_FILE"] = str(tmp_path / "dgprov.lock")
    runs = [
        subprocess.run(
            [sys.executable, "-m", "dgprov", *cli_args(running, "--dry-run")],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr
    warning = "no OS-encrypted storage for the sign-in cache"
    if warning not in runs[0].stderr:
        pytest.skip("this machine keeps the sign-in cache in OS-encrypted storage")
    assert warning not in runs[1].stderr
    assert "signing in" in runs[1].stderr  # the second run did sign in, from that cache


def test_the_dry_run_says_zero_replaced_tokens_as_a_sentence(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = signed_in(start_sandbox, 1)
    result = CliRunner().invoke(
        main, cli_args(running, "--dry-run"), env=environment(running, tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert (
        "dry run: 1 token would be issued; no member holds an unused token that it would "
        "replace; nothing was changed"
    ) in " ".join(result.output.split())
