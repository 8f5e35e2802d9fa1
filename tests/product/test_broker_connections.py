"""Connections an attacker holds open: idle TLS connections, many from one address, connections
that never finish their head. The broker keeps answering and closes them in the time it says.

Every connection here is a real TLS connection to a ``dgprov broker`` process on 127.0.0.1
(handshake done, then nothing sent, unless a test says otherwise).
"""

from __future__ import annotations

import contextlib
import re
import resource
import selectors
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
import pytest
from dgprov_sandbox.http_common import FaultSettings

from dgprov.broker.connection_limits import ConnectionLimits, client_key
from dgprov.broker.request_head import head_refusal
from dgprov.commands.broker import broker_command as broker_cli

from ..broker_fixtures import BrokerProcess, broker_process, broker_token
from ..conftest import REPO, Running, StartSandbox, example_tenant, trust
from .test_broker_options import refused, run_broker

IDLE_CONNECTIONS = 600
SHORT_HEAD_TIMEOUT = 2.0
# How much later than its deadline a loaded 2-core machine may close a connection.
CLOSE_SLACK_SECONDS = 5.0


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    """600 connections are 600 descriptors here (the broker has its own limit): raise the soft
    limit to the hard one for the test, and put it back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 4096)
    if wanted < 2 * IDLE_CONNECTIONS:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {2 * IDLE_CONNECTIONS}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def tls_extra(running: Running, *more: str) -> tuple[str, ...]:
    directory = Path(running.info["ca_bundle"]).parent
    return (
        "--tls-cert",
        str(directory / "server.pem"),
        "--tls-key",
        str(directory / "server.key"),
        *more,
    )


def port(broker: BrokerProcess) -> int:
    return urlsplit(broker.url).port or 0


def open_idle(
    running: Running,
    broker: BrokerProcess,
    count: int,
    source: str = "127.0.0.1",
    parallel: int = 8,
) -> list[ssl.SSLSocket]:
    """``count`` TLS connections with the handshake done and nothing sent, from ``source``,
    opened in order, ``parallel`` at a time (1: each accepted before the next)."""
    context = trust(running.info)

    def one(_: int) -> ssl.SSLSocket | None:
        raw = socket.create_connection(("127.0.0.1", port(broker)), 30, (source, 0))
        try:
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        except OSError:  # refused or closed already: the broker chose to
            raw.close()
            return None
        tls.setblocking(False)
        return tls

    with ThreadPoolExecutor(parallel) as pool:
        opened = list(pool.map(one, range(count)))
    return [sock for sock in opened if sock is not None]


def is_closed(sock: ssl.SSLSocket) -> bool:
    try:
        return sock.recv(1) == b""
    except ssl.SSLWantReadError:
        return False
    except OSError:  # reset
        return True


def wait_closed(socks: list[ssl.SSLSocket], seconds: float) -> list[ssl.SSLSocket]:
    """Wait up to ``seconds`` for the broker to close each socket; those still open."""
    deadline = time.monotonic() + seconds
    selector = selectors.DefaultSelector()
    for sock in socks:
        if not is_closed(sock):
            selector.register(sock, selectors.EVENT_READ)
    with selector:
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                if is_closed(key.fileobj):  # type: ignore[arg-type]
                    selector.unregister(key.fileobj)
        return [key.fileobj for key in selector.get_map().values()]  # type: ignore[misc]


def still_open(socks: list[ssl.SSLSocket]) -> list[ssl.SSLSocket]:
    """The sockets the broker has not closed, once what it sent so far has arrived."""
    return wait_closed(socks, 0.5)


@contextlib.contextmanager
def closing_all(socks: list[ssl.SSLSocket]) -> Iterator[list[ssl.SSLSocket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def answered(running: Running, broker: BrokerProcess, token: str, seconds: float) -> None:
    """``/healthz`` and a valid provisioning request, each answered within ``seconds``."""
    context = trust(running.info)
    health = httpx.get(f"{broker.url}/healthz", verify=context, timeout=seconds)
    assert health.status_code == 200, health.text
    response = httpx.post(
        f"{broker.url}/v1/provisioning",
        headers={"Authorization": f"Bearer {token}"},
        verify=context,
        timeout=seconds,
    )
    assert response.status_code == 200, response.text


def test_600_idle_tls_connections_do_not_stop_the_broker(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    token = broker_token(running, "jdoe@contoso.example")
    extra = tls_extra(
        running, "--head-timeout", str(SHORT_HEAD_TIMEOUT), "--max-connections-per-client", "0"
    )
    with broker_process(running, *extra) as broker:
        started = time.monotonic()
        with closing_all(open_idle(running, broker, IDLE_CONNECTIONS)) as idle:
            assert len(idle) == IDLE_CONNECTIONS  # all accepted: 600 is within the limit
            answered(running, broker, token, seconds=2.0)
            # Each was accepted before ``time.monotonic()``: its deadline has passed by then.
            left = wait_closed(idle, SHORT_HEAD_TIMEOUT + CLOSE_SLACK_SECONDS)
            assert left == [], f"{len(left)} idle connections still open"
            assert time.monotonic() - started < 60
        metrics = httpx.get(f"{broker.url}/metrics", verify=trust(running.info)).text
    closed = re.search(
        r'dgprov_broker_connections_closed_total\{reason="head_timeout"\} (\S+)', metrics
    )
    assert closed and float(closed.group(1)) >= IDLE_CONNECTIONS


def test_past_the_connection_limit_the_longest_idle_give_way(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    token = broker_token(running, "jdoe@contoso.example")
    extra = tls_extra(
        running,
        "--max-connections",
        "100",
        "--max-requests",
        "50",
        "--max-connections-per-client",
        "0",
    )
    with (
        broker_process(running, *extra) as broker,
        closing_all(open_idle(running, broker, 300)) as idle,
    ):
        answered(running, broker, token, seconds=2.0)
        left = still_open(idle)
        assert 0 < len(left) <= 100
        # The newest stayed: the oldest were closed first.
        assert set(left) <= set(idle[-110:])


def test_one_address_holds_at_most_its_share(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    extra = tls_extra(running, "--max-connections-per-client", "5")
    with (
        broker_process(running, *extra) as broker,
        closing_all(open_idle(running, broker, 12, parallel=1)) as mine,
        closing_all(open_idle(running, broker, 3, source="127.0.0.2", parallel=1)) as theirs,
    ):
        left = still_open(mine)
        assert left == mine[-5:]  # the address's own oldest gave way
        assert still_open(theirs) == theirs  # another address is not touched
        # This address can still be served: its new connection replaces an idle one.
        health = httpx.get(f"{broker.url}/healthz", verify=trust(running.info), timeout=10)
        assert health.status_code == 200
        assert len(still_open(mine)) == 4


def test_a_request_in_progress_is_never_closed_to_make_room(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant(), faults=FaultSettings(latency_ms=700))
    token = broker_token(running, "jdoe@contoso.example")
    extra = tls_extra(running, "--max-connections-per-client", "3")
    with broker_process(running, *extra) as broker, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(
            httpx.post,
            f"{broker.url}/v1/provisioning",
            headers={"Authorization": f"Bearer {token}"},
            verify=trust(running.info),
            timeout=60,
        )
        # Its mapping read Defguard's users (the warm-up reads only the group): Graph and the
        # token itself are still ahead of it, each 700 ms away.
        deadline = time.monotonic() + 30
        while set(running.sandbox.core_requests) <= {"GET /api/v1/group-info"}:
            assert time.monotonic() < deadline and not answer.done(), "no request reached Defguard"
            time.sleep(0.01)
        with closing_all(open_idle(running, broker, 10)) as idle:
            assert len(still_open(idle)) == 2  # the busy connection keeps its place
            assert answer.result(timeout=60).status_code == 200


def read_until_closed(sock: ssl.SSLSocket, seconds: float) -> tuple[bytes, bool]:
    """What the broker sends until it closes ``sock`` (up to ``seconds``), and whether it did."""
    deadline = time.monotonic() + seconds
    received = b""
    sock.setblocking(True)
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        except OSError:  # reset
            return received, True
        if not data:
            return received, True
        received += data
    return received, False


def test_a_head_sent_a_byte_at_a_time_is_cut_off(start_sandbox: StartSandbox) -> None:
    """The head deadline runs from the accept; bytes arriving do not extend it."""
    running = start_sandbox(example_tenant())
    with broker_process(running, *tls_extra(running, "--head-timeout", "1")) as broker:
        (sock,) = open_idle(running, broker, 1)
        with closing_all([sock]):
            deadline = time.monotonic() + 1 + CLOSE_SLACK_SECONDS
            answer = b""
            for byte in b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-Slow: " + b"a" * 200:
                try:
                    sock.send(bytes([byte]))
                    answer += sock.recv(4096)
                except ssl.SSLWantReadError:
                    pass
                except OSError:  # reset: closed without an answer
                    break
                if answer or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # the pace of the attack, not a wait for the broker
            rest, closed = read_until_closed(sock, CLOSE_SLACK_SECONDS)
            assert closed
            assert (answer + rest).startswith(b"HTTP/1.1 408 "), (answer + rest)[:60]


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(
    start_sandbox: StartSandbox,
) -> None:
    running = start_sandbox(example_tenant())
    with broker_process(running, *tls_extra(running, "--idle-timeout", "1")) as broker:
        (sock,) = open_idle(running, broker, 1)
        with closing_all([sock]):
            sock.setblocking(True)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n")
            sock.settimeout(10)
            first = sock.recv(4096)
            rest, closed = read_until_closed(sock, 1 + CLOSE_SLACK_SECONDS)
            assert closed
            # One answer, then closed without a word: nothing more was asked.
            assert (first + rest).startswith(b"HTTP/1.1 200 ")
            assert (first + rest).endswith(b'{"status":"ok"}')


def documented_defaults(text: str) -> dict[str, str]:
    """The options table of docs/broker.md: option -> its default, as written."""
    rows = re.findall(r"^\| `(--[a-z-]+)[^`]*` \| `?([^`|]+?)`? \|", text, flags=re.MULTILINE)
    return dict(rows)


def test_the_documented_limits_are_the_code_defaults() -> None:
    limits = ConnectionLimits()
    expected = {
        "--head-timeout": limits.head_timeout,
        "--idle-timeout": limits.idle_timeout,
        "--write-timeout": limits.write_timeout,
        "--max-connections": limits.max_connections,
        "--max-requests": limits.max_requests,
        "--max-connections-per-client": limits.max_per_client,
    }
    options: dict[str, Any] = {
        parameter.opts[0]: parameter.default
        for parameter in broker_cli.params
        if isinstance(parameter, click.Option)
    }
    documented = documented_defaults((REPO / "docs" / "broker.md").read_text("utf-8"))
    manifest = (REPO / "deploy" / "kubernetes.yaml").read_text("utf-8")
    for option, value in expected.items():
        assert options[option] == value, option
        assert float(documented[option]) == value, option
        assert f"{option}={value:g}" in manifest, option


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--max-connections", "100", "--max-requests", "100"), "give more than --max-requests"),
        (("--head-timeout", "0"), "'--head-timeout': 0.0 is not in the range 0<x<=3600"),
        (("--max-connections-per-client", "-1"), "'--max-connections-per-client': -1 is not"),
    ],
)
def test_limits_that_cannot_work_are_refused_before_listening(
    start_sandbox: StartSandbox, extra: tuple[str, ...], words: str
) -> None:
    refused(run_broker(start_sandbox(example_tenant()), *extra), words)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_64(host: str, key: str) -> None:
    assert client_key(host) == key


@pytest.mark.parametrize(
    ("buffer", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" + b"body\nwith\n bare LFs", None),
        (b"GET / HTTP/1.1\r\nHost: a\r", None),  # the LF is on its way
        (b"GET / HTTP/1.1\r\nHost: a\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: a\n", 400),  # refused before the head is complete
        (b"GET / HTTP/1.1\r\nHost: a\r\n ", 400),
        (b"GET / HTTP/1.1\rHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (16 * 1024), 431),  # unfinished, above the limit
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (16 * 1024 - 23) + b"\r\n\r\n", None),  # 16 KiB
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (16 * 1024 - 22) + b"\r\n\r\n", 431),
    ],
)
def test_a_head_is_judged_on_its_bytes(buffer: bytes, status: int | None) -> None:
    refusal = head_refusal(buffer)
    assert (refusal.status if refusal else None) == status
