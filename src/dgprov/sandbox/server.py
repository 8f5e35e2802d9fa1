"""Run the emulators on loopback sockets in a background thread.

One ``Sandbox`` owns one event loop thread and one listening socket per service. Sockets are
bound before the apps are built so that port 0 works: the state needs its own URLs (the proxy
URL goes into every ``enrollment_url``) and only the kernel knows the port until bind time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn

from .core_app import build_core_app
from .defguard_state import DefguardState, SandboxClock, ServerLine
from .http_common import ASGIApp, FaultInjector, FaultSettings, RateLimiter
from .proxy_app import build_proxy_app
from .tenant import SYNTHETIC_GROUP, Tenant

log = logging.getLogger("dgprov.sandbox")

READY_TIMEOUT_SECONDS = 30.0


class SandboxError(RuntimeError):
    """The sandbox could not start; the message says why and what to change."""


@dataclass
class SandboxOptions:
    defguard_version: ServerLine = "2.0"
    host: str = "127.0.0.1"
    port: int = 0
    proxy_port: int = 0
    faults: FaultSettings = field(default_factory=FaultSettings)
    synthetic_group: bool = False


def _url(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"http://[{host}]:{port}" if is_v6 else f"http://{host}:{port}"


def _listen(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this; without it every keep-alive answer waits ~40 ms for a
    # delayed ACK (Nagle), which would make the emulator, not the client, the bottleneck.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SandboxError(
            f"cannot listen for the {what} on {host}:{port}: {exc.strerror}; "
            "choose another port, or 0 for a free one"
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


class _PromptServer(uvicorn.Server):
    """A uvicorn server that stops as soon as it is asked, not on its next 100 ms tick.

    Tests start and stop hundreds of sandboxes; the tick would otherwise dominate the suite.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.exit_requested.wait(), 0.1)
            self.should_exit = self.should_exit or self.exit_requested.is_set()


class Sandbox:
    """The Defguard core and enrollment proxy emulators of one tenant, served over real HTTP."""

    def __init__(self, tenant: Tenant, options: SandboxOptions | None = None) -> None:
        self.tenant = tenant
        self.options = options or SandboxOptions()
        self.clock = SandboxClock()
        self.core_requests: Counter[str] = Counter()
        self.proxy_requests: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._servers: list[_PromptServer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.state: DefguardState | None = None
        self.info: dict[str, Any] = {}

    def _wrap(self, app: ASGIApp, name: str) -> ASGIApp:
        faults = self.options.faults
        rng = random.Random(f"{faults.seed}:{name}")
        return FaultInjector(app, faults, rng)

    def start(self) -> dict[str, Any]:
        """Bind, build and serve; return the connection facts once every service accepts."""
        options = self.options
        core_socket = _listen(options.host, options.port, "Defguard core")
        try:
            proxy_socket = _listen(options.host, options.proxy_port, "enrollment proxy")
        except SandboxError:
            core_socket.close()
            raise
        core_url = _url(options.host, core_socket.getsockname()[1])
        proxy_url = _url(options.host, proxy_socket.getsockname()[1])
        state = DefguardState(
            self.tenant,
            options.defguard_version,
            own_proxy_url=proxy_url,
            core_url=core_url,
            seed=options.faults.seed,
            clock=self.clock,
        )
        self.state = state
        core_app: ASGIApp = build_core_app(state, self.core_requests)
        if options.defguard_version == "2.0":
            core_app = RateLimiter(core_app, state.rate_limit_per_second, state.rate_limit_burst)
        proxy_app = build_proxy_app(state, self.proxy_requests)
        apps = [
            (self._wrap(core_app, "core"), core_socket),
            (self._wrap(proxy_app, "proxy"), proxy_socket),
        ]
        self._servers = [
            _PromptServer(
                uvicorn.Config(
                    app,
                    lifespan="off",
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=2,
                )
            )
            for app, _ in apps
        ]
        self._thread = threading.Thread(
            target=self._run, args=([sock for _, sock in apps],), name="dgprov-sandbox", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_SECONDS) or self._failure is not None:
            self.stop()
            raise SandboxError(f"the sandbox did not start: {self._failure or 'timed out'}")
        api_tokens = self.tenant["api_tokens"]
        self.info = {
            "defguard_url": core_url,
            "proxy_url": proxy_url,
            "api_token": api_tokens[0]["token"] if api_tokens else None,
            "defguard_version": options.defguard_version,
            "inspect_url": f"{core_url}/_sandbox",
        }
        if options.synthetic_group:
            self.info["group_name"] = SYNTHETIC_GROUP
        log.info(
            "Defguard %s core at %s, proxy at %s", options.defguard_version, core_url, proxy_url
        )
        return self.info

    def _run(self, sockets: list[socket.socket]) -> None:
        try:
            asyncio.run(self._serve(sockets))
        except BaseException as exc:  # reported to the thread waiting in start()
            self._failure = exc
            self._ready.set()

    async def _serve(self, sockets: list[socket.socket]) -> None:
        self._loop = asyncio.get_running_loop()
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, sock in zip(self._servers, sockets, strict=True)
        ]
        while not all(server.started for server in self._servers):
            if any(task.done() for task in tasks):
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise SandboxError(str(task.exception()))
                raise SandboxError("a server stopped while starting")
            await asyncio.sleep(0.005)
        self._ready.set()
        await asyncio.gather(*tasks)
        for sock in sockets:
            sock.close()

    def stop(self, *, wait: bool = True) -> None:
        """Ask every server to exit; with ``wait=False`` return before they have finished."""
        for server in self._servers:
            server.should_exit = True
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(server.exit_requested.set)
        if wait:
            self.join()

    def join(self) -> None:
        """Wait for a stopping sandbox's thread to end."""
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.stop()
