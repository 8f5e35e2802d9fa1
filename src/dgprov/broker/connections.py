"""The broker's HTTP/1.1 connections: uvicorn's h11 protocol with deadlines, a connection
registry, its own TLS handshake and strict request heads.

uvicorn times out only a kept-alive connection, and only until its next byte; a connection
that completes the TLS handshake and sends nothing is held forever and counts toward
``limit_concurrency``, so a few hundred of them made the broker answer 503 to everyone. Here:

- each connection is registered when it is accepted, before the handshake
  (``connection_limits.ConnectionRegistry``: the caps, and which idle connection gives way);
- the TLS handshake and the request head must be complete ``head_timeout`` seconds after the
  accept, and the next head ``head_timeout`` seconds after its first byte; a kept-alive
  connection may wait ``idle_timeout`` seconds for that byte. No byte resets a deadline, so a
  head sent a byte at a time is cut off as surely as silence;
- TLS is started on the accepted connection as ``loop.start_tls`` does (uvicorn would start it
  in ``create_server`` with asyncio's 60 s handshake timeout and no way to change it), so the
  handshake is bounded by the same deadline, and with a read buffer of 16 KiB instead of
  asyncio's 256 KiB and smaller flow-control bounds (``CompactTLS``);
- every request head is checked on its bytes before h11 parses it (``request_head``), also
  the heads of pipelined requests, which h11 holds in its buffer;
- a client must take its answers: while the send buffers stay full it has ``write_timeout``
  seconds, and a pipelined request is started only once the previous answer was taken, so a
  client that never reads holds no request slot (uvicorn's ``send`` would wait in
  ``drain()`` for ever); while a request is answered nothing more is read from a client that
  has sent the next one already (``PipelineFlow``), and the TLS layer's buffers are bounded
  (``CompactTLS``), so h11's buffer and the memory per connection stay bounded.

The subclass relies on uvicorn's ``H11Protocol`` internals (``conn``, ``transport``, ``cycle``,
``connections``, ``loop``, ``flow``, ``connection_made``, ``data_received``, ``handle_events``,
``on_response_complete``, ``pause_writing``, ``resume_writing``, ``send_400_response``,
``shutdown``; ``FlowControl``) as uvicorn 0.30 to 0.55 have them; pyproject.toml pins that
range, and tests/product/test_broker_connections.py exercises every hook over real TLS.
``start_tls`` uses asyncio's ``sslproto.SSLProtocol`` (private too, stable since 3.7; 3.11
rewrote it, keeping the constructor this calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
import sys
from asyncio import sslproto
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

from .connection_limits import ConnectionLimits, ConnectionRegistry, client_key
from .request_head import MAX_HEAD_BYTES, HeadRefusal, head_refusal

# After a response with "Connection: close", how long the TLS close may wait for the peer's.
TLS_SHUTDOWN_SECONDS = 5.0
TLS_READ_BUFFER = 16 * 1024  # a full TLS record takes two reads at most
# Bytes the TLS layer holds for one connection before it stops reading from, or asks the
# broker to stop writing to, the socket (asyncio's defaults: 256 KiB in, 512 KiB out). A
# response larger than the outgoing bound still goes out whole; the bound only makes the
# broker wait (``--write-timeout``) before it starts on the next request.
TLS_INCOMING_HIGH_WATER = 8 * 1024
TLS_OUTGOING_HIGH_WATER = 16 * 1024
# The same for the socket below (plain TCP, or TLS's ciphertext): asyncio's default is 64 KiB.
SOCKET_WRITE_HIGH_WATER = 8 * 1024
# The kernel's send buffer per connection (Linux doubles it). Autotuning lets it grow to
# megabytes, even toward a client that reads nothing: the broker would compute hundreds of
# pipelined answers into it, and the pod's memory cgroup is charged for it.
SOCKET_SEND_BUFFER = 32 * 1024
# After a refusal on plain TCP, how long to read and drop the rest before closing.
LINGER_SECONDS = 2.0
# Python 3.10's SSLProtocol takes no such bound.
SHUTDOWN_TIMEOUT: dict[str, Any] = (
    {"ssl_shutdown_timeout": TLS_SHUTDOWN_SECONDS} if sys.version_info >= (3, 11) else {}
)
QUIET_LOG = logging.getLogger("uvicorn.error.dgprov")  # uvicorn's handlers, errors only
QUIET_LOG.setLevel(logging.ERROR)
HEAD_TIMED_OUT = HeadRefusal(408, "the request head did not arrive in time; send it at once")


def tls_server_context(cert: str, key: str) -> ssl.SSLContext:
    """The broker's TLS: 1.2 or later, HTTP/1.1 over ALPN, no renegotiation (in TLS 1.2 a
    client could ask for one handshake after another, each costing the broker a private-key
    operation, on one connection and outside every deadline). Raises OSError (ssl.SSLError)
    for files that are missing, not PEM, or a key that does not match."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


def bound_kernel_buffer(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)


class CompactTLS(sslproto.SSLProtocol):
    """asyncio's TLS layer with a smaller read buffer and smaller flow-control bounds. Its own
    read buffer, 256 KiB per connection and allocated up front, made an idle TLS connection
    cost 283 KiB (measured: 1,000 of them, 340 MB), past the manifest's 256 MiB long before
    ``max_connections``; now 1,000 cost 51 MB. Its bounds (256 KiB received, 512 KiB to send)
    let 1,024 clients that pipeline requests and read nothing take 630 MB; now 145 MB."""

    max_size = TLS_READ_BUFFER

    def _set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        super()._set_read_buffer_limits(high or TLS_INCOMING_HIGH_WATER, low)  # type: ignore[misc]

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        super()._set_write_buffer_limits(high or TLS_OUTGOING_HIGH_WATER, low)  # type: ignore[misc]


async def start_tls(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    handshake_timeout: float,
) -> asyncio.Transport | None:
    """``loop.start_tls`` (server side), as asyncio writes it, with ``CompactTLS``; the TLS
    transport, or None when the peer left during the handshake."""
    waiter = loop.create_future()
    tls = CompactTLS(
        loop,
        protocol,
        context,
        waiter,
        server_side=True,
        call_connection_made=False,
        ssl_handshake_timeout=math.ceil(handshake_timeout),  # the deadline's timer is exact
        **SHUTDOWN_TIMEOUT,
    )
    transport.pause_reading()  # until the TLS layer is in place
    transport.set_protocol(tls)
    made = loop.call_soon(tls.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    app_transport: asyncio.Transport | None = tls._app_transport
    return app_transport


class StrictConnection(h11.Connection):
    """h11's server side, with each request head checked on its bytes before h11 parses it,
    and a callback when a request's head has been parsed."""

    def __init__(self, on_request: Callable[[], None], head_limit: int = MAX_HEAD_BYTES) -> None:
        super().__init__(h11.SERVER)
        self.on_request = on_request
        self.head_limit = head_limit
        self.refusal: HeadRefusal | None = None

    def next_event(self) -> Any:
        if self.their_state is h11.IDLE:
            refusal = head_refusal(self.trailing_data[0], self.head_limit)
            if refusal is not None:
                self.refusal = refusal
                raise h11.RemoteProtocolError(refusal.message, error_status_hint=refusal.status)
        event = super().next_event()
        if isinstance(event, h11.Request):
            self.on_request()
        return event


class PipelineFlow(FlowControl):
    """uvicorn's flow control, which also keeps reading paused while a request that has been
    received whole is answered and the client has already sent more (the start of the next
    request): uvicorn resumes reading whenever the app asks for the body, and each resume let
    another buffer of pipelined requests into h11, without a bound."""

    def __init__(self, transport: asyncio.Transport, conn: h11.Connection) -> None:
        super().__init__(transport)
        self.conn = conn

    def resume_reading(self) -> None:
        if self.conn.their_state is h11.DONE and self.conn.trailing_data[0]:
            return  # the next request is here already; read on once this one is answered
        super().resume_reading()


class GuardedProtocol(H11Protocol):
    """One connection; ``protocol_class`` makes the subclass that shares one registry."""

    registry: ClassVar[ConnectionRegistry]
    limits: ClassVar[ConnectionLimits]
    tls: ClassVar[ssl.SSLContext | None]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.strict = StrictConnection(self._request_started)
        self.conn = self.strict
        # uvicorn warns once per malformed request: an attacker's flood of log lines, written
        # from the event loop. The count is in the metrics instead; errors are still logged.
        self.logger = QUIET_LOG
        self._accepted: asyncio.Transport | None = None  # the TCP connection
        self._early: list[bytes] | None = None  # decrypted before start_tls returned
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._answered = False  # a response is out, the next request waits for the client
        self._awaiting_first_byte = False  # kept alive, no byte of the next request yet
        self._handshake: asyncio.Task[None] | None = None
        self._gone = False
        self._discarding = False  # refused: what still comes is read and dropped

    # The connection's life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._accepted = transport
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        if not self.registry.admit(self, client_key(str(host))):
            self._gone = True
            transport.abort()
            return
        self.connections.add(self)  # uvicorn's shutdown closes it, and waits for it
        transport.set_write_buffer_limits(SOCKET_WRITE_HIGH_WATER)
        bound_kernel_buffer(transport)
        self._set_deadline(self.limits.head_timeout, "head_timeout")
        if self.tls is None:
            self._connection_made(transport)
            return
        transport.pause_reading()  # the ClientHello is for the TLS layer start_tls inserts
        self._early = []
        self._handshake = self.loop.create_task(self._start_tls(transport))

    async def _start_tls(self, accepted: asyncio.Transport) -> None:
        assert self.tls is not None
        try:
            transport = await start_tls(
                self.loop, accepted, self, self.tls, self.limits.head_timeout
            )
        except Exception:  # a failed or timed-out handshake: start_tls closed the connection
            transport = None
        if transport is None or self._gone:  # lost during the handshake
            accepted.abort()
            self._lost()
            return
        early, self._early = self._early or [], None
        self._connection_made(transport)
        for data in early:
            self.data_received(data)

    def _connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.flow = PipelineFlow(transport, self.conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()
        if self.transport is not None:
            super().connection_lost(exc)

    def _lost(self) -> None:
        self._gone = True
        self._cancel_deadline()
        self._cancel_write_deadline()
        self.registry.forget(self)
        self.connections.discard(self)

    def evict(self) -> None:
        """Close now, without a TLS goodbye (the registry needs the room, or a deadline passed)."""
        self._cancel_deadline()
        self._cancel_write_deadline()
        transport = self.transport or self._accepted
        if transport is not None:
            transport.abort()

    def shutdown(self) -> None:
        if self.transport is None:  # still in the handshake
            self.evict()
        else:
            super().shutdown()

    # Requests

    def data_received(self, data: bytes) -> None:
        if self._early is not None:
            self._early.append(data)
            return
        if self._discarding:
            return
        if self.transport.is_closing():  # refused or timed out: nothing more is read
            return
        if self._awaiting_first_byte and self.conn.their_state is h11.IDLE:
            self._awaiting_first_byte = False
            self.registry.arriving(self)
            self._set_deadline(self.limits.head_timeout, "head_timeout")
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        # ``PipelineFlow`` kept reading paused while pipelined requests were answered; once
        # they are all parsed and the next head is not complete yet, it must be read.
        if self.conn.their_state is h11.IDLE and not self._gone and not self.transport.is_closing():
            self.flow.resume_reading()

    def _request_started(self) -> None:
        self._cancel_deadline()
        self._awaiting_first_byte = False
        self.registry.busy(self)

    def on_response_complete(self) -> None:
        # Idle again before uvicorn looks at a pipelined request, which makes it busy again.
        self.registry.idle(self)
        if self.flow.write_paused and not self.transport.is_closing():
            # The client has not taken this answer yet: the next request it sent waits (and
            # holds no request slot) until it does, within ``--write-timeout``.
            self._answered = True
            return
        self._next_request()

    def _next_request(self) -> None:
        pending = bool(self.conn.trailing_data[0])
        self._awaiting_first_byte = not pending
        if pending:
            self.registry.arriving(self)
            self._set_deadline(self.limits.head_timeout, "head_timeout")
        else:
            self._set_deadline(self.limits.idle_timeout, "idle_timeout")
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a head h11 or ``request_head`` refused, with the status the
        refusal carries (431 for a head too large) instead of always 400."""
        refusal = self.strict.refusal or HeadRefusal(400, "the request is not valid HTTP/1.1")
        self.registry.count(f"head_{refusal.status}")
        self._refuse(refusal)

    def _refuse(self, refusal: HeadRefusal) -> None:
        self._cancel_deadline()
        body = (refusal.message + "\n").encode("ascii")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        try:
            response = h11.Response(
                status_code=refusal.status, headers=headers, reason=STATUS_PHRASES[refusal.status]
            )
            for event in (response, h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:  # a response had begun: only closing is left
            self.evict()
            return
        if not self.transport.can_write_eof():  # TLS: its close reads on until the peer's
            self.transport.close()
            return
        # Plain TCP: closing with the rest of a request unread would reset the connection,
        # and the reset can destroy the answer before the client reads it. So say we are done,
        # read and drop what still comes for a moment, then close (a "lingering close").
        self.transport.write_eof()
        self._discarding = True
        self._cancel_deadline()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.evict)

    # Writing: the client must take what it asked for

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(
                self.limits.write_timeout, self._write_expired
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_deadline()
        if self._answered and not self._gone:
            self._answered = False
            self._next_request()

    def _cancel_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_expired(self) -> None:
        """The client took nothing for ``write_timeout`` seconds: an answer it does not read
        would hold its request slot, its buffers and its connection for ever."""
        self._write_deadline = None
        self.registry.count("write_timeout")
        self.evict()

    # Deadlines

    def _set_deadline(self, seconds: float, reason: str) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._expired, reason)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, reason: str) -> None:
        self._deadline = None
        self.registry.count(reason)
        started = (
            self.transport is not None
            and self.conn.their_state is h11.IDLE
            and self.conn.trailing_data[0].strip(b"\r\n")
        )
        if started and not self.transport.is_closing():
            self._refuse(HEAD_TIMED_OUT)  # a head was on its way: say why it is cut off
        else:
            self.evict()


def protocol_class(
    limits: ConnectionLimits,
    tls: ssl.SSLContext | None,
    count: Callable[[str], None] = lambda reason: None,
) -> type[GuardedProtocol]:
    """The protocol class for one uvicorn server: its connections share one registry."""

    class Protocol(GuardedProtocol):
        pass

    Protocol.registry = ConnectionRegistry(limits, count)
    Protocol.limits = limits
    Protocol.tls = tls
    return Protocol
