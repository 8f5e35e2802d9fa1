"""Client for Microsoft Graph: find users in bulk and store custom security attributes.

Everything goes through ``$batch`` (20 requests per round trip). Lookups put up to 15 addresses
in one ``in (...)`` filter or ``or`` chain, escaping quotes by doubling them and percent-encoding
the whole query (a raw ``+`` would reach Graph as a space and silently match nothing). Graph
refuses more than 15 child clauses and string values over 120 characters in a filter outside
advanced queries, so neither is ever sent: a longer address cannot be looked up at all. Writes
are idempotent PATCHes, so items refused with 429/503/504 inside a batch are simply sent again
after the largest ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from . import __version__
from .addresses import confusable, fold, skeleton
from .answers import Answer
from .directory import DirectoryUser, Matches, WriteResult
from .errors import AuthenticationError, InvalidAnswer, PreflightError, RemoteError
from .graph_listing import (
    SERVICE,
    GraphListing,
    directory_user,
    error_body,
    graph_error,
    user_value,
)
from .retry import AdaptiveLimit, RetryPolicy, retry_after_seconds
from .stored_value import (
    ENTRA_ATTRIBUTES,
    ENTRA_EXPIRY_ATTRIBUTE,
    ProvisioningConfig,
    to_entra_attributes,
)
from .transport import ServiceConnection

BATCH_SIZE = 20
FILTER_VALUES = 15  # Graph's limit on the values of `in` and the child clauses of `or`
MAX_FILTER_VALUE = 120  # characters of one string value in a filter
UNSEARCHABLE = (
    f"e-mail address longer than Graph can search ({MAX_FILTER_VALUE} characters); no token issued"
)
LOOKUP_SLICE = BATCH_SIZE * 8  # filter requests in flight per slice
SELECT = "id,userPrincipalName,mail,otherMails,accountEnabled,userType"
CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"
RETRYABLE_ITEM_STATUSES = frozenset({429, 500, 502, 503, 504})
ITEM_ERROR_ATTEMPTS = 8  # for 5xx items; throttled items wait as long as Graph asks
MAX_THROTTLED_SECONDS = 900.0
BATCHES_IN_FLIGHT = 4
MAX_LOOKUP_PAGES = 100  # pages of one 15-address filter: a few users each is all there can be

TokenProvider = Callable[[bool], str]
"""Returns a Graph access token; ``True`` asks for a fresh one (after a 401)."""


def odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in_filter(field: str) -> Callable[[list[str]], str]:
    return lambda chunk: f"{field} in ({','.join(map(odata_string, chunk))})"


LOOKUP_STAGES: list[
    tuple[str, Callable[[list[str]], str], Callable[[dict[str, Any]], Iterable[str]]]
] = [
    ("mail", _in_filter("mail"), lambda user: [user.get("mail") or ""]),
    (
        "userPrincipalName",
        _in_filter("userPrincipalName"),
        lambda user: [user.get("userPrincipalName") or ""],
    ),
    (
        "otherMails",
        lambda chunk: " or ".join(f"otherMails/any(m:m eq {odata_string(e)})" for e in chunk),
        lambda user: user.get("otherMails") or [],
    ),
]
"""Name, filter of up to 15 addresses, and the user's values it compares, of each stage."""


class GraphClient(GraphListing):
    def __init__(
        self,
        graph_url: str,
        token_provider: TokenProvider,
        *,
        verify: ssl.SSLContext,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.graph_url = graph_url.rstrip("/")
        self.token_provider = token_provider
        self.batches = AdaptiveLimit(BATCHES_IN_FLIGHT)
        self.http = ServiceConnection(
            SERVICE,
            BATCHES_IN_FLIGHT + 1,
            policy=policy,
            base_url=self.graph_url,
            headers={"User-Agent": f"dgprov/{__version__}"},
            verify=verify,
            timeout=httpx.Timeout(60.0),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with a current access token; after a 401, once more with a fresh one."""
        for fresh in (False, True):
            headers = {"Authorization": f"Bearer {self.token_provider(fresh)}"}
            response = await self.http.request(method, path, headers=headers, **kwargs)
            if response.status_code != 401:
                return response
        _, message = graph_error(error_body(response), "")
        raise AuthenticationError(
            f"Microsoft Graph refused the access token ({message}); sign in again"
        )

    # ---------------------------------------------------------------------------- preflight

    async def check_attribute_set(self, set_name: str) -> None:
        """Both attributes must be defined, Available, single-valued Strings."""
        for attribute in ENTRA_ATTRIBUTES:
            await self.defines(set_name, attribute, required=True)

    async def defines(self, set_name: str, attribute: str, *, required: bool = False) -> bool:
        """Whether ``set_name.attribute`` is an Available single-valued String attribute; an
        undefined one is False (a ``PreflightError`` when ``required``), a wrong one an error."""
        response = await self._request(
            "GET",
            "/directory/customSecurityAttributeDefinitions/"
            + quote(f"{set_name}_{attribute}", safe=""),
        )
        if response.status_code == 403:
            raise PreflightError(
                "the signed-in account cannot read custom security attribute definitions; it "
                "needs the Attribute Assignment Administrator role and consent to "
                "CustomSecAttributeDefinition.Read.All"
            )
        if response.status_code == 404 and not required:
            return False
        if response.status_code == 404:
            raise PreflightError(
                f"Entra has no custom security attribute {set_name}.{attribute}; an Attribute "
                f"Definition Administrator must define the set {set_name!r} with the String "
                f"attributes {' and '.join(ENTRA_ATTRIBUTES)} (see the README)"
            )
        if response.status_code != 200:
            _, message = graph_error(error_body(response), response.reason_phrase)
            raise PreflightError(
                f"reading {set_name}.{attribute} failed ({response.status_code}: {message})"
            )
        definition = Answer.of(response, SERVICE)
        if definition.optional_text("type") != "String" or definition.flag("isCollection"):
            raise PreflightError(f"{set_name}.{attribute} must be a single-valued String attribute")
        if definition.optional_text("status") != "Available":
            raise PreflightError(f"{set_name}.{attribute} is deactivated; reactivate it in Entra")
        return True

    # -------------------------------------------------------------------------------- batch

    async def _batch(self, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Send items (``id``, ``method``, ``url``, …) in batches of 20; retry refused items.

        Throttled items are retried for as long as Graph keeps naming a time to come back (up to
        ``MAX_THROTTLED_SECONDS`` of waiting); items failing with 5xx get a few attempts only.
        """
        results: dict[str, dict[str, Any]] = {}
        errors: dict[str, int] = {}
        pending = list(items)
        throttled_for = 0.0
        while pending:
            answers = await self._send_batches(pending)
            retry: list[dict[str, Any]] = []
            waits: list[float] = []
            for item in pending:
                answer = answers[item["id"]]
                status = answer["status"]
                if status not in RETRYABLE_ITEM_STATUSES:
                    results[item["id"]] = answer
                    continue
                if status != 429:
                    errors[item["id"]] = errors.get(item["id"], 0) + 1
                    if errors[item["id"]] >= ITEM_ERROR_ATTEMPTS:
                        results[item["id"]] = answer
                        continue
                headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
                wait = retry_after_seconds(headers.get("retry-after"))
                waits.append(
                    wait
                    if wait is not None
                    else self.http.policy.backoff(errors.get(item["id"], 1))
                )
                retry.append(item)
            pending = retry
            if pending:
                wait = max(waits)
                throttled_for += wait
                if throttled_for > MAX_THROTTLED_SECONDS:
                    for item in pending:
                        results[item["id"]] = answers[item["id"]]
                    break
                self.http.backpressure.hold(wait)
                await self.http.backpressure.wait()
        return results

    async def _send_batches(self, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """One ``$batch`` request per 20 items, as many in flight as Graph currently tolerates."""

        async def one(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
            async with self.batches:
                await self.http.backpressure.wait()
                response = await self._request("POST", "/$batch", json={"requests": chunk})
                if response.status_code != 200:
                    _, message = graph_error(error_body(response), response.reason_phrase)
                    raise RemoteError(SERVICE, response.status_code, message)
                answers = batch_answers(Answer.of(response, SERVICE), chunk)
                if any(a["status"] == 429 for a in answers):
                    self.batches.throttled()
                else:
                    self.batches.succeeded()
                return answers

        chunks = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
        answered = await asyncio.gather(*(one(chunk) for chunk in chunks))
        return {answer["id"]: answer for answers in answered for answer in answers}

    # ------------------------------------------------------------------------------- lookups

    async def _lookup(self, emails: Sequence[str]) -> Matches:
        """Every stage's filters for ``emails``, stage after stage (a failing stage stops the
        lookup before the next is sent)."""
        chunks = [list(emails[i : i + FILTER_VALUES]) for i in range(0, len(emails), FILTER_VALUES)]
        found: list[dict[str, list[DirectoryUser]]] = [{} for _ in LOOKUP_STAGES]
        alike: dict[str, list[tuple[str, DirectoryUser]]] = {}
        wanted = set(emails)
        for stage, (name, build_filter, values_of) in enumerate(LOOKUP_STAGES):
            # A slice of batches at a time, each answer reduced to DirectoryUsers before the
            # next: for 100,000 addresses the raw answers would otherwise all be in memory.
            for first in range(0, len(chunks), LOOKUP_SLICE):
                items = []
                for index, chunk in enumerate(chunks[first : first + LOOKUP_SLICE], first):
                    query = urlencode(
                        {"$filter": build_filter(chunk), "$select": SELECT, "$top": "999"},
                        quote_via=quote,
                    )
                    items.append({"id": str(index), "method": "GET", "url": f"/users?{query}"})
                for answer in (await self._batch(items)).values():
                    for value in await self._all_values(answer):
                        user = directory_user(value)
                        for address in values_of(value):
                            if (folded := fold(address)) in wanted:
                                found[stage].setdefault(folded, []).append(user)
                            elif confusable(address) and (plain := skeleton(address)) in wanted:
                                # Graph's own case folding found it: not the address asked for
                                alike.setdefault(plain, []).append((name, user))
        names = [name for name, _, _ in LOOKUP_STAGES]
        return Matches(list(zip(names, found, strict=True)), confusable=alike)

    async def _all_values(self, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The users of one lookup answer, following ``@odata.nextLink`` to the end.

        The end must come: a link seen before, or more pages than a 15-address filter can
        have, is an error rather than a loop. Links to another origin never receive the token
        (``ServiceConnection`` refuses them).
        """
        status, body = answer["status"], answer.get("body")
        seen: set[str] = set()
        values: list[dict[str, Any]] = []
        while True:
            if status != 200:
                # A failed page is a failed lookup, never "not found": the users on it are
                # unknown, and planning without them would skip members who exist.
                _, message = graph_error(body, "lookup failed")
                where = f"page {len(seen) + 1} of " if seen else ""
                raise PreflightError(
                    f"{SERVICE} answered {status} to {where}a user lookup ({message}); "
                    "nothing was changed, run again later"
                )
            page = Answer(SERVICE, status, body)
            values += [user_value(item) for item in page.items("value")]
            next_link = page.optional_text("@odata.nextLink")
            if next_link is None:
                return values
            if next_link in seen or len(seen) >= MAX_LOOKUP_PAGES:
                raise page.invalid(
                    "'@odata.nextLink' repeats an earlier page"
                    if next_link in seen
                    else f"more than {MAX_LOOKUP_PAGES} pages for one lookup"
                )
            seen.add(next_link)
            response = await self._request("GET", next_link)
            status, body = response.status_code, error_body(response)
            if status == 200:
                body = Answer.of(response, SERVICE).value

    async def find_users(self, emails: Iterable[str]) -> Matches:
        """Every address in every stage: an address found on two objects under different keys
        is ambiguous, so no stage may stop the search early."""
        addresses = sorted({fold(e) for e in emails})
        # A look-alike address is refused by the plan, whatever Graph would make of it.
        searchable = [e for e in addresses if len(e) <= MAX_FILTER_VALUE and not confusable(e)]
        too_long = {e: UNSEARCHABLE for e in addresses if len(e) > MAX_FILTER_VALUE}
        return dataclasses.replace(await self._lookup(searchable), unsearchable=too_long)

    async def user_by_id(self, object_id: str) -> tuple[DirectoryUser, list[str]] | None:
        """One user and the addresses members match it by (mail, UPN, otherMails, folded),
        or None when Graph has no such user; for the broker, which knows the object id."""
        response = await self._request(
            "GET", f"/users/{quote(object_id, safe='')}", params={"$select": SELECT}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            _, message = graph_error(error_body(response), response.reason_phrase)
            raise RemoteError(SERVICE, response.status_code, message)
        value = user_value(Answer.of(response, SERVICE))
        user = directory_user(value)
        addresses = [value.get("mail") or "", value.get("userPrincipalName") or ""]
        addresses += value.get("otherMails") or []
        return user, list(dict.fromkeys(fold(a) for a in addresses if a))

    # ------------------------------------------------------------------------- the user's own

    async def my_attribute_set(self, set_name: str) -> tuple[str, dict[str, Any] | None]:
        """The signed-in user's UPN and their values in ``set_name``.

        None when Graph answers ``customSecurityAttributes: null``, which means either that
        nothing is assigned or that the caller may not read them; Graph does not say which.
        """
        response = await self._request(
            "GET", "/me", params={"$select": "userPrincipalName,customSecurityAttributes"}
        )
        if response.status_code != 200:
            _, message = graph_error(
                response.json() if response.content else None, response.reason_phrase
            )
            raise RemoteError(SERVICE, response.status_code, message)
        body = Answer.of(response, SERVICE)
        upn = body.optional_text("userPrincipalName") or ""
        if not body.has("customSecurityAttributes"):
            return upn, None
        sets = body.child("customSecurityAttributes")
        name = next((k for k in sets.value if k.lower() == set_name.lower()), None)
        return upn, dict(sets.child(name).value) if name is not None else {}

    # -------------------------------------------------------------------------------- writes

    async def write_attributes(
        self,
        set_name: str,
        assignments: Sequence[tuple[str, ProvisioningConfig]],
        expiries: Mapping[str, str] | None = None,
    ) -> dict[str, WriteResult]:
        """``(user_id, config)`` pairs -> result per user id; with ``expiries`` (where the set
        defines it) ``EnrollmentTokenExpiresAt`` is written in the same PATCH, null for a user
        without one."""
        changes: list[tuple[str, Mapping[str, str | None]]] = []
        for user_id, config in assignments:
            values: dict[str, str | None] = {**to_entra_attributes(config)}
            if expiries is not None:
                values[ENTRA_EXPIRY_ATTRIBUTE] = expiries.get(user_id)
            changes.append((user_id, values))
        return await self._patch_attributes(set_name, changes)

    async def clear_attributes(
        self, set_name: str, user_ids: Sequence[str], attributes: Sequence[str]
    ) -> dict[str, WriteResult]:
        """Remove the assignments: Graph removes a custom security attribute value set to null
        ("Remove a single-valued custom security attribute assignment from a user", Microsoft
        Learn, customsecurityattributes-examples)."""
        nulls: dict[str, str | None] = dict.fromkeys(attributes)
        return await self._patch_attributes(set_name, [(user_id, nulls) for user_id in user_ids])

    async def _patch_attributes(
        self, set_name: str, changes: Sequence[tuple[str, Mapping[str, str | None]]]
    ) -> dict[str, WriteResult]:
        items = [
            {
                "id": str(index),
                "method": "PATCH",
                "url": f"/users/{quote(user_id, safe='')}",
                "headers": {"Content-Type": "application/json"},
                "body": {
                    "customSecurityAttributes": {set_name: {"@odata.type": CSA_TYPE, **values}}
                },
            }
            for index, (user_id, values) in enumerate(changes)
        ]
        answers = await self._batch(items)
        results: dict[str, WriteResult] = {}
        for index, (user_id, _) in enumerate(changes):
            answer = answers[str(index)]
            _, message = graph_error(answer.get("body"), "")
            status = answer["status"]
            results[user_id] = WriteResult(status == 204, f"{status}: {message}", status == 403)
        return results


def batch_answers(batch: Answer, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``responses`` of a ``$batch`` answer: one per request sent, each with its status."""
    answers: list[dict[str, Any]] = []
    for item in batch.items("responses"):
        item.text("id")
        item.integer("status")
        if item.has("headers"):
            item.child("headers")
        answers.append(item.value)
    missing = {request["id"] for request in chunk} - {answer["id"] for answer in answers}
    if missing:
        raise InvalidAnswer(
            SERVICE, batch.status, f"the $batch answer has no response for request {min(missing)}"
        )
    return answers
