"""Validating the Entra access tokens the broker receives, as Microsoft documents for a web API.

Signature against the tenant's published keys (found through the authority's OpenID
configuration, cached; an unknown ``kid`` refetches the keys once, at most once per floor
interval, so a stream of forged key ids cannot make the broker hammer the authority; the daily
refresh runs in the background while requests are served with the current keys), ``alg``
from an allow-list (RS256: never ``none``, never HMAC, whose "secret" would be the public key),
``iss`` of the configured tenant in its v1 or v2 form, ``aud`` the broker's client id or App ID
URI, ``exp``/``nbf`` with a small leeway, ``tid`` the tenant, the delegated scope ``Provision``
in ``scp``, and a user, not an app-only caller.

Every refusal is a ``TokenRejected`` whose message says what was wrong and never quotes the token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import jwt

from ..answers import Answer
from ..errors import DgprovError
from ..retry import RetryPolicy
from ..tls import tls_context
from ..transport import ServiceConnection
from .config import GUID

SERVICE = "the Entra authority"
ALGORITHMS = ["RS256"]  # what Entra signs access tokens with
SCOPE = "Provision"
LEEWAY_SECONDS = 60  # clock skew between Entra, the client and the broker
MAX_TOKEN_BYTES = 16 * 1024  # Entra tokens are a few KB; anything larger is not one
MAX_KEYS = 64
KEYS_MAX_AGE_SECONDS = 24 * 3600  # Microsoft: check the key set at least daily
AUTHORITY_POLICY = RetryPolicy(attempts=2, max_delay=0.5, deadline=10.0, max_retry_after=2.0)


class TokenRejected(Exception):
    """The access token is not acceptable; the message says why (401)."""


class KeysUnavailable(DgprovError):
    """The authority's configuration or keys could not be read (503)."""


@dataclass(frozen=True)
class Caller:
    """Who the validated token says is asking."""

    object_id: str
    upn: str | None


class KeySet:
    """The tenant's signing keys and accepted issuers, read from its OpenID configuration."""

    def __init__(
        self,
        authority_url: str,
        *,
        ca_bundle: str | None,
        refetch_floor: float,
        timer: Callable[[str, str], AbstractContextManager[None]],
    ) -> None:
        self.authority_url = authority_url.rstrip("/")
        self.refetch_floor = refetch_floor
        self.timer = timer  # times each fetch (metrics)
        self.http = ServiceConnection(
            SERVICE,
            2,
            base_url=self.authority_url,
            verify=tls_context(ca_bundle),
            policy=AUTHORITY_POLICY,
        )
        self.keys: dict[str, Any] = {}
        self.issuers: list[str] = []
        self.tenant_id = ""
        self.fetches = 0
        self._fetched_at = float("-inf")
        self._unknown_kid_at = float("-inf")
        self._failed_at = float("-inf")
        self._failure = ""
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return bool(self.keys)

    @property
    def refreshing(self) -> bool:
        """Whether a fetch of the keys is in flight."""
        return self._refreshing is not None

    async def aclose(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        await self.http.aclose()

    async def key(self, kid: str) -> Any:
        """The key with ``kid``: stale-while-revalidate.

        Only a request that cannot be answered with the keys at hand waits: before the first
        load, and for a ``kid`` the set does not hold (once per floor, or by joining the fetch
        already under way). A day-old set is refreshed in the background, and requests go on
        with it meanwhile: an authority that drops connections costs its own fetch ten
        seconds, never the requests (Entra rolls keys over weeks, so the old set is still the
        tenant's).
        """
        now = time.monotonic()
        if not self.loaded:
            await self.refresh()
        elif (
            now - self._fetched_at > KEYS_MAX_AGE_SECONDS
            and now - self._failed_at >= self.refetch_floor
        ):
            self._start_refresh()  # not awaited: the current keys serve meanwhile
        if kid not in self.keys:
            if self._refreshing is None and (
                time.monotonic() - self._unknown_kid_at >= self.refetch_floor
            ):
                self._unknown_kid_at = time.monotonic()
                self._start_refresh()
            if self._refreshing is not None:
                await asyncio.shield(self._refreshing)
        if kid not in self.keys:
            raise TokenRejected(
                "the token is signed with a key the tenant does not publish (unknown kid)"
            )
        return self.keys[kid]

    async def refresh(self) -> None:
        """Fetch now, or wait for the fetch already under way; ``KeysUnavailable`` if it fails."""
        await asyncio.shield(self._start_refresh())

    def _start_refresh(self) -> asyncio.Task[None]:
        """The one fetch in flight, started if there is none: requests share it, and one that
        gives up (a client gone) does not cancel it for the others (``shield``)."""
        if self._refreshing is None:
            task = asyncio.ensure_future(self._fetch_guarded())
            task.add_done_callback(self._refreshed)
            self._refreshing = task
        return self._refreshing

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing = None
        if not task.cancelled():
            task.exception()  # retrieved: a background fetch's failure is kept in _failure

    async def _fetch_guarded(self) -> None:
        """A fetch, unless one failed within the floor: anonymous requests arrive faster than
        the authority should be asked, and each would otherwise try again."""
        if time.monotonic() - self._failed_at < self.refetch_floor:
            raise KeysUnavailable(self._failure)
        try:
            await self._fetch()
        except KeysUnavailable as exc:
            self._failed_at, self._failure = time.monotonic(), str(exc)
            raise

    async def _get(self, url: str) -> Answer:
        try:
            response = await self.http.request("GET", url)
        except DgprovError as exc:
            raise KeysUnavailable(str(exc)) from None
        if response.status_code != 200:
            raise KeysUnavailable(f"{SERVICE} answered {response.status_code} to {url}")
        try:
            return Answer.of(response, SERVICE)
        except DgprovError as exc:
            raise KeysUnavailable(str(exc)) from None

    async def _fetch(self) -> None:
        with self.timer("authority", "keys"):
            await self._fetch_keys()

    async def _fetch_keys(self) -> None:
        config = await self._get(f"{self.authority_url}/v2.0/.well-known/openid-configuration")
        issuer = config.text("issuer")
        tenant_id = issuer.rstrip("/").removesuffix("/v2.0").rsplit("/", 1)[-1].lower()
        if not GUID.match(tenant_id):
            raise KeysUnavailable(
                f"{SERVICE} names no tenant id in its issuer; --tenant must name one tenant"
            )
        keys: dict[str, Any] = {}
        for item in (await self._get(config.text("jwks_uri"))).items("keys")[:MAX_KEYS]:
            value = item.value
            if not isinstance(value, dict) or value.get("kty") != "RSA":
                continue
            if value.get("use", "sig") != "sig" or not isinstance(value.get("kid"), str):
                continue
            try:
                keys[value["kid"]] = jwt.PyJWK(value, algorithm="RS256").key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # one unusable key does not spoil the others
        if not keys:
            raise KeysUnavailable(f"{SERVICE} publishes no usable RSA signing key")
        self.keys, self.tenant_id = keys, tenant_id
        # v2.0 tokens name the v2 issuer; v1.0 tokens (accessTokenAcceptedVersion null or 1)
        # the STS of the same tenant.
        self.issuers = [issuer, f"https://sts.windows.net/{tenant_id}/"]
        self._fetched_at = time.monotonic()
        self.fetches += 1


class TokenValidator:
    """Turns a bearer token into a ``Caller``, or refuses it with the reason."""

    def __init__(self, keys: KeySet, client_id: str, allowed_clients: Sequence[str] = ()) -> None:
        self.keys = keys
        self.audiences = [client_id, f"api://{client_id}"]
        self.allowed_clients = frozenset(c.strip().lower() for c in allowed_clients)

    async def validate(self, token: str) -> Caller:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected("the token is larger than any Entra access token")
        header = unverified_header(token)
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejected("the token's signing algorithm is not accepted (RS256 only)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no signing key (kid)")
        claims = self._decode(token, await self.keys.key(kid))
        caller = self._caller(claims)
        if self.allowed_clients:
            # The app the user signed in to: azp in v2.0 tokens, appid in v1.0 ones. Without
            # this, a token any consented app obtained for the user (a phishing app too) works.
            client = str(claims.get("azp") or claims.get("appid") or "").lower()
            if client not in self.allowed_clients:
                raise TokenRejected(
                    "the token was requested by a client app this broker does not accept; "
                    "sign in with dgprov fetch-config"
                )
        return caller

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audiences,
                issuer=self.keys.issuers,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iss", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired; sign in again") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("the token is not valid yet (nbf in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(
                "the token is for another audience; request the broker's scope "
                f"(api://{self.audiences[0]}/{SCOPE})"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("the token was issued by another tenant or authority") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise TokenRejected("the token is malformed") from None
        if str(claims.get("tid", "")).lower() != self.keys.tenant_id:
            raise TokenRejected("the token was issued by another tenant or authority")
        return claims

    @staticmethod
    def _caller(claims: dict[str, Any]) -> Caller:
        scopes = str(claims.get("scp", "")).split()
        if claims.get("idtyp") == "app" or (not scopes and "roles" in claims):
            raise TokenRejected("an app-only token; the broker provisions signed-in users only")
        if SCOPE not in scopes:
            raise TokenRejected(f"the token lacks the delegated scope {SCOPE!r} in scp")
        object_id = str(claims.get("oid", "")).lower()
        if not GUID.match(object_id):
            raise TokenRejected("the token names no user (oid)")
        upn = claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name")
        return Caller(object_id, str(upn)[:256] if upn else None)


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to choose the key; ``jwt.decode`` then checks everything.

    Read here rather than with ``jwt.get_unverified_header``, which validates every segment
    character by character, work ``jwt.decode`` repeats (a third of the broker's CPU).
    """
    head, dot, rest = token.partition(".")
    if not dot or rest.count(".") != 1 or len(head) > 1024:
        raise TokenRejected("the bearer value is not a JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        raise TokenRejected("the bearer value is not a JWT") from None
    if not isinstance(header, dict):
        raise TokenRejected("the bearer value is not a JWT")
    return header
