"""HTTP face of the emulated Defguard core (``/api/v1/...``) and the inspection API.

Each handler runs the same extractor order as the axum handler it emulates: authentication and
role, then ``User-Agent``, then path parameters, then the JSON body. The order matters because a
client sees the *first* failure only.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .clock import naive_iso
from .defguard_model import (
    COMPONENT_VERSION,
    CoreError,
    Device,
    EnrollmentToken,
    Group,
    Session,
    StartRequest,
    User,
    sha256_hex,
)
from .defguard_state import DefguardState
from .http_common import (
    BodyReader,
    ExtraHeaders,
    Rejection,
    RequestCounter,
    answering_errors,
    json_response,
    read_json_body,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


def core_json(payload: Any, status: int = 200) -> Response:
    return json_response(payload, status, sort_keys=True)


def _error_response(error: CoreError) -> Response:
    return core_json({} if error.message is None else {"msg": error.message}, error.status)


# ------------------------------------------------------------------------------------------ views


def device_view(state: DefguardState, device: Device) -> dict[str, Any]:
    networks = []
    for location in state.locations:
        if location.id not in device.addresses:
            continue
        network: dict[str, Any] = {
            "device_wireguard_ips": [device.addresses[location.id]],
            "is_active": False,
            "last_connected_at": None,
            "last_connected_ip": None,
            "network_gateway_ip": location.endpoint,
            "network_id": location.id,
            "network_name": location.name,
        }
        if state.line == "2.0":
            network["location_mfa_mode"] = location.mfa_mode
        else:
            network["last_connected_location"] = None
        networks.append(network)
    return {
        "configured": True,
        "created": naive_iso(device.created),
        "description": None,
        "device_type": "user",
        "id": device.id,
        "name": device.name,
        "networks": networks,
        "user_id": device.user_id,
        "wireguard_pubkey": device.pubkey,
    }


def user_info(state: DefguardState, user: User) -> dict[str, Any]:
    """``UserInfo`` in the shape of the running server line."""
    info: dict[str, Any] = {
        "authorized_apps": [],
        "email": user.email,
        "email_mfa_enabled": False,
        "enrolled": state.is_enrolled(user),
        "first_name": user.first_name,
        "groups": list(user.groups),
        "id": user.id,
        "is_active": user.is_active,
        "is_admin": user.is_admin,
        "last_name": user.last_name,
        "ldap_pass_requires_change": False,
        "mfa_enabled": False,
        "mfa_method": "None",
        "phone": user.phone,
        "totp_enabled": False,
        "username": user.username,
    }
    if state.line == "2.0":
        info["name"] = f"{user.first_name} {user.last_name}"
        info["devices"] = [device_view(state, d) for d in state.user_devices(user)]
    return info


def group_info(state: DefguardState, group: Group, *, include_allow_all: bool) -> dict[str, Any]:
    return {
        "id": group.id,
        "is_admin": group.is_admin,
        "members": list(group.members),
        "name": group.name,
        "vpn_locations": state.group_vpn_locations(group, include_allow_all=include_allow_all),
    }


def paginate(request: Request, items: list[Any]) -> dict[str, Any]:
    """Defguard 2.0 pagination: ``page`` >= 1, ``per_page`` clamped to 1..100."""
    query = dict(parse_qsl(request.url.query))
    numbers = {}
    for key, default in (("page", 1), ("per_page", DEFAULT_PAGE_SIZE)):
        raw = query.get(key)
        try:
            numbers[key] = default if raw is None else int(raw)
        except ValueError:
            raise Rejection(
                400, f"Failed to deserialize query string: {key}: invalid digit found in string"
            ) from None
    page = max(1, numbers["page"])
    per_page = min(MAX_PAGE_SIZE, max(1, numbers["per_page"]))
    total_pages = math.ceil(len(items) / per_page)
    return {
        "data": items[(page - 1) * per_page : page * per_page],
        "pagination": {
            "current_page": page,
            "next_page": page + 1 if page < total_pages else None,
            "page_size": per_page,
            "total_items": len(items),
            "total_pages": total_pages,
        },
    }


def token_view(state: DefguardState, token: EnrollmentToken) -> dict[str, Any]:
    """Inspection view of a token: its hash, never its value."""
    admin = state.users_by_id.get(token.admin_id) if token.admin_id else None
    return {
        "admin": admin.username if admin else None,
        "created_at": naive_iso(token.created_at),
        "email": token.email,
        "expires_at": naive_iso(token.expires_at),
        "issued_by": token.via,
        "kind": token.kind,
        "token_sha256": sha256_hex(token.value),
        "used_at": naive_iso(token.used_at) if token.used_at else None,
        "username": state.users_by_id[token.user_id].username,
    }


# --------------------------------------------------------------------------------------- handlers


class CoreHandlers:
    """Route handlers bound to one ``DefguardState``."""

    def __init__(self, state: DefguardState, counts: Counter[str]) -> None:
        self.state = state
        self.counts = counts

    def _admin(self, request: Request) -> Session:
        session = self.state.authenticate(request.headers.get("authorization"))
        self.state.require_admin(session)
        return session

    @staticmethod
    def _require_user_agent(request: Request) -> None:
        if not request.headers.get("user-agent"):
            raise CoreError(400, "Missing UserAgent header")

    async def info(self, request: Request) -> Response:
        self.state.authenticate(request.headers.get("authorization"))
        return core_json(
            {
                "external_openid_enabled": False,
                "ldap_info": {"ad": False, "enabled": False},
                "network_present": bool(self.state.locations),
                "smtp_enabled": self.state.smtp_configured,
                "version": COMPONENT_VERSION[self.state.line],
            }
        )

    async def get_group(self, request: Request) -> Response:
        self._admin(request)
        raw = request.path_params["key"]
        if self.state.line == "1.6":
            return core_json(
                group_info(self.state, self.state.find_group(raw), include_allow_all=True)
            )
        try:
            group_id = int(raw)
        except ValueError:
            raise Rejection(400, f"Invalid URL: Cannot parse `{raw}` to a `i64`") from None
        group = self.state.find_group(group_id)
        return core_json(group_info(self.state, group, include_allow_all=True))

    async def list_groups(self, request: Request) -> Response:
        self._admin(request)
        names = list(self.state.groups)
        if self.state.line == "1.6":
            return core_json({"groups": names})
        return core_json(paginate(request, names))

    async def list_groups_info(self, request: Request) -> Response:
        self._admin(request)
        return core_json(
            [group_info(self.state, g, include_allow_all=False) for g in self.state.groups.values()]
        )

    async def list_users(self, request: Request) -> Response:
        self._admin(request)
        users = list(self.state.users.values())
        if self.state.line == "1.6":
            return core_json([user_info(self.state, u) for u in users])
        page = paginate(request, users)
        page["data"] = [user_info(self.state, u) for u in page["data"]]
        return core_json(page)

    async def get_user(self, request: Request) -> Response:
        session = self.state.authenticate(request.headers.get("authorization"))
        user = self.state.get_user(request.path_params["username"])
        if not session.user.is_admin and session.user.id != user.id:
            raise CoreError(403, "requires privileged access")
        info = user_info(self.state, user)
        details: dict[str, Any] = {
            "biometric_enabled_devices": [],
            "security_keys": [],
            "user": info,
        }
        if self.state.line == "1.6":
            details["devices"] = [device_view(self.state, d) for d in self.state.user_devices(user)]
        return core_json(details)

    async def _start_request(self, request: Request) -> StartRequest:
        reader = BodyReader(await read_json_body(request), "StartEnrollmentRequest")
        return StartRequest(
            send_enrollment_notification=reader.defaulted(
                "send_enrollment_notification", bool, False
            ),
            email=reader.optional("email", str),
            token_expiration_time=reader.optional("token_expiration_time", str),
        )

    def _token_created(self, token: EnrollmentToken) -> Response:
        return core_json(
            {
                "enrollment_token": token.value,
                "enrollment_url": _url_string(self.state.public_proxy_url),
            },
            201,
        )

    async def start_enrollment(self, request: Request) -> Response:
        session = self._admin(request)
        self._require_user_agent(request)
        body = await self._start_request(request)
        token = self.state.start_enrollment(session, request.path_params["username"], body)
        return self._token_created(token)

    async def start_desktop(self, request: Request) -> Response:
        session = self.state.authenticate(request.headers.get("authorization"))
        self._require_user_agent(request)
        body = await self._start_request(request)
        token = self.state.start_desktop(session, request.path_params["username"], body)
        return self._token_created(token)

    async def add_api_token(self, request: Request) -> Response:
        self._admin(request)
        if not self.state.enterprise_enabled():
            raise CoreError(403, "Enterprise features are disabled")
        owner = self.state.get_user(request.path_params["username"])
        name = BodyReader(await read_json_body(request), "AddApiTokenData").required("name", str)
        if not owner.is_admin:
            raise CoreError(403, "Cannot create API token for non-admin user")
        if not owner.is_active:
            raise CoreError(403, "Cannot create API token for inactive user")
        token = self.state.add_api_token(owner, name)
        return core_json({"token": token}, 201)

    # ------------------------------------------------------------------ inspection (``/_sandbox``)

    async def inspect_tokens(self, request: Request) -> Response:
        username = request.query_params.get("username")
        with self.state.lock:
            tokens = [
                token_view(self.state, t)
                for t in self.state.tokens.values()
                if username is None or self.state.users_by_id[t.user_id].username == username
            ]
        return core_json({"tokens": tokens})

    async def inspect_user(self, request: Request) -> Response:
        user = self.state.users.get(request.path_params["username"])
        if user is None:
            return core_json({"msg": "no such user"}, 404)
        return core_json(
            {
                "enrolled": self.state.is_enrolled(user),
                "enrollment_pending": user.enrollment_pending,
                "has_password": user.has_password(),
                "is_active": user.is_active,
                "devices": [device_view(self.state, d) for d in self.state.user_devices(user)],
                "username": user.username,
            }
        )

    async def inspect_requests(self, request: Request) -> Response:
        return core_json({"requests": dict(self.counts)})

    async def advance_clock(self, request: Request) -> Response:
        """Move the sandbox clock forward, so expiry can be tested without sleeping."""
        try:
            seconds = float((await request.json())["advance_seconds"])
            self.state.clock.advance(seconds)
        except (ValueError, KeyError, TypeError):
            return core_json({"msg": 'send {"advance_seconds": N} with N >= 0'}, 400)
        return core_json({"now": naive_iso(self.state.clock.now())})


def _url_string(url: str) -> str:
    """``Url::parse(..).to_string()``: an empty path becomes ``/``; unparseable is a 500."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise CoreError(500, "Internal server error")
    return url if parts.path else f"{url}/"


def build_core_app(state: DefguardState, counts: Counter[str]) -> ExtraHeaders:
    """The core app with its routes, error mapping and version header."""
    handlers = CoreHandlers(state, counts)

    wrap = answering_errors(CoreError, _error_response)

    routes = [
        Route("/api/v1/info", wrap(handlers.info), methods=["GET"]),
        Route("/api/v1/group", wrap(handlers.list_groups), methods=["GET"]),
        Route("/api/v1/group-info", wrap(handlers.list_groups_info), methods=["GET"]),
        Route("/api/v1/group/{key}", wrap(handlers.get_group), methods=["GET"]),
        Route("/api/v1/user", wrap(handlers.list_users), methods=["GET"]),
        Route("/api/v1/user/{username}", wrap(handlers.get_user), methods=["GET"]),
        Route(
            "/api/v1/user/{username}/start_enrollment",
            wrap(handlers.start_enrollment),
            methods=["POST"],
        ),
        Route(
            "/api/v1/user/{username}/start_desktop", wrap(handlers.start_desktop), methods=["POST"]
        ),
        Route("/api/v1/user/{username}/api_token", wrap(handlers.add_api_token), methods=["POST"]),
        Route("/_sandbox/tokens", handlers.inspect_tokens, methods=["GET"]),
        Route("/_sandbox/users/{username}", handlers.inspect_user, methods=["GET"]),
        Route("/_sandbox/requests", handlers.inspect_requests, methods=["GET"]),
        Route("/_sandbox/clock", handlers.advance_clock, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    counted = RequestCounter(app, app.router, counts)
    return ExtraHeaders(counted, {"defguard-component-version": COMPONENT_VERSION[state.line]})
