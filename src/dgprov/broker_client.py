"""The one client module for ``dgprov broker``: ``POST {broker}/v1/provisioning``, and
``GET {broker}/v1/config`` when no scope is configured.

The client job sends the user's Entra access token for the broker and gets back exactly what
``provisioning.json`` holds; before that, with only the broker's URL configured, it asks the
broker which scope to sign in for (and its tenant, used when none is set). Everything about
these exchanges is decided here, and nothing else builds broker URLs or reads its answers:

- **Where the token goes.** Only to the origin of ``--broker-url`` (https, or http on loopback),
  through ``transport.ServiceConnection``; a redirect is never followed, since following it would
  hand the bearer token to whoever the answer names.
- **What is accepted.** One attempt (a repeat would rotate the user's token again, and the broker
  rate-limits a user asking twice), a deadline, an answer of at most ``MAX_ANSWER_BYTES``, and a
  JSON object with exactly ``enrollment_url`` and ``enrollment_token`` whose values pass the
  same checks as a stored value. ``/v1/config`` is held to the same origin, no redirect and a
  smaller bound, and must be exactly ``scope`` (the broker's ``<API>/Provision``) and ``tenant``
  (an id or a domain): a broker's answer chooses what the user signs in for, so it is checked
  like a token's destination.
- **What a refusal says.** The broker's ``{"error": code, "message": ...}`` becomes one line that
  names the problem and what the user can do; the server's words are untrusted, so they are cut
  short and stripped of control characters before they reach a terminal or an installer log.
"""

from __future__ import annotations

import math
import re
import ssl
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from . import __version__, environment
from .answers import Answer
from .errors import (
    AuthenticationError,
    DgprovError,
    InvalidAnswer,
    InvalidProvisioningValue,
    NothingFound,
    OriginRefused,
    RemoteError,
    TransportFailure,
    UsageError,
)
from .retry import RetryPolicy, retry_after_seconds
from .stored_value import FILE_TOKEN_KEY, FILE_URL_KEY, ProvisioningConfig
from .transport import ServiceConnection
from .urls import check_service_url, shown_origin

SERVICE = "the broker"
PROVISIONING_PATH = "/v1/provisioning"
CONFIG_PATH = "/v1/config"
CONFIG_KEYS = ("scope", "tenant")
MAX_CONFIG_BYTES = 4 * 1024  # a scope and a tenant
PROVISION_SCOPE = "Provision"  # the delegated scope the broker requires (broker/tokens.py)
TENANT_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")  # id or domain
MAX_ANSWER_BYTES = 64 * 1024
"""An answer holds a URL and a token; anything near this size is not one (``retry`` already
stops reading at 16 MiB, so memory is bounded before this finer check)."""
MAX_SHOWN_CHARACTERS = 200
POLICY = RetryPolicy(attempts=1, deadline=60.0, max_throttled=0.0)
"""One attempt, and a 429 returned at once rather than waited out: asking again rotates the
user's token and counts against their rate limit, and a person or an installer is waiting."""
MAX_SCOPE_LENGTH = 512
T = TypeVar("T")


@dataclass(frozen=True)
class Refusal:
    """What a broker status means for the person running the client job."""

    problem: str
    fix: str
    error: type[DgprovError]


REFUSALS: dict[int, Refusal] = {
    401: Refusal(
        "your sign-in was not accepted",
        "check that --broker-scope is the broker's scope (api://<broker app id>/Provision) and "
        "that this machine's clock is right, then run again",
        AuthenticationError,
    ),
    403: Refusal(
        "you may not be provisioned",
        "ask your administrator to add you to the Defguard group (or to enable your account)",
        NothingFound,
    ),
    404: Refusal(
        "no Defguard user was found for you",
        "ask your administrator to create your Defguard account with your e-mail address",
        NothingFound,
    ),
    409: Refusal(
        "you match more than one Defguard user",
        "ask your administrator to make your e-mail address unique in Defguard and Entra ID",
        NothingFound,
    ),
    429: Refusal("you asked for a token moments ago", "wait {wait} and run again", RemoteError),
    503: Refusal(
        "it cannot reach Defguard or Entra ID right now",
        "run again later; if it persists, tell your administrator",
        RemoteError,
    ),
}
FIXES = {
    "not_in_group": "ask your administrator to add you to the Defguard group",
    "user_disabled": "ask your administrator to enable your Defguard account",
    "account_disabled": "ask your administrator to enable your account",
    "guest_account": "this is a guest account of the tenant, which the broker serves only when "
    "your administrator allows guests (--allow-guests); sign in with your own organisation's "
    "account, or ask your administrator",
    "enrolled": "your Defguard account is enrolled already and this broker issues no token "
    "for it: add this device from the Defguard desktop client, or ask your administrator",
}
"""Finer fixes for the broker's documented 403 codes (docs/broker.md); others get the status's."""
MAX_WAIT_SHOWN = 24 * 3600


def shown(text: object) -> str:
    """A server's words made safe to print: control and format characters (escape sequences,
    bidirectional overrides, line breaks) become spaces, runs of space one, the rest cut short."""
    cleaned = "".join(
        " " if unicodedata.category(character).startswith(("C", "Z")) else character
        for character in str(text)
    )
    collapsed = " ".join(cleaned.split())
    if len(collapsed) > MAX_SHOWN_CHARACTERS:
        return collapsed[: MAX_SHOWN_CHARACTERS - 1] + "…"
    return collapsed


def _wait(retry_after: float | None) -> str:
    if retry_after is None:
        return "a minute"
    return f"{math.ceil(min(retry_after, MAX_WAIT_SHOWN))} s"


def _said(body: object) -> tuple[str, str]:
    """The broker's error code, and its code and message as one shown phrase."""
    code, message = "", ""
    if isinstance(body, dict):
        code, message = shown(body.get("error") or ""), shown(body.get("message") or "")
    return code, ": ".join(part for part in (code, message) if part) or "no explanation"


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def refusal(status: int, body: object, retry_after: float | None = None) -> DgprovError:
    """The one-line error for a broker status ``status`` with the JSON ``body`` it sent (and,
    for 429, the ``Retry-After`` it asked for)."""
    code, said = _said(body)
    known = REFUSALS.get(status)
    if known is None:
        return RemoteError(SERVICE, status, f"{said}; run again later or tell your administrator")
    fix = FIXES.get(code, known.fix) if status == 403 else known.fix
    text = f"{known.problem} ({said}); {fix.format(wait=_wait(retry_after))}"
    if known.error is RemoteError:
        return RemoteError(SERVICE, status, text)
    return known.error(f"{SERVICE} answered {status}: {text}")


def check_broker_url(url: str) -> str:
    """``--broker-url``: https, or http on a loopback address; no credentials inside."""
    return check_service_url(url, "--broker-url")


def check_broker_scope(scope: str) -> str:
    """``--broker-scope``: one scope such as ``api://<broker app id>/Provision``."""
    if not scope or len(scope) > MAX_SCOPE_LENGTH or any(c.isspace() for c in scope):
        raise UsageError(
            "--broker-scope must be one scope without spaces, such as "
            "api://<broker app id>/Provision"
        )
    if "/" not in scope:
        raise UsageError(
            f"--broker-scope {scope!r} names no API: pass the broker's full scope, such as "
            f"api://<broker app id>/{scope}"
        )
    return scope


@dataclass(frozen=True)
class BrokerSettings:
    """What ``GET /v1/config`` told: the scope to sign in for, and the broker's tenant."""

    scope: str
    tenant: str


def read_settings(answer: Answer) -> BrokerSettings:
    """The 200 answer of ``/v1/config``: exactly ``scope`` and ``tenant``, each usable."""
    if not isinstance(answer.value, dict) or sorted(answer.value) != sorted(CONFIG_KEYS):
        raise answer.invalid("expected an object with exactly scope and tenant")
    scope, tenant = answer.text("scope"), answer.text("tenant")
    try:
        check_broker_scope(scope)
    except UsageError:
        raise answer.invalid(
            "the scope is not one scope such as api://<app id>/Provision"
        ) from None
    if scope.rpartition("/")[2] != PROVISION_SCOPE:
        raise answer.invalid(f"the scope is not the broker's {PROVISION_SCOPE} scope")
    if not TENANT_NAME.fullmatch(tenant):
        raise answer.invalid("the tenant is not a tenant id or domain")
    return BrokerSettings(scope, tenant)


def _tenant_id(text: str) -> str | None:
    """``text`` as a tenant id (a GUID, lower case); None for a domain or anything else."""
    try:
        return str(uuid.UUID(text)) if len(text) == 36 else None
    except ValueError:
        return None


def check_tenant(told: BrokerSettings, authority_url: str, broker_url: str) -> None:
    """Refuse, before anyone signs in, a broker of another tenant than the one this machine
    signs in to: it would refuse every token. Only ids are compared (two domains, or a domain
    and an id, may name one tenant)."""
    path = urlsplit(authority_url).path.strip("/").split("/")
    signs_in_to, serves = _tenant_id(path[0]), _tenant_id(told.tenant)
    if signs_in_to and serves and signs_in_to != serves:
        raise UsageError(
            f"{SERVICE} at {shown_origin(broker_url)} serves tenant {serves}, but this machine "
            f"signs in to tenant {signs_in_to}: correct --tenant ({environment.TENANT}) or "
            "--authority, or --broker-url"
        )


def read_provisioning(answer: Answer) -> ProvisioningConfig:
    """The 200 answer: exactly the two keys of ``provisioning.json``, each a usable value."""
    if not isinstance(answer.value, dict):
        raise answer.invalid("expected an object with enrollment_url and enrollment_token")
    extra = sorted(set(answer.value) - {FILE_URL_KEY, FILE_TOKEN_KEY})
    if extra:
        names = ", ".join(shown(name)[:40] for name in extra[:3])
        raise answer.invalid(
            f"unexpected keys ({names}); expected exactly {FILE_URL_KEY} and {FILE_TOKEN_KEY}"
        )
    config = ProvisioningConfig(answer.text(FILE_URL_KEY), answer.text(FILE_TOKEN_KEY))
    try:
        return config.validated()
    except InvalidProvisioningValue as exc:
        raise answer.invalid(str(exc)) from None


class BrokerClient:
    """A connection to one broker; ``provision(access_token)`` is its only call."""

    def __init__(self, broker_url: str, *, verify: ssl.SSLContext) -> None:
        self.base_url = check_broker_url(broker_url)
        self.http = ServiceConnection(
            SERVICE,
            1,
            base_url=self.base_url,
            policy=POLICY,
            verify=verify,
            timeout=30,
            follow_redirects=False,
            headers={"User-Agent": f"dgprov/{__version__}", "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _ask(
        self, method: str, path: str, limit: int, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request to the broker's own origin: a redirect and an oversized answer refused."""
        url = self.base_url + path
        response = await self.http.request(method, url, headers=headers)
        status = response.status_code
        if 300 <= status < 400:
            raise OriginRefused(
                f"{SERVICE} at {shown_origin(url)} answered with a redirect ({status}) to "
                f"{shown_origin(response.headers.get('location', ''))}; refused, your sign-in is "
                "sent to --broker-url only: check the URL (https, the exact address of the broker)"
            )
        if len(response.content) > limit:
            raise InvalidAnswer(
                SERVICE, status, f"the answer is larger than {limit // 1024} KiB; refused"
            )
        return response

    async def settings(self) -> BrokerSettings:
        """The broker's scope and tenant, asked without a token (nobody has signed in yet)."""
        response = await self._ask("GET", CONFIG_PATH, MAX_CONFIG_BYTES)
        status = response.status_code
        if status in (404, 405):  # a broker from before /v1/config
            raise UsageError(
                f"{SERVICE} at {shown_origin(self.base_url)} does not tell its scope "
                f"(GET {CONFIG_PATH} answered {status}): give --broker-scope or set "
                f"{environment.BROKER_SCOPE}, such as api://<broker app id>/Provision"
            )
        if status != 200:
            said = _said(_body(response))[1]
            raise RemoteError(
                SERVICE,
                status,
                f"GET {CONFIG_PATH}: {said}; run again later or tell your administrator",
            )
        return read_settings(Answer.of(response, SERVICE))

    async def provision(self, access_token: str) -> ProvisioningConfig:
        """The user's enrollment URL and a fresh token, minted by the broker for this sign-in."""
        response = await self._ask(
            "POST",
            PROVISIONING_PATH,
            MAX_ANSWER_BYTES,
            headers={"Authorization": f"Bearer {access_token}"},
        )
        status = response.status_code
        if status != 200:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
            raise refusal(status, _body(response), retry_after)
        return read_provisioning(Answer.of(response, SERVICE))


async def _once(
    broker_url: str, verify: ssl.SSLContext, ask: Callable[[BrokerClient], Awaitable[T]]
) -> T:
    """One call on a connection opened and closed around it."""
    client = BrokerClient(broker_url, verify=verify)
    try:
        return await ask(client)
    except httpx.HTTPError as exc:  # e.g. a body that does not decode as its Content-Encoding
        raise TransportFailure(
            f"{SERVICE}'s answer could not be read ({type(exc).__name__}); check --broker-url "
            "(a proxy in between?) and run again"
        ) from None
    finally:
        await client.aclose()


async def fetch_provisioning(
    broker_url: str, access_token: str, *, verify: ssl.SSLContext
) -> ProvisioningConfig:
    """The user's enrollment URL and a fresh token (``BrokerClient.provision``)."""
    return await _once(broker_url, verify, lambda client: client.provision(access_token))


async def fetch_settings(broker_url: str, *, verify: ssl.SSLContext) -> BrokerSettings:
    """The broker's scope and tenant (``BrokerClient.settings``)."""
    return await _once(broker_url, verify, lambda client: client.settings())
