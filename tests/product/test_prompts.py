"""The ``[y/N]`` confirmation on a real terminal (a pty): Ctrl-C there ends the run at once.

Run as a person would: ``dgprov generate-tokens`` and ``dgprov sync`` in a child process whose
terminal is a pseudo-terminal, against the sandbox; SIGINT is what the terminal sends for
Ctrl-C.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import Running, StartSandbox
from .test_generate_tokens import cli_args, environment

DEADLINE_SECONDS = 30.0  # generous: the child imports dgprov and signs in first


class Terminal:
    """A child process on a pty; everything it writes, read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.output = b""

    def read_until(self, wanted: bytes, timeout: float = DEADLINE_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {wanted!r} in {self.output.decode(errors='replace')}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the child ended before {wanted!r}: {self.output!r}"
                self.output += chunk

    def finish(self, timeout: float) -> int:
        """The exit status, within ``timeout``; the rest of the output read."""
        status = self.process.wait(timeout)
        while select.select([self.master], [], [], 0.1)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        os.close(self.master)
        return status


def issued_tokens(running: Running) -> list[dict[str, object]]:
    """Every enrollment token the sandbox's Defguard has issued, to anyone."""
    tokens: list[dict[str, object]] = running.anonymous.get("/_sandbox/tokens").json()["tokens"]
    return tokens


def child_environment(running: Running, cache: Path) -> dict[str, str]:
    return {**os.environ, **environment(running, cache), "TERM": "dumb"}


@pytest.mark.parametrize("command", ["generate-tokens", "sync"])
def test_ctrl_c_at_the_confirmation_ends_the_run_at_once(
    start_sandbox: StartSandbox, tmp_path: Path, command: str
) -> None:
    running = start_sandbox()
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
    args = [word for word in cli_args(running) if word != "--yes"]  # ask, on the terminal
    args[0] = command
    if command == "sync":
        args += ["--state", str(tmp_path / "state.json")]
    lock = tmp_path / "dgprov.lock"
    env = {**child_environment(running, tmp_path / "cache"), "DGPROV_LOCK_FILE": str(lock)}
    terminal = Terminal([sys.executable, "-m", "dgprov", *args], env)
    try:
        terminal.read_until(b"[y/N]")
        asked_at = time.monotonic()
        terminal.process.send_signal(signal.SIGINT)  # what the terminal sends for Ctrl-C
        status = terminal.finish(timeout=10)
        ended_after = time.monotonic() - asked_at
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
    shown = terminal.output.decode(errors="replace")
    assert status == 1, shown
    assert f"dgprov {command}: error: cancelled at the confirmation; nothing was changed" in shown
    assert "Aborted!" not in shown and "Traceback" not in shown
    assert ended_after < 5, f"{ended_after:.1f} s after Ctrl-C"  # at once, not at the next Enter
    assert issued_tokens(running) == []
    # The lock went with the run: the next one may start.
    rerun = subprocess.run(
        [sys.executable, "-m", "dgprov", *args, "--dry-run"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rerun.returncode == 1, rerun.stderr  # the ambiguous twin; a held lock would be 2


@pytest.mark.parametrize(("answer", "agreed"), [(b"y\n", True), (b"n\n", False), (b"\n", False)])
def test_the_answer_typed_at_the_confirmation_decides(
    start_sandbox: StartSandbox, tmp_path: Path, answer: bytes, agreed: bool
) -> None:
    running = start_sandbox()
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
    args = [word for word in cli_args(running) if word != "--yes"]
    env = {**child_environment(running, tmp_path / "cache")}
    env["DGPROV_LOCK_FILE"] = str(tmp_path / "dgprov.lock")
    terminal = Terminal([sys.executable, "-m", "dgprov", *args], env)
    try:
        terminal.read_until(b"[y/N]")
        os.write(terminal.master, answer)
        status = terminal.finish(timeout=60)
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
    cancelled = b"cancelled at the confirmation; nothing was changed" in terminal.output
    if agreed:
        assert not cancelled and issued_tokens(running), terminal.output
    else:
        assert status == 1 and cancelled and not issued_tokens(running), terminal.output
