"""Small misbehaving HTTP servers on 127.0.0.1, port 0, for tests of what dgprov does with them.

A test passes a route: a function that receives each request (an ``Exchange``) and answers it
however the test wants, well or badly: wrong JSON, a huge body, a trickle, silence, or by
forwarding to a sandbox and changing the answer. Every request is recorded, headers included, so a
test can prove what a server never received. Servers run in a thread and stop at the end of the
``with`` block; anything a route waits on is released then.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Exchange:
    """One request, and the ways a route may answer it."""

    def __init__(self, handler: BaseHTTPRequestHandler, received: Received, stop: threading.Event):
        self._handler = handler
        self.request = received
        self.stop = stop

    @property
    def path(self) -> str:
        return self.request.path.split("?", 1)[0]

    def json(self) -> Any:
        return json.loads(self.request.body or b"null")

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self._handler.send_response(status)
        for name, value in headers.items():
            self._handler.send_header(name, value)
        self._handler.end_headers()

    def reply(
        self, status: int = 200, body: Any = b"", headers: dict[str, str] | None = None
    ) -> None:
        """Answer at once; ``body`` as bytes, text, or anything else as JSON."""
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        head = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        self._head(status, {**head, **(headers or {})})
        self._handler.wfile.write(data)

    def trickle(self, body: bytes, every: float) -> None:
        """Headers at once, then one byte of ``body`` per ``every`` seconds."""
        self._head(200, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        for index in range(len(body)):
            self._handler.wfile.write(body[index : index + 1])
            self._handler.wfile.flush()
            if self.stop.wait(every):
                return

    def stream(self, chunks: Iterator[bytes]) -> None:
        """A chunked answer of unannounced length."""
        self._head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        for chunk in chunks:
            self._handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self._handler.wfile.write(b"0\r\n\r\n")

    def forward(self, target: str, change: Callable[[Any], Any] | None = None) -> None:
        """Pass the request on to ``target`` (an origin) and its answer back, cookies included;
        with ``change``, the answer's JSON goes through it first."""
        request = self.request
        headers = {
            name: value
            for name, value in request.headers.items()
            if name in ("content-type", "cookie", "authorization", "user-agent")
        }
        with httpx.Client(base_url=target) as client:
            answer = client.request(
                request.method, request.path, content=request.body, headers=headers
            )
        body: Any = answer.content
        if change is not None and answer.content:
            body = change(answer.json())
        extra = (
            {"Set-Cookie": answer.headers["set-cookie"]} if "set-cookie" in answer.headers else {}
        )
        self.reply(answer.status_code, body, extra)


Route = Callable[[Exchange], None]


def replying(status: int, body: Any) -> Route:
    """A route giving every request the same answer."""

    def route(exchange: Exchange) -> None:
        exchange.reply(status, body)

    return route


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up on a bad answer is what these tests provoke, not a failure."""


class HostileServer:
    def __init__(self, route: Route) -> None:
        self.received: list[Received] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                server.received.append(received)
                route(Exchange(self, received, server.stop))

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = handle_any

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test asserts on ``received`` instead."""

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextmanager
def hostile(route: Route) -> Iterator[HostileServer]:
    server = HostileServer(route)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def silent_listener() -> Iterator[str]:
    """A port that accepts TCP connections into its backlog and never answers: a server that
    hangs, as a blackholed or wedged service looks to a client."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def closed_port() -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
