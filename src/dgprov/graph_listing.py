"""Microsoft Graph, part two: the one listing of every user that ``dgprov sync`` reads, and the
answer helpers both parts share. ``GraphClient`` (``graph.py``) is the class callers use; it
inherits this listing, so Graph is still reached through one client.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from .addresses import confusable, fold, skeleton
from .answers import Answer
from .directory import DirectoryUser, Matches, Stored
from .errors import PreflightError
from .stored_value import (
    ENTRA_EXPIRY_ATTRIBUTE,
    ENTRA_TOKEN_ATTRIBUTE,
    ENTRA_URL_ATTRIBUTE,
    NO_DIGEST,
    ProvisioningConfig,
    checked_expiry,
    token_digest,
)

SERVICE = "Microsoft Graph"
CSA_PROPERTY = "customSecurityAttributes"
MAX_LISTING_PAGES = 100_000  # of 999 users: far beyond any tenant


def error_body(response: httpx.Response) -> Any:
    """The JSON of an error answer, or None: an error page need not be JSON."""
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def graph_error(body: Any, fallback: str) -> tuple[str, str]:
    """``(code, message)`` of a Graph error envelope."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code", "")), str(error.get("message", fallback))
    return "", fallback


class GraphListing:
    """The listing; ``_request`` is ``GraphClient``'s (a current token, one retry after 401)."""

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    async def list_users(
        self, set_name: str, wanted: Iterable[str] | None, digests: bool = True
    ) -> tuple[Matches, dict[str, Stored]]:
        """One listing of every user with their custom security attributes, 999 a page ("List
        all users with a custom security attribute assignment", customsecurityattributes-
        examples): the holders of a token in ``set_name`` (by lower-cased object id), and with
        ``wanted`` addresses the users they match, stage by stage as ``find_users`` finds them.

        sync needs the holders, including users who left the Defguard group, whom no member
        lookup would find, and Graph cannot filter on "has a value" outside advanced queries;
        once the whole tenant is listed anyway, matching the members from the same pages saves
        the lookups. Only matches and holders are kept, a holder's token only as a digest.
        """
        keys = {fold(k) for k in wanted} if wanted is not None else set()
        fields = "id,userPrincipalName" + (
            ",mail,otherMails,accountEnabled,userType" if keys else ""
        )
        query = urlencode({"$select": f"{fields},{CSA_PROPERTY}", "$top": "999"}, quote_via=quote)
        stages: list[dict[str, tuple[DirectoryUser, ...]]] = [{}, {}, {}]
        alike: dict[str, list[tuple[str, DirectoryUser]]] = {}
        held: dict[str, Stored] = {}
        expiries: dict[str, str] = {}  # one string per distinct expiry
        link: str | None = f"/users?{query}"
        seen: set[str] = set()
        while link is not None:
            response = await self._request("GET", link)
            if response.status_code != 200:
                _, message = graph_error(error_body(response), response.reason_phrase)
                raise PreflightError(
                    f"{SERVICE} answered {response.status_code} to the listing of users "
                    f"({message}); nothing was changed, run again later"
                )
            page = Answer.of(response, SERVICE)
            for item in page.items("value"):
                stored = stored_in(item, set_name, digests)
                if stored is not None:
                    if stored.expires_at is not None or stored.url is not None:
                        # One string per distinct expiry and URL (memory at 100,000).
                        expiry = stored.expires_at and expiries.setdefault(
                            stored.expires_at, stored.expires_at
                        )
                        url = stored.url and expiries.setdefault(stored.url, stored.url)
                        stored = Stored(stored.object_id, stored.upn, stored.digest, expiry, url)
                    held[_lowered(stored.object_id)] = stored
                if keys:
                    _index(user_value(item), keys, stages, alike)
            link = page.optional_text("@odata.nextLink")
            if link is not None and (link in seen or len(seen) >= MAX_LISTING_PAGES):
                raise page.invalid("'@odata.nextLink' repeats an earlier page or never ends")
            seen.add(link or "")
        return Matches(list(zip(STAGE_NAMES, stages, strict=True)), confusable=alike), held


STAGE_NAMES = ("mail", "userPrincipalName", "otherMails")


def _lowered(text: str) -> str:
    """An object id lower-cased as sync keys them, the same string object when it already is
    (memory at 100,000)."""
    lowered = text.lower()
    return text if lowered == text else lowered


def _index(
    value: dict[str, Any],
    keys: set[str],
    stages: list[dict[str, tuple[DirectoryUser, ...]]],
    alike: dict[str, list[tuple[str, DirectoryUser]]],
) -> None:
    """Add a listed user to each stage (mail, userPrincipalName, otherMails) whose address of
    theirs is one of ``keys``, and to ``alike`` where one only looks like a key (every stage
    counts: ``plan`` refuses an address that finds two objects)."""
    found: list[tuple[int, str]] = []
    resembling: list[tuple[int, str]] = []
    for stage, addresses in enumerate(
        (
            [value.get("mail") or ""],
            [value.get("userPrincipalName") or ""],
            value.get("otherMails") or [],
        )
    ):
        for address in addresses:
            if (key := fold(address)) in keys:
                found.append((stage, key))
            elif confusable(address) and (plain := skeleton(address)) in keys:
                resembling.append((stage, plain))
    if not found and not resembling:
        return
    user = directory_user(value)
    for stage, key in found:
        stages[stage][key] = (*stages[stage].get(key, ()), user)
    for stage, key in resembling:
        alike.setdefault(key, []).append((STAGE_NAMES[stage], user))


def user_value(item: Answer) -> dict[str, Any]:
    """A user object of a lookup page, its fields of the types the lookup relies on."""
    item.text("id")
    item.optional_text("userPrincipalName")
    item.optional_text("mail")
    item.texts("otherMails")
    item.optional_text("userType")
    value: dict[str, Any] = item.value
    return value


def directory_user(value: dict[str, Any]) -> DirectoryUser:
    """A checked user object (``user_value``) as the planning logic sees it."""
    upn, mail = value.get("userPrincipalName"), value.get("mail")
    return DirectoryUser(
        value["id"],
        upn,
        upn if mail == upn else mail,  # one string where both are the same (memory)
        enabled=value.get("accountEnabled") is not False,
        guest=is_guest(value.get("userType")),
    )


def is_guest(user_type: str | None) -> bool:
    """Whether Graph's ``userType`` says guest. Graph documents ``Member`` and ``Guest``, but the
    value is a free string to a reader, and its case says nothing about who someone is: a
    ``guest`` spelled otherwise is still refused. Missing or null stays a member (accounts
    created before the property existed have none)."""
    return user_type is not None and fold(user_type) == "guest"


def stored_in(item: Answer, set_name: str, digests: bool = True) -> Stored | None:
    """The token a listed user holds in ``set_name`` (as a digest) and sync's expiry beside it."""
    if not item.has(CSA_PROPERTY):
        return None
    sets = item.child(CSA_PROPERTY)
    name = next((k for k in sets.value if k.lower() == set_name.lower()), None)
    if name is None:
        return None
    values = sets.child(name)
    token = values.optional_text(ENTRA_TOKEN_ATTRIBUTE)
    if not token:
        return None
    url = values.optional_text(ENTRA_URL_ATTRIBUTE)
    pair = ProvisioningConfig(url, token) if url is not None else None
    return Stored(
        item.text("id"),
        item.optional_text("userPrincipalName"),
        token_digest(token) if digests else NO_DIGEST,
        checked_expiry(pair, values.optional_text(ENTRA_EXPIRY_ATTRIBUTE)),
        url,
    )
