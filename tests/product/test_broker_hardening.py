"""What an anonymous caller can make the broker spend: memory per connection, Defguard requests
per probe, authority fetches per junk token."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest

from dgprov.broker.service import Broker
from dgprov.broker.tokens import KeySet, KeysUnavailable

from ..broker_fixtures import broker_process
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
        await keys.aclose()
        return found

    assert asyncio.run(lookups()) == ["the tenant's key"] * 10
    assert 1 <= len(asked) <= 2  # tried once (and its retry), then waited for the floor
