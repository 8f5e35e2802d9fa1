"""Client for the Defguard core REST API (both server lines, 1.6 and 2.0).

Only what provisioning needs: the server line, a group's members (via ``/group-info``, which works
on both lines, unlike ``/group/{name}``), user records in bulk (paginated on 2.0), and enrollment
tokens. Failures become ``DgprovError`` subclasses whose message says what to do; the API token
is sent as a header and never appears in a message.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import math
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from . import __version__
from .answers import Answer
from .credentials import is_token_text
from .errors import (
    AuthenticationError,
    PreflightError,
    RemoteError,
    TransportFailure,
    UsageError,
)
from .gather import gather_or_cancel
from .retry import AdaptiveLimit, RetryPolicy
from .stored_value import ProvisioningConfig
from .transport import ServiceConnection

SERVICE = "Defguard"
PAGE_SIZE = 100
LIST_PASSES = 3  # readings of 2.0's unordered list before members are asked for one by one
MAX_CLOCK_OFFSET = 10 * 365 * 86_400.0  # beyond this the Date header is not believed
MAX_PAGES = 100_000  # 10 million users: far beyond any Defguard instance
PREFLIGHT_POLICY = RetryPolicy(
    attempts=2, max_delay=1.0, deadline=4.0, max_retry_after=2.0, max_throttled=4.0
)
"""The first calls only prove Defguard answers: an unreachable or silent server is reported
within about ten seconds instead of after the issue phase's minutes of retries."""


@dataclass(frozen=True, slots=True)
class DefguardUser:
    username: str
    email: str | None
    is_active: bool
    enrolled: bool
    id: int = 0
    # User devices, where the answer lists them (2.0's UserInfo does, 1.6's does not: see
    # ``device_counts``); sync reads a used token from them.
    devices: int | None = None


@dataclass(frozen=True)
class DefguardGroup:
    id: int
    name: str
    members: tuple[str, ...]


def server_message(response: httpx.Response) -> str:
    """Defguard's ``{"msg": …}``, or the text of an axum rejection, shortened for a report."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("msg"), str):
        return str(body["msg"])
    return response.reason_phrase


class DefguardClient:
    """One Defguard instance, reached with an admin's API token."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        verify: ssl.SSLContext,
        policy: RetryPolicy | None = None,
        max_connections: int = 16,
        token_source: str = "DEFGUARD_API_TOKEN",
    ) -> None:
        self.token_source = token_source  # where the token came from, for the message if refused
        if not is_token_text(api_token):
            raise UsageError(
                "the Defguard API token contains spaces, control or non-ASCII characters and "
                "cannot be sent; copy it again from Defguard (it looks like dg-…) into "
                "DEFGUARD_API_TOKEN or --api-token-file"
            )
        self.base_url = base_url.rstrip("/")
        self.clock_offset = 0.0  # seconds Defguard's clock is ahead of this host's
        # Defguard 2.0 may rate-limit per client address; fewer requests in flight while it
        # refuses keeps every worker's retries for real failures.
        self.limit = AdaptiveLimit(max_connections)
        self.http = ServiceConnection(
            SERVICE,
            max_connections,
            policy=policy,
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_token}", "User-Agent": f"dgprov/{__version__}"},
            verify=verify,
            timeout=httpx.Timeout(30.0),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _request(
        self, method: str, path: str, *, policy: RetryPolicy | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self.http.request(method, path, policy=policy, limit=self.limit, **kwargs)

    def _refusal(self, response: httpx.Response) -> Exception:
        """Errors that mean this run cannot work at all, with the fix."""
        message = server_message(response)
        if response.status_code == 401 and message == "Session is required":
            return PreflightError(
                "Defguard ignored the API token because no Business licence is active (on 1.6: "
                "or the free limits are exceeded); activate a Business or Enterprise licence"
            )
        if response.status_code == 401:
            return AuthenticationError(
                "Defguard refused the API token (unknown, revoked, or its owner is disabled); "
                f"create a new token for an active admin and put it in {self.token_source}"
            )
        if response.status_code == 403:
            return AuthenticationError(
                f"Defguard refused access ({message}); the API token must belong to an active "
                "user in an admin group"
            )
        return RemoteError(SERVICE, response.status_code, message)

    async def _get_json(
        self, path: str, *, policy: RetryPolicy | None = None, **kwargs: Any
    ) -> Answer:
        response = await self._request("GET", path, policy=policy, **kwargs)
        if response.status_code != 200:
            raise self._refusal(response)
        return Answer.of(response, SERVICE)

    async def _preflight_get(self, path: str) -> httpx.Response:
        """A preflight call: short retries, and "unreachable" is a failed preflight (exit 2)."""
        try:
            response = await self._request("GET", path, policy=PREFLIGHT_POLICY)
        except TransportFailure as exc:
            raise PreflightError(str(exc)) from None
        if response.status_code == 404:  # both lines serve every preflight path
            raise PreflightError(
                f"{self.base_url}{path} answered 404, so --url is not Defguard core's address "
                "(the enrollment proxy's, or a path too many?); give the address of Defguard's "
                "web UI, such as https://defguard.example.com"
            )
        if response.status_code != 200:
            raise self._refusal(response)
        return response

    async def server_version(self) -> str:
        """The component version, e.g. ``2.0.1``; also proves the token works, and notes how
        far Defguard's clock (its ``Date``) is from this host's (``clock_offset``)."""
        response = await self._preflight_get("/api/v1/info")
        self.clock_offset = clock_offset(response.headers.get("date"))
        header = response.headers.get("defguard-component-version")
        if header:
            return str(header)
        return Answer.of(response, SERVICE).optional_text("version") or "unknown"

    async def group(self, name: str) -> DefguardGroup:
        answer = Answer.of(await self._preflight_get("/api/v1/group-info"), SERVICE)
        groups = answer.items()
        for group in groups:
            if group.text("name") == name:
                return DefguardGroup(group.integer("id"), name, tuple(group.texts("members")))
        names = sorted(group.text("name") for group in groups)
        hint = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise PreflightError(
            f"Defguard has no group named {name!r} (names are case-sensitive); existing groups: "
            f"{hint or 'none'}"
        )

    async def users(self, members: Sequence[str] = ()) -> dict[str, DefguardUser]:
        """Every user record, through the list endpoint (bare on 1.6, paginated on 2.0), and at
        least every one of ``members``.

        2.0 pages with ``LIMIT/OFFSET`` and no ``ORDER BY``: between two page requests the rows
        may come back in another order (any update moves a row), so a page can repeat users of
        another and miss some entirely. Pages are therefore collected by username (a repeat
        counts once); while fewer users were seen than the list's total, the list is read again,
        up to ``LIST_PASSES`` times; members still unseen are then asked for one by one. The
        group's member list is what must be complete: a member Defguard does not know stays
        absent, and the plan reports it. Reading a pass's pages one after another would not
        order them any better, so they are read as many at a time as the connection allows.
        """
        found: dict[str, DefguardUser] = {}
        # The members' own strings, so each username is held once (memory at 100,000).
        names = {name: name for name in members}

        def keep(items: list[Answer]) -> None:
            for item in items:
                user = user_record(item)
                username = names.get(user.username, user.username)
                found[username] = dataclasses.replace(user, username=username)

        first = await self._get_json("/api/v1/user", params={"page": 1, "per_page": PAGE_SIZE})
        if isinstance(first.value, list):
            keep(first.items())
        else:
            keep(first.items("data"))
            pagination = first.child("pagination")
            pages = page_count(pagination)
            total = pagination.optional_integer("total_items")
            for attempt in range(LIST_PASSES):
                await self._read_pages(range(1 if attempt else 2, pages + 1), keep)
                if total is None or len(found) >= total:
                    break
        missing = [name for name in dict.fromkeys(members) if name not in found]
        for name, user in zip(
            missing, await gather_or_cancel(*(self.user(name) for name in missing)), strict=True
        ):
            if user is not None:
                found[name] = user
        return found

    async def _read_pages(self, pages: range, keep: Callable[[list[Answer]], None]) -> None:
        """``keep`` each page's users as it arrives, as many pages in flight as allowed."""
        todo = iter(pages)

        async def reader() -> None:
            for page in todo:
                body = await self._get_json(
                    "/api/v1/user", params={"page": page, "per_page": PAGE_SIZE}
                )
                keep(body.items("data"))

        await gather_or_cancel(*(reader() for _ in range(min(self.http.size, len(pages)))))

    async def device_counts(self) -> dict[int, int]:
        """User devices per user id, from ``GET /device`` (both lines, one unpaginated answer;
        v1.6.6 crates/defguard_core/src/handlers/wireguard.rs:1266): for 1.6, whose user list
        carries no devices, one request instead of one per member."""
        counts: dict[int, int] = {}
        for device in (await self._get_json("/api/v1/device")).items():
            if _is_user_device(device):
                owner = device.integer("user_id")
                counts[owner] = counts.get(owner, 0) + 1
        return counts

    async def user(self, username: str) -> DefguardUser | None:
        """One user's record (``GET /user/{username}``, both lines), None when Defguard has none."""
        response = await self._request("GET", f"/api/v1/user/{quote(username, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refusal(response)
        return user_record(Answer.of(response, SERVICE).child("user"))

    async def _issue(self, username: str, route: str, body: dict[str, Any]) -> ProvisioningConfig:
        response = await self._request(
            "POST", f"/api/v1/user/{quote(username, safe='')}/{route}", json=body
        )
        if response.status_code != 201:
            if (
                response.status_code == 401
                and server_message(response) != "Enrollment user is disabled"
            ):
                raise self._refusal(response)
            raise RemoteError(SERVICE, response.status_code, server_message(response))
        answer = Answer.of(response, SERVICE)
        return ProvisioningConfig(answer.text("enrollment_url"), answer.text("enrollment_token"))

    async def start_enrollment(self, username: str, expiration: str | None) -> ProvisioningConfig:
        body: dict[str, Any] = {"email": None, "send_enrollment_notification": False}
        if expiration is not None:
            body["token_expiration_time"] = expiration
        return await self._issue(username, "start_enrollment", body)

    async def start_desktop(self, username: str) -> ProvisioningConfig:
        """A token for an already enrolled user; Defguard ignores any custom lifetime here."""
        return await self._issue(username, "start_desktop", {"send_enrollment_notification": False})


def user_record(item: Answer) -> DefguardUser:
    """A user of a list page or of ``GET /user/{username}``, reduced to what dgprov needs."""
    devices = None
    if item.has("devices"):
        devices = sum(1 for d in item.items("devices") if _is_user_device(d))
    return DefguardUser(
        username=item.text("username"),
        email=item.optional_text("email") or None,
        is_active=item.flag("is_active"),
        enrolled=item.flag("enrolled"),
        id=item.optional_integer("id") or 0,
        devices=devices,
    )


def _is_user_device(device: Answer) -> bool:
    """A person's device (``device_type`` ``user``), not a network device."""
    return device.optional_text("device_type") in (None, "user")


def clock_offset(date: str | None) -> float:
    """Seconds from this host's clock to the server's ``Date`` (hyper sends it on every answer);
    0 without a usable one. Token expiry is Defguard's clock, so sync judges it by that."""
    if not date:
        return 0.0
    try:
        moment = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return 0.0
    if moment.tzinfo is None:
        return 0.0
    offset = (moment - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return offset if abs(offset) > 2 and abs(offset) < MAX_CLOCK_OFFSET else 0.0


def page_count(pagination: Answer) -> int:
    """``total_pages`` of a 2.0 list answer, refused when the item count cannot explain it.

    A page count of a billion would keep the workers fetching forever; the item count and page
    size in the same answer say how many pages there can be.
    """
    pages = pagination.optional_integer("total_pages") or 1
    items = pagination.optional_integer("total_items")
    size = pagination.optional_integer("page_size") or PAGE_SIZE
    possible = MAX_PAGES if items is None else math.ceil(max(items, 0) / max(size, 1)) + 1
    if pages < 0 or pages > min(possible, MAX_PAGES):
        raise pagination.invalid(
            f"'total_pages' is {pages}, more than the {min(possible, MAX_PAGES)} pages its "
            "item count allows"
        )
    return pages
