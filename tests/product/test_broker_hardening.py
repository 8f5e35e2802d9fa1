"""What an anonymous caller can make the broker spend: memory per connection, Defguard requests
per probe, authority fetches per junk token."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from dgprov.broker.audit import AuditWriter
from dgprov.broker.service import Broker
from dgprov.broker.tokens import KeySet, KeysUnavailable

from ..broker_fixtures import broker_command, broker_environment, broker_process, broker_token
from ..conftest import StartSandbox, example_tenant


def test_an_endless_request_head_is_cut_off(start_sandbox: StartSandbox) -> None:
    """h11 bounds an unfinished head (16 KiB); a parser without a bound would buffer it all."""
    running = start_sandbox(example_tenant())
    with broker_process(running) as broker:
        address = urlsplit(broker.url)
        with socket.create_connection(("127.0.0.1", address.port or 0), timeout=10) as sock:
            sock.sendall(b"POST /v1/provisioning HTTP/1.1\r\nHost: broker\r\nX-Pad: ")
            answer = b""
            with contextlib.suppress(OSError):  # reset while still sending: refused too
                for _ in range(64):  # 4 MiB, never ending the header line
                    sock.sendall(b"a" * 65536)
                answer = sock.recv(4096)
        assert not answer.startswith((b"HTTP/1.1 2", b"HTTP/1.1 401")), answer[:80]
        assert broker.get("/healthz").status_code == 200


class CountingDefguard:
    def __init__(self) -> None:
        self.calls = 0

    async def group(self, name: str) -> Any:
        self.calls += 1
        await asyncio.sleep(0.05)  # a Defguard taking its time, while more probes arrive
        return None


class LoadedKeys:
    loaded = True


def test_a_crowd_of_probes_asks_defguard_once() -> None:
    config = SimpleNamespace(rate_window_seconds=60.0, token_lifetime="1h", group_name="vpn-users")
    broker = Broker(config, audit=lambda line: None)  # type: ignore[arg-type]
    defguard = CountingDefguard()
    broker.defguard = defguard  # type: ignore[assignment]
    broker.keys = LoadedKeys()  # type: ignore[assignment]

    async def crowd() -> list[str | None]:
        return await asyncio.gather(*(broker.readiness() for _ in range(50)))

    answers = asyncio.run(crowd())
    assert answers == [None] * 50
    assert defguard.calls == 1


@pytest.fixture
def failing_authority() -> Iterator[tuple[str, list[str]]]:
    """An authority that answers 503 to everything, and the paths it was asked for."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tenant", asked
    finally:
        server.shutdown()
        server.server_close()


def failing_keys(url: str) -> KeySet:
    return KeySet(
        url, ca_bundle=None, refetch_floor=30.0, timer=lambda *_: contextlib.nullcontext()
    )


def test_junk_tokens_do_not_make_a_failing_authority_busier(
    failing_authority: tuple[str, list[str]],
) -> None:
    url, asked = failing_authority
    keys = KeySet(
        url, ca_bundle=None, refetch_floor=30.0, timer=lambda *_: contextlib.nullcontext()
    )

    async def twenty_lookups() -> int:
        refused = 0
        for _ in range(20):
            try:
                await keys.key("forged-kid")
            except KeysUnavailable:
                refused += 1
        await keys.aclose()
        return refused

    assert asyncio.run(twenty_lookups()) == 20
    first_attempt = len(asked)
    assert 1 <= first_attempt <= 2  # one fetch, retried once by its policy, then the floor


def test_a_day_old_key_set_is_kept_while_the_authority_is_down(
    failing_authority: tuple[str, list[str]],
) -> None:
    url, asked = failing_authority
    keys = KeySet(
        url, ca_bundle=None, refetch_floor=30.0, timer=lambda *_: contextlib.nullcontext()
    )
    keys.keys = {"kid-1": "the tenant's key"}
    keys._fetched_at = time.monotonic() - 25 * 3600  # older than the daily check

    async def lookups() -> list[Any]:
        found = [await keys.key("kid-1") for _ in range(10)]
        deadline = time.monotonic() + 30
        while keys.refreshing:  # the refresh runs behind the lookups: let it try, then close
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        found += [await keys.key("kid-1") for _ in range(10)]  # within the floor: no new try
        await keys.aclose()
        return found

    assert asyncio.run(lookups()) == ["the tenant's key"] * 20
    assert 1 <= len(asked) <= 2  # tried once (and its retry), then waited for the floor


def exchange(broker_url: str, request: bytes) -> bytes:
    """Send ``request`` on a new connection; everything the broker answers until it closes
    (or 10 s pass)."""
    address = urlsplit(broker_url)
    answer = b""
    with (
        socket.create_connection(("127.0.0.1", address.port or 0), timeout=10) as sock,
        contextlib.suppress(OSError),  # a reset after the answer
    ):
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        while data := sock.recv(65536):
            answer += data
    return answer


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n"
BODY = b'{"x": "' + b"\n" * 100 + b' folded"}'
WITH_BODY = (
    b"POST /v1/provisioning HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
) + BODY
CHUNKED = (
    b"POST /v1/provisioning HTTP/1.1\r\nHost: broker\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nab\ncd\r\n0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (
            b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-Pad: " + b"a" * 100 * 1024 + b"\r\n\r\n",
            431,
        ),
        (b"GET /healthz HTTP/1.1\nHost: broker\n\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: broker\nX-A: 1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-A: 1\r\n\tfolded\r\n\r\n", 400),
    ],
    ids=["complete-100KiB-head", "bare-LF", "one-bare-LF", "folded-space", "folded-tab"],
)
def test_heads_a_proxy_could_read_otherwise_are_refused(
    start_sandbox: StartSandbox, request_head: bytes, status: int
) -> None:
    running = start_sandbox(example_tenant())
    with broker_process(running) as broker:
        alone = exchange(broker.url, request_head)
        assert alone.startswith(b"HTTP/1.1 %d " % status), alone[:80]
        assert b"connection: close" in alone.lower()
        # Kept alive and pipelined behind requests with bodies (whose bytes are not a head,
        # bare LFs and all): those are answered, then this head is refused.
        behind = exchange(broker.url, HEALTHZ + WITH_BODY + CHUNKED + request_head)
        statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", behind)]
        assert statuses == [200, 401, 401, status], behind[:400]
        assert broker.get("/healthz").status_code == 200


def test_the_audit_writer_never_blocks_and_never_drops_a_kept_line() -> None:
    """A log that takes nothing: queuing returns at once, junk lines beyond the bound are
    dropped and counted, kept lines (Defguard was asked) all reach the log once it moves."""
    stuck, moving = threading.Event(), threading.Event()
    written: list[str] = []

    def stuck_log(line: str) -> None:
        stuck.set()
        moving.wait()
        written.append(line)

    drops: list[None] = []
    writer = AuditWriter(
        stuck_log, queue_lines=5, on_drop=lambda: drops.append(None), wait_seconds=0.01
    )

    async def queue_all() -> None:
        await writer.write("junk 0", keep=False)
        # The first line is being written, and the log holds it.
        assert await asyncio.to_thread(stuck.wait, 30)
        for number in range(1, 40):
            await writer.write(f"junk {number}", keep=False)
            if number % 4 == 0:
                await writer.write(f"kept {number}", keep=True)

    asyncio.run(queue_all())
    assert not moving.is_set() and written == []  # all queued while the log took nothing
    moving.set()
    assert writer.close(timeout=30)
    kept = [line for line in written if line.startswith("kept")]
    assert kept == [f"kept {number}" for number in range(4, 40, 4)]
    junk = [line for line in written if line.startswith("junk")]
    assert len(junk) == 5 + 1  # the bound, and the one being written when the log stuck
    assert len(drops) == 40 - len(junk)
    (report,) = [json.loads(line) for line in written if line.startswith("{")]
    assert report["audit_lines_dropped"] == len(drops)


def test_a_stuck_audit_log_does_not_stop_the_broker(start_sandbox: StartSandbox) -> None:
    """The broker's stderr is a pipe nobody reads: once it is full, requests are still
    answered, and the provisioned request's line is there when the pipe is read."""
    running = start_sandbox(example_tenant())
    token = broker_token(running, "jdoe@contoso.example")
    process = subprocess.Popen(
        broker_command(running),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=broker_environment(running),
    )
    try:
        assert process.stdout is not None
        url = json.loads(process.stdout.readline())["broker_url"]
        junk = {"Authorization": "Bearer junk"}
        stopped = threading.Event()
        with httpx.Client(timeout=10) as client:

            def refused(_: int) -> int:
                if stopped.is_set():  # one went unanswered: no need to wait for the rest
                    return 0
                try:
                    return client.post(f"{url}/v1/provisioning", headers=junk).status_code
                except httpx.TimeoutException:
                    stopped.set()
                    return 0

            # About 300 bytes a line: 1,000 lines are several times a pipe's 64 KiB.
            with ThreadPoolExecutor(32) as pool:
                assert set(pool.map(refused, range(1000))) == {401}
            assert client.get(f"{url}/healthz").status_code == 200
            granted = client.post(
                f"{url}/v1/provisioning", headers={"Authorization": f"Bearer {token}"}
            )
            assert granted.status_code == 200, granted.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith('{"time"')]
    outcomes = [line.get("outcome") for line in lines]
    assert outcomes.count("provisioned") == 1
    assert outcomes.count("invalid_token") == 1000  # fewer than the queue holds: none dropped
