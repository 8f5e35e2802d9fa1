"""``dgprov broker`` against a running sandbox, for the broker's tests and the client's.

``broker_process(running)`` starts the real command in its own process on 127.0.0.1 port 0
(secrets through the environment, as a deployment passes them), waits for its ``broker_url``
line and yields a ``BrokerProcess``; at the end it stops it with SIGTERM and checks the stop
was graceful (exit 0). Everything it wrote is kept for the tests that look for leaked secrets.

``broker_token(running, upn)`` signs ``upn`` in through MSAL's device code for the broker's
scope, as ``fetch-config --source broker`` does.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .conftest import Running, sign_in

READY_SECONDS = 30.0
STOP_SECONDS = 30.0


@dataclass
class BrokerProcess:
    url: str
    process: subprocess.Popen[str]
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    def post(self, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.post(f"{self.url}/v1/provisioning", headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30, **kwargs)

    def output(self) -> str:
        """Everything the broker printed so far, stdout and stderr."""
        return "\n".join(self.stdout_lines) + "\n" + self.stderr_path.read_text("utf-8")

    def audit_lines(self) -> list[dict[str, Any]]:
        lines = self.stderr_path.read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"time"')]


def broker_command(running: Running, *extra: str) -> list[str]:
    """The command line that serves the sandbox's tenant and group ``vpn-users``."""
    info = running.info
    return [
        sys.executable,
        "-m",
        "dgprov",
        "broker",
        "--url",
        info["defguard_url"],
        "--group-name",
        info.get("group_name", "vpn-users"),
        "--tenant",
        info["tenant_id"],
        "--client-id",
        info["broker_client_id"],
        "--authority",
        info["authority_url"],
        "--graph-url",
        info["graph_url"],
        "--ca-bundle",
        info["ca_bundle"],
        "--listen",
        "127.0.0.1:0",
        "--allowed-client-id",
        info["client_id"],
        *extra,
    ]


def broker_environment(running: Running) -> dict[str, str]:
    return {
        **os.environ,
        "DEFGUARD_API_TOKEN": running.info["api_token"],
        "DGPROV_CLIENT_SECRET": running.info["broker_client_secret"],
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def broker_process(
    running: Running,
    *extra: str,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[BrokerProcess]:
    """The broker serving ``running``'s tenant, stopped (SIGTERM, exit 0 expected) at the end;
    ``env`` adds to (or changes) ``broker_environment``."""
    with tempfile.TemporaryDirectory(prefix="dgprov-broker-") as directory:
        stderr_path = Path(directory) / "stderr"
        with stderr_path.open("w", encoding="utf-8") as stderr:
            process = subprocess.Popen(
                command or broker_command(running, *extra),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**broker_environment(running), **(env or {})},
            )
        try:
            assert process.stdout is not None
            selector = selectors.DefaultSelector()
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(READY_SECONDS)
            line = process.stdout.readline() if ready else ""
            assert line, f"the broker printed nothing: {stderr_path.read_text('utf-8')}"
            broker = BrokerProcess(json.loads(line)["broker_url"], process, stderr_path, [line])
            yield broker
        finally:
            process.send_signal(signal.SIGTERM)
            rest, _ = process.communicate(timeout=STOP_SECONDS)
        broker.stdout_lines.append(rest)
        assert process.returncode == 0, broker.output()


def broker_token(running: Running, upn: str) -> str:
    """An access token for the broker, as MSAL obtains it for ``upn`` (device code)."""
    return sign_in(running, upn, [running.info["broker_scope"]])
