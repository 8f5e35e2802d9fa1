"""Reports after a failure or an interrupt, through the real CLI against the sandbox and a real
slapd: a preflight failure leaves no report saying tokens may have been issued; after Ctrl-C the
progress stops where the run did, members never reached are counted ``not processed`` apart
from ``failed``, and the last line says how to go on; a resumed report keeps the expiries."""

from __future__ import annotations

import json
import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dgprov_sandbox.http_common import FaultSettings
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import Running, StartSandbox, example_tenant
from ..slapd import READER_DN, READER_PASSWORD, Slapd, slapd
from .test_dry_run import ad
from .test_generate_tokens import Invoker, cli_args, environment, report_rows, token_hashes
from .test_generate_tokens_ad import populate
from .test_prompts import Terminal, child_environment

__all__ = ["slapd"]  # the fixture
PROGRESS_LINE = re.compile(r"^progress: (\d+)/(\d+) members settled")


@pytest.fixture
def invoke(tmp_path: Path) -> Invoker:
    return Invoker(tmp_path / "cache")


# ----------------------------------------------------------------------- preflight failures


@pytest.mark.parametrize("command", ["generate-tokens", "sync"])
def test_a_refused_write_probe_leaves_no_report_of_tokens_in_progress(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path, command: str
) -> None:
    """AD's no-op write is refused before any token: exit 2, nothing issued, and no report
    saying "a token may have been issued" (none at all: the same command may run again)."""
    running = start_sandbox(example_tenant())
    populate(slapd)
    report = tmp_path / "r.json"
    result = ad(
        running,
        slapd,
        "--report",
        str(report),
        command=command,
        bind_dn=READER_DN,
        password=READER_PASSWORD,
        dry_run=False,
    )
    assert result.exit_code == 2, result.output
    assert "may not write" in result.output
    assert token_hashes(running) == {}
    assert not report.exists(), report.read_text()


def test_a_refused_canary_write_leaves_a_report_that_says_what_was_issued(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    """Entra's canary: one token issued and not stored, said in its row; every other member
    not processed, counted so apart from failed, and nobody "in progress"."""
    running = start_sandbox(example_tenant())
    assert running.sandbox.entra is not None
    admin = next(
        u
        for u in running.sandbox.entra.users.values()
        if u.user_principal_name == running.info["admin_upn"]
    )
    admin.directory_roles = {"User Administrator", "Attribute Assignment Reader"}
    report = tmp_path / "r.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 2, result.output
    document = json.loads(report.read_text())
    rows = {r["username"]: r for r in document["members"]}
    (canary,) = token_hashes(running)
    assert rows[canary]["reason"].endswith("the token was issued but not stored")
    untouched = [r for n, r in rows.items() if r["action"] != "none" and n != canary]
    assert untouched and all(r["outcome"] == "failed" for r in untouched)
    assert all(r["reason"].startswith("not processed") for r in untouched)
    assert not any("in progress" in (r["reason"] or "") for r in rows.values())
    assert document["summary"]["not_processed"] == len(untouched)
    assert document["summary"]["failed"] == 2  # the canary and the ambiguous twin


# ------------------------------------------------------------------------------- Ctrl-C


class Child:
    """``python -m dgprov …`` with its stderr read line by line as it comes."""

    def __init__(self, running: Running, tmp_path: Path, command: str, *extra: str) -> None:
        assert running.sandbox.entra is not None
        running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
        args = cli_args(running, *extra)
        args[0] = command
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dgprov", *args],
            env={**os.environ, **environment(running, tmp_path / "cache")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, "the run ended first:\n" + "\n".join(self.stderr)
            self.stderr.append(line)
            if match := pattern.match(line):
                return match

    def finish(self) -> tuple[str, list[str]]:
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()  # stderr is the reading thread's
        self.process.wait(timeout=60)
        while (line := self.lines.get(timeout=30)) is not None:
            self.stderr.append(line)
        return stdout, self.stderr


@pytest.fixture(params=["generate-tokens", "sync"])
def interrupted(
    start_sandbox: StartSandbox, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """A run for 100 members, Ctrl-C once its progress shows a tenth settled."""
    running = start_sandbox(synthetic_tenant(100, 6), faults=FaultSettings(latency_ms=40))
    report = tmp_path / "r.json"
    command = request.param
    child = Child(running, tmp_path, command, "--report", str(report), "--concurrency", "2")
    try:
        child.wait_for(PROGRESS_LINE)
        child.process.send_signal(signal.SIGINT)
        stdout, stderr = child.finish()
    finally:
        if child.process.poll() is None:
            child.process.kill()
    yield {
        "code": child.process.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "report": report,
        "command": command,
    }


def test_after_ctrl_c_the_progress_stops_where_the_run_stopped(
    interrupted: dict[str, Any],
) -> None:
    assert interrupted["code"] == 1, interrupted["stderr"]
    shown = [m for line in interrupted["stderr"] if (m := PROGRESS_LINE.match(line))]
    rows = report_rows(interrupted["report"])
    settled = sum(1 for r in rows.values() if not r["reason"].startswith("not processed"))
    assert 0 < settled < 100
    assert shown and all(int(m[1]) <= settled for m in shown)
    assert int(shown[-1][1]) < 100, shown[-1][0]  # never jumps to the end


def test_after_ctrl_c_members_never_reached_are_counted_not_processed(
    interrupted: dict[str, Any],
) -> None:
    document = json.loads(interrupted["report"].read_text())
    rows = document["members"]
    never = [r for r in rows if r["reason"].startswith("not processed")]
    assert never and all(r["outcome"] == "failed" for r in never)  # the outcome contract
    sync = interrupted["command"] == "sync"
    summary = document["summary"]["outcome"] if sync else document["summary"]
    assert summary["not_processed"] == len(never)
    failed = sum(1 for r in rows if r["outcome"] == "failed")
    assert summary["failed"] == failed - len(never)
    assert summary["provisioned"] + summary["failed"] + summary["not_processed"] == 100
    printed = re.search(r"^not processed\s+(\d+)$", interrupted["stdout"], re.M)
    assert printed is not None and int(printed[1]) == len(never), interrupted["stdout"]
    assert not any(line.startswith("failed: ") for line in interrupted["stderr"])
    how = (
        "run dgprov sync again; it goes on from what is stored"
        if sync
        else f"run again with --resume {interrupted['report']}"
    )
    assert interrupted["stderr"][-1] == f"{len(never)} not processed: {how}"


# ------------------------------------------------------------------------------- resume


def test_a_resumed_report_keeps_the_earlier_members_expiry(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    one, two, three = (tmp_path / f"run{n}.json" for n in (1, 2, 3))
    assert invoke(running, "--report", str(one)).exit_code == 1  # the ambiguous twin
    first = {n: r for n, r in report_rows(one).items() if r["outcome"] == "provisioned"}
    assert first and all(r["expires_at"] for r in first.values())
    for earlier, later in ((one, two), (two, three)):
        result = invoke(running, "--resume", str(earlier), "--report", str(later))
        assert result.exit_code == 1, result.output
        rows = report_rows(later)
        for name, row in first.items():
            assert rows[name]["outcome"] == "skipped"
            assert rows[name]["reason"] == "already provisioned (by the run in run1.json)"
            assert rows[name]["expires_at"] == row["expires_at"]


BAR = re.compile(rb"\[[#.]{30}\] (\d+)/(\d+)")


def test_on_a_terminal_ctrl_c_leaves_the_bar_where_the_run_stopped(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """The bar is redrawn in place on a terminal (a pty here): after Ctrl-C it shows how far
    the run got, never the end, and what follows starts a line of its own."""
    running = start_sandbox(synthetic_tenant(100, 6), faults=FaultSettings(latency_ms=40))
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
    args = [sys.executable, "-m", "dgprov", *cli_args(running, "--concurrency", "2")]
    terminal = Terminal(args, child_environment(running, tmp_path / "cache"))
    try:
        deadline = time.monotonic() + 60
        while not any(int(m[1]) >= 10 for m in BAR.finditer(terminal.output)):
            left = deadline - time.monotonic()
            assert left > 0, terminal.output.decode(errors="replace")
            if select.select([terminal.master], [], [], left)[0]:
                chunk = os.read(terminal.master, 4096)
                assert chunk, terminal.output.decode(errors="replace")
                terminal.output += chunk
        terminal.process.send_signal(signal.SIGINT)
        status = terminal.finish(timeout=60)
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
    shown = terminal.output
    assert status == 1, shown.decode(errors="replace")
    draws = [int(m[1]) for m in BAR.finditer(shown)]
    assert draws and draws[-1] < 100, draws
    assert re.search(rb"\d/100\r?\n", shown)  # the bar's line ended where it stopped
    assert b"/100outcome" not in shown and re.search(rb"(?m)^outcome\s+members", shown)
