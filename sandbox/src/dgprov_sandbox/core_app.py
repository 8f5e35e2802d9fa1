"""HTTP face of the emulated Defguard core (``/api/v1/...``) and the inspection API.

Each handler runs the same extractor order as the axum handler it emulates: authentication and
role, then ``User-Agent``, then path parameters, then the JSON body. The order matters because a
client sees the *first* failure only. A ``CoreCrash`` (a panic: release builds abort) is answered
with nothing at all; ``http_common.CrashDropper`` then closes the connection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .clock import naive_iso
from .core_views import device_record, device_view, group_info, paginate, token_view, user_info
from .defguard_model import (
    COMPONENT_VERSION,
    CoreCrash,
    CoreError,
    EnrollmentToken,
    Session,
    StartRequest,
    sha256_hex,
)
from .defguard_state import DefguardState
from .http_common import (
    ASGIApp,
    BodyReader,
    ExtraHeaders,
    Rejection,
    RequestCounter,
    Unanswered,
    answering_errors,
    json_response,
    read_json_body,
)


def core_json(payload: Any, status: int = 200) -> Response:
    return json_response(payload, status, sort_keys=True)


def _error_response(error: CoreError) -> Response:
    return core_json({} if error.message is None else {"msg": error.message}, error.status)


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
        """``ApiRequestContext`` (v2.0.1 handlers/mod.rs:606): the header must be present; an
        empty value is a valid ``UserAgent``."""
        if "user-agent" not in request.headers:
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
        """``list_users``: no ORDER BY on either line (v2.0.1 handlers/user.rs:190-217,
        v1.6.6 :154-164), so the order is the state's scan order (``--user-list-order``)."""
        self._admin(request)
        users = self.state.users_in_scan_order()
        if self.state.line == "1.6":
            return core_json([user_info(self.state, u) for u in users])
        page = paginate(request, users)
        page["data"] = [user_info(self.state, u) for u in page["data"]]
        return core_json(page)

    async def list_devices(self, request: Request) -> Response:
        """``list_devices`` (v1.6.6 crates/defguard_core/src/handlers/wireguard.rs:1266, v2.0.1
        :1261): admin only, every device in one unpaginated answer (``Device::all``)."""
        self._admin(request)
        return core_json([device_record(d) for d in self.state.devices.values()])

    async def me(self, request: Request) -> Response:
        """``GET /me`` (v2.0.1 handlers/user.rs:1263, v1.6.6 :1281): the caller's UserInfo."""
        session = self.state.authenticate(request.headers.get("authorization"))
        return core_json(user_info(self.state, session.user))

    async def settings(self, request: Request) -> Response:
        """``GET /settings``, AdminRole (v2.0.1 crates/defguard_core/src/handlers/settings.rs:28).
        2.0 keeps the enrollment settings in the database and serializes them with the rest
        (v2.0.1 crates/defguard_common/src/db/models/settings.rs:246,255, private fields are
        serialized too): ``public_proxy_url`` and ``enrollment_token_timeout_hours``, the
        lifetime ``start_desktop`` gives (handlers/user.rs:599). 1.6 reads both from its
        configuration (v1.6.6 crates/defguard_common/src/config.rs:106-111), so its settings
        have neither. A few other fields stand in for the rest of the record."""
        self._admin(request)
        body: dict[str, Any] = {
            "instance_name": self.state.instance_name,
            "enrollment_vpn_step_optional": self.state.vpn_setup_optional,
        }
        if self.state.line == "2.0":
            body["public_proxy_url"] = self.state.public_proxy_url
            body["enrollment_token_timeout_hours"] = self.state.token_timeout // timedelta(hours=1)
        return core_json(body)

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
        """Extractors in order: ``LicenseInfo`` (so the licence is checked before the caller),
        ``AdminRole``, ``ApiRequestContext`` (User-Agent), path, JSON body (v2.0.1
        crates/defguard_core/src/enterprise/handlers/api_tokens.rs:27-35, v1.6.6 :28-36)."""
        if not self.state.enterprise_enabled():
            raise CoreError(403, "Enterprise features are disabled")
        session = self._admin(request)
        self._require_user_agent(request)
        name = BodyReader(await read_json_body(request), "AddApiTokenData").required("name", str)
        token = self.state.add_api_token(session, request.path_params["username"], name)
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
        if request.method == "POST":
            try:
                active = (await request.json())["active"]
                assert isinstance(active, bool)
            except (ValueError, KeyError, TypeError, AssertionError):
                return core_json({"msg": 'send {"active": true|false}'}, 400)
            with self.state.lock:
                self.state.set_active(user, active)
        polling = self.state.polling_tokens
        return core_json(
            {
                "enrolled": self.state.is_enrolled(user),
                "enrollment_pending": user.enrollment_pending,
                "has_password": user.has_password(),
                "is_active": user.is_active,
                "ldap_remote_enrollment_completed": user.ldap_remote_enrollment_completed,
                "phone": user.phone,
                "devices": [
                    device_view(self.state, d)
                    | {
                        "polling_tokens_sha256": [
                            sha256_hex(v) for v, i in polling.items() if i == d.id
                        ]
                    }
                    for d in self.state.user_devices(user)
                ],
                "username": user.username,
            }
        )

    async def inspect_group_members(self, request: Request) -> Response:
        """Add (``POST {"username": ...}``) or remove (``DELETE .../{username}``) a member, as an
        administrator would in Defguard (``DefguardDirectory.add_member``/``remove_member``)."""
        group = self.state.groups.get(request.path_params["name"])
        if group is None:
            return core_json({"msg": "no such group"}, 404)
        if request.method == "POST":
            try:
                username = (await request.json())["username"]
                assert isinstance(username, str)
            except (ValueError, KeyError, TypeError, AssertionError):
                return core_json({"msg": 'send {"username": "..."}'}, 400)
        else:
            username = request.path_params["username"]
        user = self.state.users.get(username)
        if user is None:
            return core_json({"msg": "no such user"}, 404)
        with self.state.lock:
            if request.method == "POST":
                self.state.add_member(group, user)
            else:
                self.state.remove_member(group, user)
        return core_json({"members": list(group.members), "name": group.name})

    async def inspect_requests(self, request: Request) -> Response:
        return core_json({"requests": dict(self.counts), "restarts": self.state.restarts})

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


def build_core_app(
    state: DefguardState,
    counts: Counter[str],
    limiter: Callable[[ASGIApp], ASGIApp] | None = None,
) -> ExtraHeaders:
    """The core app with its routes, error mapping, the 2.0 rate limiter (``limiter`` wraps the
    routed app) and, outermost, the version header: v2.0.1 crates/defguard_core/src/lib.rs:752
    puts ``DefguardVersionLayer`` outside the limiter, so a 429 carries it too."""
    handlers = CoreHandlers(state, counts)

    answer = answering_errors(CoreError, _error_response)

    def wrap(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await answer(handler)(request)
            except CoreCrash:
                return Unanswered()
            return response

        return endpoint

    routes = [
        Route("/api/v1/info", wrap(handlers.info), methods=["GET"]),
        Route("/api/v1/group", wrap(handlers.list_groups), methods=["GET"]),
        Route("/api/v1/group-info", wrap(handlers.list_groups_info), methods=["GET"]),
        Route("/api/v1/group/{key}", wrap(handlers.get_group), methods=["GET"]),
        Route("/api/v1/me", wrap(handlers.me), methods=["GET"]),
        Route("/api/v1/settings", wrap(handlers.settings), methods=["GET"]),
        Route("/api/v1/device", wrap(handlers.list_devices), methods=["GET"]),
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
        Route("/_sandbox/users/{username}", handlers.inspect_user, methods=["GET", "POST"]),
        Route("/_sandbox/groups/{name}/members", handlers.inspect_group_members, methods=["POST"]),
        Route(
            "/_sandbox/groups/{name}/members/{username}",
            handlers.inspect_group_members,
            methods=["DELETE"],
        ),
        Route("/_sandbox/requests", handlers.inspect_requests, methods=["GET"]),
        Route("/_sandbox/clock", handlers.advance_clock, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    counted: ASGIApp = RequestCounter(app, app.router, counts)
    if limiter is not None:
        counted = limiter(counted)
    return ExtraHeaders(counted, {"defguard-component-version": COMPONENT_VERSION[state.line]})
