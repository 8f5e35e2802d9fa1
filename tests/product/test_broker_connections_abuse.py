"""Clients that use the broker's connections against it: answers never read, a crowd of
addresses that churns connects, requests framed two ways at once. Every connection is a real
one to a ``dgprov broker`` process on 127.0.0.1 (TLS unless a test says otherwise)."""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from dgprov.broker.connection_limits import ConnectionLimits, ConnectionRegistry
from dgprov.broker.connections import tls_server_context

from ..broker_fixtures import BrokerProcess, broker_process, broker_token
from ..conftest import Running, StartSandbox, example_tenant, trust
from .test_broker_connections import (
    CLOSE_SLACK_SECONDS,
    answered,
    closing_all,
    open_idle,
    port,
    read_until_closed,
    tls_extra,
)

PIPELINED = b"GET /metrics HTTP/1.1\r\nHost: broker\r\n\r\n" * 20_000  # 780 KB of requests
MAX_BURSTS = 16
TCP_ESTABLISHED = 1  # linux/tcp_states.h


def non_reader(running: Running, broker: BrokerProcess, source: str = "127.0.0.1") -> ssl.SSLSocket:
    """A TLS connection that pipelines requests until the broker stops taking them, with a
    4 KiB receive buffer, and reads none of the answers."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.bind((source, 0))
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port(broker)))
        tls = trust(running.info).wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise
    tls.settimeout(1)  # a second without progress: the broker stopped reading
    try:
        for _ in range(MAX_BURSTS):  # the kernel's buffers take the first ones
            tls.sendall(PIPELINED)
    except TimeoutError:
        return tls
    except BaseException:
        tls.close()
        raise
    tls.close()
    raise AssertionError(f"the broker read {MAX_BURSTS} x 780 KB of requests it did not answer")


def non_readers(running: Running, broker: BrokerProcess, count: int) -> list[ssl.SSLSocket]:
    socks: list[ssl.SSLSocket] = []
    try:
        for _ in range(count):
            socks.append(non_reader(running, broker))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def still_established(socks: list[ssl.SSLSocket], seconds: float) -> list[ssl.SSLSocket]:
    """Wait up to ``seconds`` for the broker to close (or reset) each socket, without reading
    what it sent (reading would let it go on); those still open. Linux: the kernel's TCP state."""
    deadline = time.monotonic() + seconds
    while True:
        left = [sock for sock in socks if tcp_state(sock) == TCP_ESTABLISHED]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)  # polling the condition


def tcp_state(sock: ssl.SSLSocket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def closed_total(running: Running, broker: BrokerProcess, reason: str) -> float:
    text = httpx.get(f"{broker.url}/metrics", verify=trust(running.info), timeout=10).text
    found = re.search(rf'dgprov_broker_connections_closed_total\{{reason="{reason}"\}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_answers_nobody_reads_hold_no_request_slot(start_sandbox: StartSandbox) -> None:
    """20 clients that pipeline requests and read nothing, against 20 request slots: a valid
    request is still answered (their next requests wait without a slot)."""
    running = start_sandbox(example_tenant())
    token = broker_token(running, "jdoe@contoso.example")
    extra = tls_extra(
        running,
        "--max-requests",
        "20",
        "--max-connections",
        "40",
        "--max-connections-per-client",
        "0",
    )
    with (
        broker_process(running, *extra) as broker,
        closing_all(non_readers(running, broker, 20)),
    ):
        answered(running, broker, token, seconds=2.0)


def test_a_client_that_reads_nothing_is_closed_after_the_write_timeout(
    start_sandbox: StartSandbox,
) -> None:
    running = start_sandbox(example_tenant())
    extra = tls_extra(running, "--write-timeout", "1", "--idle-timeout", "60")
    with broker_process(running, *extra) as broker:
        with closing_all(non_readers(running, broker, 5)) as socks:
            left = still_established(socks, 1 + CLOSE_SLACK_SECONDS)
            assert left == [], f"{len(left)} connections that read nothing are still open"
        assert closed_total(running, broker, "write_timeout") >= 5


CHURN_PER_SECOND = 320
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: broker\r\n"  # the rest after a pause


def test_a_head_on_its_way_outlasts_a_crowd_of_other_addresses(
    start_sandbox: StartSandbox,
) -> None:
    """The table fills with connections from 6 other addresses: theirs give way, not the
    one connection of the address whose head is still arriving."""
    running = start_sandbox(example_tenant())
    extra = tls_extra(running, "--max-connections", "30", "--max-requests", "10")
    with broker_process(running, *extra) as broker:
        (slow,) = open_idle(running, broker, 1)
        with closing_all([slow]):
            slow.setblocking(True)
            slow.sendall(SLOW_HEAD)
            crowd: list[ssl.SSLSocket] = []
            with closing_all(crowd):
                for source in range(2, 8):
                    crowd += open_idle(running, broker, 10, source=f"127.0.0.{source}", parallel=1)
                slow.sendall(b"\r\n")
                answer, _ = read_until_closed(slow, CLOSE_SLACK_SECONDS)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]


def slow_request(running: Running, broker: BrokerProcess) -> bytes:
    """A request whose head takes half a second to arrive: the start of its answer."""
    try:
        raw = socket.create_connection(("127.0.0.1", port(broker)), 10)
    except OSError as exc:
        return repr(exc).encode()
    with raw:
        try:
            tls = trust(running.info).wrap_socket(raw, server_hostname="127.0.0.1")
        except OSError as exc:  # closed to make room for the churn
            return repr(exc).encode()
        try:
            tls.sendall(SLOW_HEAD)
            time.sleep(0.5)  # the client's slow link, not a wait for the broker
            tls.sendall(b"\r\n")
            return read_until_closed(tls, CLOSE_SLACK_SECONDS)[0][:12]
        except OSError as exc:
            return repr(exc).encode()
        finally:
            tls.close()


@contextmanager
def churning(broker: BrokerProcess, sources: list[str], held: int) -> Iterator[list[int]]:
    """Plain TCP connects from ``sources`` in a loop, about ``CHURN_PER_SECOND``, each address
    holding its ``held`` newest (nothing sent); yields the count of connects made so far.
    (Paced: a flood that takes all of the broker's CPU is a different attack, one a per-address
    cap cannot answer; this one only turns the connection table over, 8 times a second.)"""
    stop = threading.Event()
    made = [0]

    def churn() -> None:
        queues: dict[str, deque[socket.socket]] = {source: deque() for source in sources}
        try:
            while not stop.is_set():
                for source, queue in queues.items():
                    sock = socket.socket()
                    try:
                        sock.settimeout(2)
                        sock.bind((source, 0))
                        sock.connect(("127.0.0.1", port(broker)))
                    except OSError:
                        sock.close()
                        continue
                    made[0] += 1
                    time.sleep(1 / CHURN_PER_SECOND)  # the attack's pace
                    queue.append(sock)
                    if len(queue) > held:
                        queue.popleft().close()
        finally:
            for queue in queues.values():
                for sock in queue:
                    sock.close()

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        stop.set()
        thread.join(30)


def test_a_slow_client_is_served_while_other_addresses_churn(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    extra = tls_extra(running, "--max-connections", "40", "--max-requests", "10")
    sources = [f"127.0.0.{last}" for last in range(2, 10)]
    with broker_process(running, *extra) as broker, churning(broker, sources, 10) as made:
        deadline = time.monotonic() + 30
        while made[0] < 200:  # the table is full and turning over
            assert time.monotonic() < deadline, f"only {made[0]} connects"
            time.sleep(0.01)
        answers = [slow_request(running, broker) for _ in range(5)]
        assert answers == [b"HTTP/1.1 200"] * 5
        assert made[0] > 200


class Held:
    """A connection as the registry sees it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True

    def __repr__(self) -> str:
        return self.name


def test_kept_alive_connections_give_way_before_heads_on_their_way() -> None:
    registry = ConnectionRegistry(ConnectionLimits(max_connections=4, max_requests=1))
    arriving, kept, crowd = Held("arriving"), Held("kept"), [Held(f"crowd{i}") for i in range(2)]
    registry.admit(arriving, "192.0.2.1")
    registry.admit(kept, "192.0.2.1")
    registry.idle(kept)  # answered, kept alive: the first to go, though the newer
    for each in crowd:
        registry.admit(each, "192.0.2.2")
    assert registry.admit(Held("new"), "192.0.2.3")
    assert [c for c in (arriving, kept, *crowd) if c.evicted] == [kept]
    # No kept-alive connection left: an arriving one of the address holding the most goes.
    assert registry.admit(Held("newer"), "192.0.2.3")
    assert [c for c in (arriving, *crowd) if c.evicted] == [crowd[0]]


def test_a_busy_connection_is_never_chosen() -> None:
    registry = ConnectionRegistry(ConnectionLimits(max_connections=2, max_requests=1))
    first, second = Held("first"), Held("second")
    for each in (first, second):
        registry.admit(each, "192.0.2.1")
        registry.busy(each)
    assert not registry.admit(Held("new"), "192.0.2.2")
    registry.arriving(first)  # its next head began
    assert registry.admit(Held("new"), "192.0.2.2")
    assert (first.evicted, second.evicted) == (True, False)
    assert len(registry) == 2


FRAMED_TWICE = [
    b"POST /healthz HTTP/1.1\r\nHost: broker\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: broker\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: broker\r\nContent-Length: 0, 0\r\n\r\n",
]


def test_a_request_framed_two_ways_is_refused_and_closed(start_sandbox: StartSandbox) -> None:
    """Each is followed by a second request, which a proxy trusting the other framing would
    see as part of the body, or the other way round: the broker answers neither."""
    running = start_sandbox(example_tenant())
    with broker_process(running, *tls_extra(running, "--idle-timeout", "30")) as broker:
        for request in FRAMED_TWICE:
            (sock,) = open_idle(running, broker, 1)
            with closing_all([sock]):
                sock.setblocking(True)
                sock.sendall(request + b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n")
                answer, closed = read_until_closed(sock, CLOSE_SLACK_SECONDS)
            assert re.findall(rb"HTTP/1\.1 \d{3}", answer) == [b"HTTP/1.1 400"], answer[:200]
            assert b"send exactly one of them" in answer
            assert closed


def test_the_tls_context_refuses_renegotiation(start_sandbox: StartSandbox) -> None:
    """A TLS 1.2 client could otherwise ask for handshake after handshake on one connection,
    each a private-key operation for the broker, outside every deadline."""
    directory = Path(start_sandbox(example_tenant()).info["ca_bundle"]).parent
    context = tls_server_context(str(directory / "server.pem"), str(directory / "server.key"))
    assert context.options & ssl.OP_NO_RENEGOTIATION
