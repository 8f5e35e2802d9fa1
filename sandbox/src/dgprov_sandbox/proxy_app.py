"""HTTP face of the emulated enrollment proxy (``/api/v1/enrollment/...``).

The real proxy forwards each call to core over gRPC and turns gRPC codes into HTTP statuses with
``{"error": ...}`` bodies. The session lives in an encrypted ``defguard_proxy`` cookie that holds
the enrollment token; request bodies never carry it. Response keys follow proto field order
(the proxy serialises prost structs directly), unlike core's alphabetical keys.
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .clock import unix_seconds
from .defguard_model import (
    COMPONENT_VERSION,
    MFA_MODE_CODES,
    PROXY_VERSION,
    SERVICE_LOCATION_DISABLED,
    Device,
    EnrollmentToken,
    ProxyError,
)
from .defguard_state import DefguardState
from .http_common import (
    BodyReader,
    ExtraHeaders,
    RequestCounter,
    answering_errors,
    json_response,
    read_json_body,
)

COOKIE_NAME = "defguard_proxy"


def proxy_json(payload: Any, status: int = 200) -> Response:
    return json_response(payload, status, sort_keys=False)


class CookieSealer:
    """Encrypts the enrollment token into the cookie, as axum's ``PrivateCookieJar`` does."""

    def __init__(self) -> None:
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal(self, token: str) -> str:
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, token.encode(), COOKIE_NAME.encode())
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, value: str) -> str | None:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            return self._aead.decrypt(raw[:12], raw[12:], COOKIE_NAME.encode()).decode()
        except (ValueError, InvalidTag):
            return None


def _trailing_slash(url: str) -> str:
    return url if url.endswith("/") else f"{url}/"


class ProxyHandlers:
    def __init__(self, state: DefguardState) -> None:
        self.state = state
        self.sealer = CookieSealer()

    # ------------------------------------------------------------------------------------- views

    def instance_info(self, token: EnrollmentToken) -> dict[str, Any]:
        user = self.state.users_by_id[token.user_id]
        return {
            "id": self.state.instance_id,
            "name": self.state.instance_name,
            "url": _trailing_slash(self.state.core_url),
            "proxy_url": _trailing_slash(self.state.public_proxy_url),
            "username": user.username,
            "enterprise_enabled": self.state.enterprise_enabled(),
            "disable_all_traffic": False,
            "openid_display_name": self.state.openid_display_name,
            "client_traffic_policy": 0 if self.state.line == "2.0" else None,
        }

    def device_config_response(self, token: EnrollmentToken, device: Device) -> dict[str, Any]:
        configs = []
        for location in self.state.locations:
            address = device.addresses.get(location.id)
            if address is None:
                continue
            allowed_ips = ",".join(location.allowed_ips)
            endpoint = f"{location.endpoint}:{location.port}"
            lines = ["[Interface]", "PrivateKey = YOUR_PRIVATE_KEY", f"Address = {address}"]
            if location.dns:
                lines.append(f"DNS = {location.dns}")
            lines += [
                "",
                "[Peer]",
                f"PublicKey = {location.pubkey}",
                f"AllowedIPs = {allowed_ips}",
                f"Endpoint = {endpoint}",
                f"PersistentKeepalive = {location.keepalive_interval}",
                "",
            ]
            configs.append(
                {
                    "network_id": location.id,
                    "network_name": location.name,
                    "config": "\n".join(lines),
                    "endpoint": endpoint,
                    "assigned_ip": address,
                    "pubkey": location.pubkey,
                    "allowed_ips": allowed_ips,
                    "dns": location.dns,
                    "mfa_enabled": location.mfa_mode == "internal",
                    "keepalive_interval": location.keepalive_interval,
                    "location_mfa_mode": MFA_MODE_CODES[location.mfa_mode],
                    "service_location_mode": SERVICE_LOCATION_DISABLED,
                }
            )
        return {
            "device": {
                "id": device.id,
                "name": device.name,
                "pubkey": device.pubkey,
                "user_id": device.user_id,
                "created_at": unix_seconds(device.created),
            },
            "configs": configs,
            "instance": self.instance_info(token),
            "token": self.state.new_polling_token(device),
        }

    # ---------------------------------------------------------------------------------- handlers

    def _session(self, request: Request) -> EnrollmentToken:
        sealed = request.cookies.get(COOKIE_NAME)
        value = self.sealer.open(sealed) if sealed is not None else None
        if sealed is not None and value is None:
            raise ProxyError(401, "Session expired")
        return self.state.session_token(value)

    async def start(self, request: Request) -> Response:
        reader = BodyReader(await read_json_body(request), "EnrollmentStartRequest")
        token = self.state.start_session(reader.required("token", str))
        user = self.state.users_by_id[token.user_id]
        admin = self.state.users_by_id.get(token.admin_id) if token.admin_id else None
        deadline = self.state.deadline(token)
        payload = {
            "admin": (
                {
                    "name": f"{admin.first_name} {admin.last_name}",
                    "phone_number": admin.phone,
                    "email": admin.email,
                }
                if admin
                else None
            ),
            "user": {
                "first_name": user.first_name,
                "last_name": user.last_name,
                "login": user.username,
                "email": user.email,
                "phone_number": user.phone,
                "is_active": user.is_active,
                "device_names": [d.name for d in self.state.user_devices(user)],
                "enrolled": self.state.is_enrolled(user),
                "is_admin": user.is_admin,
            },
            "deadline_timestamp": unix_seconds(deadline),
            "final_page_content": self.state.welcome_message,
            "instance": self.instance_info(token),
            "settings": {
                "vpn_setup_optional": self.state.vpn_setup_optional,
                "only_client_activation": self.state.only_client_activation,
                "admin_device_management": self.state.admin_device_management,
                "smtp_configured": self.state.smtp_configured,
                "mfa_required": any(loc.mfa_mode == "internal" for loc in self.state.locations),
            },
        }
        response = proxy_json(payload)
        expires = format_datetime(deadline.replace(tzinfo=timezone.utc), usegmt=True)
        response.headers.append(
            "set-cookie", f"{COOKIE_NAME}={self.sealer.seal(token.value)}; Expires={expires}"
        )
        return response

    async def activate_user(self, request: Request) -> Response:
        reader = BodyReader(await read_json_body(request), "ActivateUserRequest")
        password = reader.required("password", str)
        phone = reader.optional("phone_number", str)
        token = self._session(request)
        self.state.activate_user(token, password, phone)
        response = Response(b"", status_code=200)
        epoch = format_datetime(datetime(1970, 1, 1, tzinfo=timezone.utc), usegmt=True)
        response.headers.append("set-cookie", f"{COOKIE_NAME}=; Max-Age=0; Expires={epoch}")
        return response

    async def create_device(self, request: Request) -> Response:
        reader = BodyReader(await read_json_body(request), "NewDevice")
        name = reader.required("name", str)
        pubkey = reader.required("pubkey", str)
        token = self._session(request)
        device = self.state.create_device(token, name, pubkey)
        return proxy_json(self.device_config_response(token, device))

    async def network_info(self, request: Request) -> Response:
        reader = BodyReader(await read_json_body(request), "ExistingDevice")
        pubkey = reader.required("pubkey", str)
        token = self._session(request)
        device = self.state.device_for_session(token, pubkey)
        return proxy_json(self.device_config_response(token, device))

    async def poll(self, request: Request) -> Response:
        reader = BodyReader(await read_json_body(request), "InstanceInfoRequest")
        value = reader.required("token", str)
        if not self.state.enterprise_enabled():
            raise ProxyError(402, "Enterprise features are not enabled")
        device = self.state.device_for_polling_token(value)
        user_tokens = [t for t in self.state.tokens.values() if t.user_id == device.user_id]
        owner_token = user_tokens[-1] if user_tokens else None
        if owner_token is None:
            raise ProxyError(401, "invalid token")
        return proxy_json({"device_config": self.device_config_response(owner_token, device)})

    async def info(self, request: Request) -> Response:
        return proxy_json({"version": PROXY_VERSION[self.state.line]})


def build_proxy_app(state: DefguardState, counts: Counter[str]) -> ExtraHeaders:
    handlers = ProxyHandlers(state)

    wrap = answering_errors(
        ProxyError, lambda error: proxy_json({"error": error.message}, error.status)
    )

    async def health(request: Request) -> Response:
        return PlainTextResponse("alive")

    routes = [
        Route("/api/v1/enrollment/start", wrap(handlers.start), methods=["POST"]),
        Route("/api/v1/enrollment/activate_user", wrap(handlers.activate_user), methods=["POST"]),
        Route("/api/v1/enrollment/create_device", wrap(handlers.create_device), methods=["POST"]),
        Route("/api/v1/enrollment/network_info", wrap(handlers.network_info), methods=["POST"]),
        Route("/api/v1/poll", wrap(handlers.poll), methods=["POST"]),
        Route("/api/v1/info", wrap(handlers.info), methods=["GET"]),
        Route("/api/v1/health", health, methods=["GET"]),
        Route("/api/v1/health-grpc", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    counted = RequestCounter(app, app.router, counts)
    return ExtraHeaders(
        counted,
        {
            "defguard-component-version": PROXY_VERSION[state.line],
            "defguard-core-connected": "true",
            "defguard-core-version": COMPONENT_VERSION[state.line],
            "x-powered-by": "Defguard",
        },
    )
