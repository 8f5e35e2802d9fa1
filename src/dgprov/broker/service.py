"""One provisioning request from bearer token to enrollment token, and the broker's readiness.

The order matters: the token is checked before anything else is asked (a bad token never
reaches Defguard or Graph), the rate limit before the mapping (a user in a loop costs one
dictionary lookup), and the request is counted before the first await (a user cannot make the
broker rotate their token faster than the window by racing requests); a refusal of the mapping
gives the count back, since Defguard was never asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from prometheus_client import Counter

from ..defguard import DefguardClient
from ..entra_auth import EntraSignIn
from ..errors import AuthenticationError, DgprovError, RemoteError
from ..graph import GraphClient
from ..plan import Action
from ..provision import ALREADY_ACTIVATED
from ..retry import RetryPolicy
from ..stored_value import FILE_TOKEN_KEY, FILE_URL_KEY, ProvisioningConfig
from ..tls import tls_context
from .audience import audience_problem
from .audit import AuditWriter
from .config import BrokerConfig
from .decisions import Grant, Refusal, enrolled_refusal
from .limits import RateLimiter
from .mapping import Mapper, guarded
from .metrics import BrokerMetrics
from .tokens import SCOPE, Caller, KeySet, KeysUnavailable, TokenRejected, TokenValidator

# A client is waiting: a few quick attempts, then an honest 503 instead of minutes of retries.
REQUEST_POLICY = RetryPolicy(attempts=3, max_delay=0.5, deadline=10.0, max_retry_after=2.0)
READY_CACHE_SECONDS = 5.0
DEFGUARD_CONNECTIONS = 64
GRAPH_SIGN_IN_SECONDS = 15.0
GRAPH_TOKEN_REUSE_SECONDS = 300.0

log = logging.getLogger("dgprov.broker")


def audit_to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@dataclass
class AuditRecord:
    """What one request did, for its audit line; never the token."""

    request_id: str
    object_id: str | None = None
    upn: str | None = None
    username: str | None = None
    action: str | None = None
    outcome: str = ""
    status: int = 0
    detail: str | None = None  # what a remote service said, for the operator only

    def line(self, latency: float) -> str:
        return json.dumps(
            {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "request_id": self.request_id,
                "entra_object_id": self.object_id,
                "upn": self.upn,
                "defguard_username": self.username,
                "action": self.action,
                "outcome": self.outcome,
                "status": self.status,
                "latency_ms": round(latency * 1000, 2),
                "detail": self.detail,
            }
        )


def bearer_token(authorization: str | None) -> str:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Refusal(
            401, "invalid_token", "send the Entra access token as Authorization: Bearer <token>"
        )
    return value.strip()


class Broker:
    """The clients and policies of one broker process; ``start`` inside its event loop."""

    def __init__(
        self, config: BrokerConfig, audit: Callable[[str], None] = audit_to_stderr
    ) -> None:
        self.config = config
        self.audit = audit
        self.metrics = BrokerMetrics()
        dropped = Counter(
            "dgprov_broker_audit_lines_dropped",
            "Audit lines of requests that asked Defguard for nothing, dropped while the log "
            "was too slow.",
            registry=self.metrics.registry,
        )
        self.audit_log = AuditWriter(audit, on_drop=dropped.inc)
        self.limiter = RateLimiter(config.rate_window_seconds)
        self.lifetime = config.token_lifetime
        self._signin: EntraSignIn | None = None
        self._graph_token_value: str | None = None
        self._graph_token_at = float("-inf")
        self._warm_up: list[asyncio.Task[Any]] = []
        self._ready_at = float("-inf")
        self._ready_reason: str | None = "starting"
        self._ready_lock = asyncio.Lock()
        # A client id no check can make right (a public client's): never ready, and said once.
        self.audience_problem: str | None = None

    async def start(self) -> None:
        config = self.config
        self.audience_problem = audience_problem(config.entra.client_id, config.allowed_client_ids)
        verify = tls_context(config.ca_bundle)
        self.defguard = DefguardClient(
            config.defguard_url,
            config.api_token,
            verify=verify,
            policy=REQUEST_POLICY,
            max_connections=DEFGUARD_CONNECTIONS,
        )
        self.graph = GraphClient(
            config.entra.graph_url, self._graph_token, verify=verify, policy=REQUEST_POLICY
        )
        self.keys = KeySet(
            config.entra.authority_url,
            ca_bundle=config.ca_bundle,
            refetch_floor=config.jwks_refetch_floor_seconds,
            timer=self.metrics.timed,
        )
        self.validator = TokenValidator(
            self.keys, config.entra.client_id, config.allowed_client_ids
        )
        self.mapper = Mapper(
            self.defguard,
            self.graph,
            config.group_name,
            ttl=config.mapping_ttl_seconds,
            metrics=self.metrics,
            before_graph=self.fetch_graph_token,
            admit_guests=config.allow_guests,
        )
        # Warm up in the background: a broker whose Entra or Defguard is down or slow still
        # starts serving and says so on /readyz, so an orchestrator can wait for it.
        self._warm_up = [
            asyncio.create_task(self.readiness()),
            asyncio.create_task(self._quietly(self.fetch_graph_token())),
            asyncio.create_task(self._check_exposed_api()),
        ]

    async def aclose(self) -> None:
        for task in self._warm_up:
            task.cancel()
        for client in (self.defguard, self.graph, self.keys):
            await client.aclose()
        await asyncio.to_thread(self.audit_log.close)

    @staticmethod
    async def _quietly(work: Awaitable[None]) -> None:
        with contextlib.suppress(Refusal):  # reported by the first request that needs it
            await work

    async def fetch_graph_token(self) -> None:
        """Have a current app-only Graph token before Graph is called.

        msal is synchronous and its HTTP session has no timeout, so it runs in a thread with a
        deadline; ``GraphClient`` then takes the token from memory and never blocks the loop.
        msal is asked again after ``GRAPH_TOKEN_REUSE_SECONDS`` (its tokens live an hour and
        more; it renews them itself before they expire), not on every Graph call.
        """
        if time.monotonic() - self._graph_token_at < GRAPH_TOKEN_REUSE_SECONDS:
            return
        try:
            # Histogram only: the request counts it in its wait for Graph.
            with self.metrics.timed("authority", "token", request=False):
                self._graph_token_value = await asyncio.wait_for(
                    asyncio.to_thread(self._sign_in_for_graph), GRAPH_SIGN_IN_SECONDS
                )
            self._graph_token_at = time.monotonic()
        except asyncio.TimeoutError:
            raise Refusal(
                503, "entra_unavailable", "the Entra authority did not issue a Graph token in time"
            ) from None
        except DgprovError as exc:
            raise Refusal(503, "entra_unavailable", str(exc)) from None

    def _sign_in_for_graph(self) -> str:
        """An app-only Graph token of the broker's registration (msal caches it)."""
        if self._signin is None:
            settings = replace(self.config.entra, persist_cache=False)
            self._signin = EntraSignIn(settings, [], lambda _: None, "broker")
        return self._signin.token(False)

    async def _check_exposed_api(self) -> None:
        """A registration that exposes no API (``api://<client id>``) can never be the audience
        of a user's token: the admin job's app given as the broker's, say. Entra says so when
        asked for an app-only token for it; only that definite answer makes the broker not
        ready for good (an authority that cannot be reached just leaves the question open)."""
        if self.audience_problem is not None:
            return
        resource = f"api://{self.config.entra.client_id}"
        try:
            await asyncio.to_thread(self._sign_in_for_graph)  # the msal app, made once
            assert self._signin is not None
            refused = await asyncio.wait_for(
                asyncio.to_thread(self._signin.refuses_app_token_for, resource),
                GRAPH_SIGN_IN_SECONDS,
            )
        except (asyncio.TimeoutError, DgprovError, OSError) as exc:
            log.warning("could not ask Entra whether %s is exposed: %s", resource, exc)
            return
        if refused is not None:
            self.audience_problem = (
                "the broker's app registration exposes no API, so no user's token can be for "
                "it: under Expose an API set its Application ID URI and add the Provision scope"
            )
            self._ready_at = float("-inf")
            await self.readiness()  # said now, in the audit log, not at the next probe

    def _graph_token(self, fresh: bool) -> str:
        if fresh:  # Graph refused it: ask msal again before the next Graph call
            self._graph_token_at = float("-inf")
        if self._graph_token_value is None:
            raise AuthenticationError("the broker holds no Graph token yet")
        return self._graph_token_value

    async def readiness(self) -> str | None:
        """None when ready; else why not, in words that name no host (anyone may probe).

        Probes are answered from a 5-second memory, and one check at a time: a crowd of
        probes arriving together costs Defguard one request, not one each.
        """
        async with self._ready_lock:
            if time.monotonic() - self._ready_at < READY_CACHE_SECONDS:
                return self._ready_reason
            reason, detail = self.audience_problem, self.audience_problem
            try:
                if not self.keys.loaded:
                    await self.keys.refresh()
            except KeysUnavailable as exc:
                log.warning("not ready: %s", exc)
                reason = reason or "the tenant's signing keys are not loaded"
                detail = detail or f"{reason}: {exc}"
            try:
                await self.defguard.group(self.config.group_name)
            except DgprovError as exc:
                log.warning("not ready: %s", exc)
                reason = reason or "Defguard does not answer the broker"
                detail = detail or f"{reason}: {exc}"
            if reason is not None and reason != self._ready_reason:
                await self._audit_not_ready(detail or reason)
            self._ready_at, self._ready_reason = time.monotonic(), reason
            return reason

    async def _audit_not_ready(self, detail: str) -> None:
        """One audit line when the broker becomes not ready, or for another reason: what an
        operator reading the log needs (a probe's 503 says why, in fewer words)."""
        record = AuditRecord(new_request_id(), outcome="not_ready", status=503, detail=detail)
        await self.audit_log.write(record.line(0.0), keep=True)  # one per change: bounded

    def client_settings(self) -> dict[str, str]:
        """What ``GET /v1/config`` tells anyone who asks: the scope users sign in for and the
        tenant they sign in to, so a client needs only the broker's URL. Both are in every
        token the broker accepts (and the tenant id in its authority's metadata): nothing
        secret. A broker whose audience cannot be right tells no client to sign in for it."""
        if self.audience_problem is not None:
            raise Refusal(503, "not_ready", self.audience_problem)
        tenant = self.keys.tenant_id or self.config.entra.tenant
        if not tenant:  # only --authority given, and its keys not read yet
            raise Refusal(503, "not_ready", "the tenant's signing keys are not loaded")
        return {"scope": f"api://{self.config.entra.client_id}/{SCOPE}", "tenant": tenant}

    async def provision(self, authorization: str | None, record: AuditRecord) -> dict[str, str]:
        token = bearer_token(authorization)
        try:
            caller = await self.validator.validate(token)
        except TokenRejected as exc:
            raise Refusal(401, "invalid_token", str(exc)) from None
        except KeysUnavailable as exc:
            raise Refusal(503, "entra_unavailable", str(exc)) from None
        record.object_id, record.upn = caller.object_id, caller.upn
        wait = self.limiter.wait_left(caller.object_id)
        if wait > 0:
            raise Refusal(
                429,
                "rate_limited",
                f"a token was issued for this user {self.limiter.window - wait:.0f} s ago; "
                f"ask again in {wait:.0f} s",
                retry_after=max(1, round(wait)),
            )
        # Counted now, before anything is awaited: a second request racing this one is refused
        # even while this one is still being mapped. Returned if Defguard is never asked.
        self.limiter.record(caller.object_id)
        try:
            grant = await self.mapper.grant(
                caller, refuse_enrolled=self.config.enrolled_users == "refuse"
            )
        except Refusal:
            self.limiter.forget(caller.object_id)
            raise
        record.username, record.action = grant.username, grant.action.value
        config, action = await guarded("defguard_unavailable", lambda: self._issue(caller, grant))
        record.action = action.value
        return {FILE_URL_KEY: config.enrollment_url, FILE_TOKEN_KEY: config.enrollment_token}

    async def _issue(self, caller: Caller, grant: Grant) -> tuple[ProvisioningConfig, Action]:
        """The token ``grant`` says, and the kind actually issued."""
        try:
            try:
                return await self._ask_defguard(grant.username, grant.action), grant.action
            except RemoteError as exc:
                # The mapping (cached up to its TTL) said "not enrolled", but the user has
                # enrolled since and Defguard refuses a second activation: they get what an
                # enrolled user gets, as with generate-tokens.
                if not (
                    grant.action is Action.START_ENROLLMENT
                    and exc.status == 400
                    and exc.message == ALREADY_ACTIVATED
                ):
                    raise
            self.mapper.forget(caller)
            if self.config.enrolled_users == "refuse":
                self.limiter.forget(caller.object_id)  # nothing was issued
                raise enrolled_refusal(caller.upn or caller.object_id)
            desktop = Action.START_DESKTOP
            return await self._ask_defguard(grant.username, desktop), desktop
        except DgprovError:
            self.mapper.forget(caller)
            raise

    async def _ask_defguard(self, username: str, action: Action) -> ProvisioningConfig:
        with self.metrics.timed("defguard", action.value):
            if action is Action.START_DESKTOP:
                issued = await self.defguard.start_desktop(username)
            else:
                issued = await self.defguard.start_enrollment(username, self.lifetime)
        return issued.validated()


def new_request_id() -> str:
    return uuid.uuid4().hex
