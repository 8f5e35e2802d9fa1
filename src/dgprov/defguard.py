"""Client for the Defguard core REST API (both server lines, 1.6 and 2.0).

Only what provisioning needs: the server line, a group's members (via ``/group-info``, which works
on both lines, unlike ``/group/{name}``), user records in bulk (paginated on 2.0), and enrollment
tokens. Failures become ``DgprovError`` subclasses whose message says what to do; the API token
is sent as a header and never appears in a message.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from . import __version__
from .errors import AuthenticationError, PreflightError, RemoteError
from .retry import RetryPolicy
from .stored_value import ProvisioningConfig
from .transport import ServiceConnection

SERVICE = "Defguard"
PAGE_SIZE = 100
PAGE_WORKERS = 8


@dataclass(frozen=True, slots=True)
class DefguardUser:
    username: str
    email: str | None
    is_active: bool
    enrolled: bool


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
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

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, **kwargs)

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
                "create a new token for an active admin and pass it in DEFGUARD_API_TOKEN"
            )
        if response.status_code == 403:
            return AuthenticationError(
                f"Defguard refused access ({message}); the API token must belong to an active "
                "user in an admin group"
            )
        return RemoteError(SERVICE, response.status_code, message)

    async def _get_json(self, path: str, **kwargs: Any) -> Any:
        response = await self._request("GET", path, **kwargs)
        if response.status_code != 200:
            raise self._refusal(response)
        return response.json()

    async def server_version(self) -> str:
        """The component version, e.g. ``2.0.1``; also proves the token works."""
        response = await self._request("GET", "/api/v1/info")
        if response.status_code != 200:
            raise self._refusal(response)
        header = response.headers.get("defguard-component-version")
        body = response.json()
        return str(header or body.get("version") or "unknown")

    async def group(self, name: str) -> DefguardGroup:
        groups = await self._get_json("/api/v1/group-info")
        for group in groups:
            if group.get("name") == name:
                return DefguardGroup(int(group["id"]), name, tuple(group.get("members") or ()))
        names = sorted(str(g.get("name")) for g in groups)
        hint = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise PreflightError(
            f"Defguard has no group named {name!r} (names are case-sensitive); existing groups: "
            f"{hint or 'none'}"
        )

    async def users(self) -> dict[str, DefguardUser]:
        """Every user record, through the list endpoint (bare on 1.6, paginated on 2.0).

        On 2.0 the first page tells how many there are; the rest are fetched by a few workers,
        each page reduced to the fields dgprov needs as soon as it arrives.
        """
        found: dict[str, DefguardUser] = {}

        def keep(items: list[dict[str, Any]]) -> None:
            for item in items:
                found[item["username"]] = DefguardUser(
                    username=item["username"],
                    email=item.get("email") or None,
                    is_active=bool(item.get("is_active")),
                    enrolled=bool(item.get("enrolled")),
                )

        first = await self._get_json("/api/v1/user", params={"page": 1, "per_page": PAGE_SIZE})
        if isinstance(first, list):
            keep(first)
            return found
        keep(first["data"])
        pages = iter(range(2, int(first["pagination"].get("total_pages") or 1) + 1))

        async def fetch() -> None:
            for page in pages:
                body = await self._get_json(
                    "/api/v1/user", params={"page": page, "per_page": PAGE_SIZE}
                )
                keep(body["data"])

        await asyncio.gather(*(fetch() for _ in range(PAGE_WORKERS)))
        return found

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
        payload = response.json()
        return ProvisioningConfig(payload["enrollment_url"], payload["enrollment_token"])

    async def start_enrollment(self, username: str, expiration: str | None) -> ProvisioningConfig:
        body: dict[str, Any] = {"email": None, "send_enrollment_notification": False}
        if expiration is not None:
            body["token_expiration_time"] = expiration
        return await self._issue(username, "start_enrollment", body)

    async def start_desktop(self, username: str) -> ProvisioningConfig:
        """A token for an already enrolled user; Defguard ignores any custom lifetime here."""
        return await self._issue(username, "start_desktop", {"send_enrollment_notification": False})
