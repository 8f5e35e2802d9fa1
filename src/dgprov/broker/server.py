"""Serving the broker: bind, say where (one JSON line), run uvicorn, stop gracefully.

The socket is bound before the app runs so ``--listen HOST:0`` works and the printed
``broker_url`` is the real port. With ``--workers N`` the bound socket is shared by N forked
processes, each with its own event loop, clients and caches (POSIX only). SIGTERM or SIGINT
stops accepting, lets requests in flight finish (up to ``GRACE_SECONDS``), then closes the
clients: uvicorn's graceful shutdown, driven through the app's lifespan.

uvicorn serves HTTP/1.1 with h11 (httptools buffers headers without a bound), through
``connections.GuardedProtocol``: the TLS handshake, request-head deadlines, keep-alive timeout
and connection caps of ``config.connections``. uvicorn's own ``limit_concurrency`` is off: it
counted idle connections as requests; the app limits requests in flight instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from typing import TextIO

import uvicorn
from prometheus_client import Counter

from ..errors import UsageError
from .app import build_app
from .config import BrokerConfig, Listen
from .connections import protocol_class, tls_server_context
from .metrics import share_between_workers
from .service import Broker

GRACE_SECONDS = 10
READY_TIMEOUT_SECONDS = 30.0


def bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((listen.host, listen.port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"--listen {listen.host}:{listen.port}: cannot listen there ({exc.strerror}); "
            "choose another port, or 0 for a free one"
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def broker_url(config: BrokerConfig, sock: socket.socket) -> str:
    host, port = config.listen.host, sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{config.scheme}://{shown}:{port}"


def _server(config: BrokerConfig) -> uvicorn.Server:
    """One worker's server; raises OSError (ssl.SSLError) for TLS files it cannot serve with."""
    tls = tls_server_context(config.tls_cert, config.tls_key or "") if config.tls_cert else None
    broker = Broker(config)
    closed = Counter(
        "dgprov_broker_connections_closed",
        "Connections the broker closed or refused itself, by reason (head_timeout, "
        "idle_timeout, write_timeout, full, per_client, full_refused, per_client_refused, "
        "head_400, head_431).",
        ["reason"],
        registry=broker.metrics.registry,
    )
    limits = config.connections
    if not config.tls:  # loopback only, a proxy in front: every connection is the proxy's
        limits = replace(limits, max_per_client=0)
    return uvicorn.Server(
        uvicorn.Config(
            build_app(broker),
            lifespan="on",
            http=protocol_class(limits, tls, lambda reason: closed.labels(reason).inc()),
            ws="none",
            limit_concurrency=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
            # The protocol closes an idle connection itself, first; this is uvicorn's own timer.
            timeout_keep_alive=int(limits.idle_timeout + limits.head_timeout) + 1,
            server_header=False,
        )
    )


def _loaded_server(config: BrokerConfig) -> uvicorn.Server:
    """A server whose TLS files are already read: a wrong path, a key that does not match the
    certificate or a file that is not PEM is one line and exit 2, before anything listens."""
    try:
        server = _server(config)
        server.config.load()
    except OSError as exc:  # ssl.SSLError too
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise UsageError(
            f"--tls-cert {config.tls_cert} / --tls-key {config.tls_key}: cannot serve HTTPS "
            f"with them ({reason}); give a PEM certificate chain and its private key"
        ) from None
    return server


def _run(server: uvicorn.Server, sock: socket.socket) -> None:
    """One worker until SIGTERM/SIGINT. uvicorn catches the signal, shuts down gracefully and
    then raises it again for the handler it found installed: a quiet one, so a requested stop
    ends with status 0 rather than death by signal."""
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda signum, frame: None)
    asyncio.run(server.serve(sockets=[sock]))


def serve(config: BrokerConfig, out: TextIO = sys.stdout) -> int:
    """Run until stopped; the exit status (0 after a graceful stop)."""
    if config.workers > 1 and sys.platform == "win32":
        raise UsageError("--workers above 1 needs a POSIX system; run more replicas instead")
    server = _loaded_server(config)
    sock = bind(config.listen)
    out.write(json.dumps({"broker_url": broker_url(config, sock)}) + "\n")
    out.flush()
    if config.workers == 1:
        _run(server, sock)
        return 0
    if sys.platform == "win32":  # refused above, before anything was bound
        raise AssertionError("POSIX only")
    metrics_directory = tempfile.mkdtemp(prefix="dgprov-broker-metrics-")
    children = []
    for _ in range(config.workers):
        pid = os.fork()
        if pid == 0:  # a worker: serve until told to stop, never return into the parent's code
            code = 1
            try:
                share_between_workers(metrics_directory)
                _run(_server(config), sock)
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    for pid in children:
        _, wait_status = os.waitpid(pid, 0)
        status = status or os.waitstatus_to_exitcode(wait_status)
    shutil.rmtree(metrics_directory, ignore_errors=True)
    return 0 if status in (0, -signal.SIGTERM, -signal.SIGINT) else 1


@dataclass
class RunningBroker:
    """A broker serving from a thread of this process (the demo, tests)."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=GRACE_SECONDS + 5)


def start_in_thread(config: BrokerConfig) -> RunningBroker:
    """Start one worker in a background thread; return once it accepts requests."""
    config.check()
    sock = bind(config.listen)
    server = _server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="dgprov-broker", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        server.should_exit = True
        raise UsageError("the broker did not start; see the messages above")
    return RunningBroker(broker_url(config, sock), server, thread)
