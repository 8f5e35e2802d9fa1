"""A pool of small HTTP clients, one per request allowed in flight.

httpx's shared asynchronous connection pool spends CPU in proportion to the requests waiting on
it: measured against the sandbox, 1,000 requests at 48 in flight took 5.4 s of client CPU through
one ``AsyncClient`` and 0.8 s through 48 clients of one connection each. dgprov therefore gives
every concurrent slot its own client; the pool's size is also the concurrency limit.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from .errors import OriginRefused
from .retry import AdaptiveLimit, Backpressure, RetryPolicy, send
from .urls import same_origin, shown_origin


class ClientPool:
    def __init__(self, size: int, *, verify: ssl.SSLContext, **client_options: Any) -> None:
        """``verify`` is shared by all clients: building a context loads the CA store."""
        self.size = size
        self._options = {"verify": verify, **client_options}
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        self._created: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """Borrow a client; waits while all ``size`` are in use."""
        if self._free.empty() and len(self._created) < self.size:
            self._created.append(httpx.AsyncClient(**self._options))
            self._free.put_nowait(self._created[-1])
        client = await self._free.get()
        try:
            yield client
        finally:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._created:
            await client.aclose()


class ServiceConnection:
    """One remote service: its origin, client pool, retry policy and shared backpressure.

    The Defguard, Graph and enrollment-proxy clients differ in what they ask, not in how a
    request is sent, so all send through this. It is also the one place that keeps a service's
    credentials (its headers) at the origin they were configured for: a URL taken from an
    answer, such as Graph's ``@odata.nextLink``, that names another scheme, host or port is
    refused before anything is sent.
    """

    def __init__(
        self,
        service: str,
        size: int,
        *,
        base_url: str,
        verify: ssl.SSLContext,
        policy: RetryPolicy | None = None,
        **client_options: Any,
    ) -> None:
        self.service = service
        self.size = size  # requests in flight at most
        self.base_url = base_url
        self.policy = policy or RetryPolicy()
        self.backpressure = Backpressure()
        self._pool = ClientPool(size, verify=verify, base_url=base_url, **client_options)

    def check_origin(self, url: str) -> None:
        """Refuse ``url`` unless it is relative or names this service's own origin."""
        if not same_origin(url, self.base_url):
            raise OriginRefused(
                f"{self.service} pointed dgprov to {shown_origin(url)}, which is not "
                f"{shown_origin(self.base_url)}; refused, nothing was sent there (a compromised "
                "or misconfigured service, or a proxy rewriting its answers)"
            )

    async def request(
        self,
        method: str,
        url: str,
        *,
        policy: RetryPolicy | None = None,
        limit: AdaptiveLimit | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``policy`` overrides the connection's for this call (e.g. a preflight's short one)."""
        self.check_origin(url)
        async with self._pool.client() as client:
            return await send(
                client,
                method,
                url,
                service=self.service,
                policy=policy or self.policy,
                backpressure=self.backpressure,
                limit=limit,
                **kwargs,
            )

    async def aclose(self) -> None:
        await self._pool.aclose()
