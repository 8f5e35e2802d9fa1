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
import shutil
import socket
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from .authority_app import build_authority_app
from .clock import SandboxClock
from .core_app import build_core_app
from .defguard_state import DefguardState
from .entra_setup import GRAPH_CLI_APP_ID
from .entra_state import EntraState
from .governor import RateLimiter
from .graph_app import GraphService, build_graph_app, graph_server_error
from .http_common import ASGIApp, ClockDate, CrashDropper, FaultInjector
from .keys import JwtSigner, make_tls_files
from .options import SandboxOptions as SandboxOptions
from .proxy_app import build_proxy_app
from .tenant import SYNTHETIC_GROUP, Tenant, without_entra_setup
from .throttle import Throttle

log = logging.getLogger("dgprov_sandbox")

READY_TIMEOUT_SECONDS = 30.0


class _QuietShutdown(logging.Filter):
    """Drop uvicorn's complaint about idle TLS keep-alive connections at shutdown.

    A TLS close waits for the peer's close_notify, which an idle pooled client never sends, so
    every stop would otherwise log an error that says nothing about the sandbox's health.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "timeout graceful shutdown exceeded" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietShutdown())


class SandboxError(RuntimeError):
    """The sandbox could not start; the message says why and what to change."""


def _url(host: str, port: int, scheme: str = "http") -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"{scheme}://[{host}]:{port}" if is_v6 else f"{scheme}://{host}:{port}"


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
        self.authority_requests: Counter[str] = Counter()
        self.entra: EntraState | None = None
        self.graph: GraphService | None = None
        self._tls_dir: Path | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[_PromptServer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.state: DefguardState | None = None
        self.core_limiter: RateLimiter | None = None
        self.info: dict[str, Any] = {}

    def _wrap(self, app: ASGIApp, name: str, error_response: Any = None) -> ASGIApp:
        faults = self.options.faults
        rng = random.Random(f"{faults.seed}:{name}")
        return FaultInjector(app, faults, rng, error_response)

    def start(self) -> dict[str, Any]:
        """Bind, build and serve; return the connection facts once every service accepts."""
        options = self.options
        sockets: list[socket.socket] = []
        try:
            for port, what in (
                (options.port, "Defguard core"),
                (options.proxy_port, "enrollment proxy"),
                (options.authority_port, "Entra sign-in authority"),
                (options.graph_port, "Microsoft Graph"),
            ):
                sockets.append(_listen(options.host, port, what))
        except SandboxError:
            for sock in sockets:
                sock.close()
            raise
        core_socket, proxy_socket, authority_socket, graph_socket = sockets
        core_url = _url(options.host, core_socket.getsockname()[1])
        proxy_url = _url(options.host, proxy_socket.getsockname()[1])
        authority_origin = _url(options.host, authority_socket.getsockname()[1], "https")
        graph_origin = _url(options.host, graph_socket.getsockname()[1], "https")
        state = DefguardState(
            self.tenant,
            options.defguard_version,
            own_proxy_url=proxy_url,
            core_url=core_url,
            seed=options.faults.seed,
            clock=self.clock,
            user_order=options.user_list_order,
        )
        self.state = state
        entra = EntraState(
            without_entra_setup(self.tenant) if options.entra_setup == "none" else self.tenant,
            clock=self.clock,
            signer=JwtSigner(),
            authority_origin=authority_origin,
            seed=options.faults.seed,
            device_code_interval=options.device_code_interval,
            access_token_lifetime=options.access_token_lifetime,
            entra_setup=options.entra_setup,
            replication_delay=options.entra_replication_delay,
            duplicate_answer=options.entra_duplicate_answer,
            scoped_role_assigner=options.scoped_role_assigner,
        )
        self.entra = entra
        if options.auto_approve_as is not None:
            entra.auto_approve_upn = self._resolve_auto_approve(entra, options.auto_approve_as)
        throttle = Throttle(
            entra.tenant_id,
            len(entra.users),
            enabled=options.throttle == "documented",
            time_scale=options.time_scale,
            quota_scale=options.quota_scale,
            clock=self.clock.monotonic,
        )
        graph = GraphService(
            entra,
            throttle,
            f"{graph_origin}/v1.0",
            options.faults.seed,
            empty_patch_rule=options.empty_attribute_patch,
            csa_read_role=options.csa_read_role,
        )
        self.graph = graph
        self._tls_dir = Path(tempfile.mkdtemp(prefix="dgprov-sandbox-"))
        tls = make_tls_files(self._tls_dir)

        core_app = ClockDate(
            CrashDropper(
                build_core_app(
                    state,
                    self.core_requests,
                    self._core_limiter if options.defguard_version == "2.0" else None,
                ),
                self._core_restarted,
            ),
            state.clock.now,
        )
        apps: list[tuple[ASGIApp, socket.socket, bool]] = [
            (self._wrap(core_app, "core"), core_socket, False),
            (self._wrap(build_proxy_app(state, self.proxy_requests), "proxy"), proxy_socket, False),
            (
                FaultInjector(
                    build_authority_app(entra, self.authority_requests),
                    options.authority_faults,
                    random.Random(f"{options.authority_faults.seed}:authority"),
                ),
                authority_socket,
                True,
            ),
            (self._wrap(build_graph_app(graph), "graph", graph_server_error), graph_socket, True),
        ]
        self._servers = [
            _PromptServer(
                uvicorn.Config(
                    app,
                    lifespan="off",
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=1,
                    ssl_certfile=str(tls.certificate) if secure else None,
                    ssl_keyfile=str(tls.private_key) if secure else None,
                    date_header=app is not apps[0][0],  # core's Date is the sandbox clock's
                )
            )
            for app, _, secure in apps
        ]
        self._thread = threading.Thread(
            target=self._run,
            args=([sock for _, sock, _ in apps],),
            name="dgprov-sandbox",
            daemon=True,
        )
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_SECONDS) or self._failure is not None:
            self.stop()
            raise SandboxError(f"the sandbox did not start: {self._failure or 'timed out'}")
        self.info = self._describe(
            core_url, proxy_url, authority_origin, graph_origin, tls.ca_bundle
        )
        log.info(
            "Defguard %s core at %s, proxy at %s, Entra at %s, Graph at %s/v1.0",
            options.defguard_version,
            core_url,
            proxy_url,
            authority_origin,
            graph_origin,
        )
        return self.info

    def _core_limiter(self, app: ASGIApp) -> ASGIApp:
        """The 2.0 rate limiter (v2.0.1 crates/defguard_core/src/lib.rs:640-676; 1.6 has none)."""
        assert self.state is not None
        self.core_limiter = RateLimiter(
            app, self.state.rate_limit_per_second, self.state.rate_limit_burst, self.clock
        )
        return self.core_limiter

    def _core_restarted(self) -> None:
        """After an abort the database survives; the process's memory (the limiter) does not."""
        assert self.state is not None
        self.state.restarts += 1
        if self.core_limiter is not None:
            self.core_limiter.reset()
        log.info("Defguard core aborted on a panic and restarted (restart %d)", self.state.restarts)

    @staticmethod
    def _resolve_auto_approve(entra: EntraState, name: str) -> str:
        if name == "admin":
            admin = entra.admin_user()
            if admin is None:
                raise SandboxError(
                    "--auto-approve-as admin: the tenant has no Entra user holding User "
                    "Administrator and Attribute Assignment Administrator"
                )
            return admin.user_principal_name
        if entra.find_user(name) is None:
            raise SandboxError(
                f"--auto-approve-as {name}: no Entra user with that UPN in the tenant"
            )
        return name

    def _describe(
        self,
        core_url: str,
        proxy_url: str,
        authority_origin: str,
        graph_origin: str,
        ca_bundle: Path,
    ) -> dict[str, Any]:
        """The ready line: how to reach each service, and who to sign in as."""
        assert self.entra is not None
        entra = self.entra
        api_tokens = self.tenant["api_tokens"]
        apps = list(entra.applications.values())
        public = next(
            (a for a in apps if a.public_client and a.client_id != GRAPH_CLI_APP_ID), None
        )
        confidential = next(
            (a for a in apps if not a.public_client and a.client_secret and not a.exposed_scopes),
            None,
        )
        broker = next((a for a in apps if a.exposed_scopes and a.client_secret), None)
        admin = entra.admin_user()
        member_names = [
            m
            for g in self.tenant["groups"]
            if not g.get("is_admin")
            for m in g.get("members", [])
            if not self.options.synthetic_group or g["name"] == SYNTHETIC_GROUP
        ]
        upn_by_username = {
            p["username"]: p["entra"]["user_principal_name"]
            for p in self.tenant["users"]
            if p.get("username") and p.get("entra")
        }
        info: dict[str, Any] = {
            "defguard_url": core_url,
            "proxy_url": proxy_url,
            "api_token": api_tokens[0]["token"] if api_tokens else None,
            "defguard_version": self.options.defguard_version,
            "inspect_url": f"{core_url}/_sandbox",
            "authority_url": f"{authority_origin}/{entra.tenant_id}",
            "graph_url": f"{graph_origin}/v1.0",
            "tenant_id": entra.tenant_id,
            "client_id": public.client_id if public else None,
            "ca_bundle": str(ca_bundle),
            "admin_upn": admin.user_principal_name if admin else None,
            "user_upns": list(
                dict.fromkeys(upn_by_username[m] for m in member_names if m in upn_by_username)
            ),
            "confidential_client_id": confidential.client_id if confidential else None,
            "client_secret": confidential.client_secret if confidential else None,
            "broker_client_id": broker.client_id if broker else None,
            "broker_client_secret": broker.client_secret if broker else None,
            "broker_scope": (
                f"{broker.identifier_uri}/{sorted(broker.exposed_scopes)[0]}" if broker else None
            ),
        }
        if self.options.synthetic_group:
            info["group_name"] = SYNTHETIC_GROUP
        if self.options.entra_setup == "none":
            info["entra_setup"] = "none"
            info["setup_client_id"] = GRAPH_CLI_APP_ID
        return info

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
        """Wait for a stopping sandbox's thread to end, then remove its key material."""
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

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
