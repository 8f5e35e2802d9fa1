"""HTTP face of the emulated enrollment proxy (``/api/v1/enrollment/...``), proxy v1.6.2.

The real proxy forwards each call to core over gRPC and turns gRPC codes into HTTP statuses with
``{"error": ...}`` bodies (proxy v1.6.2 src/error.rs:35-85: Unauthenticated 401,
InvalidArgument 400, PermissionDenied 403, NotFound 404 with tonic's Display of the status,
"no valid license" 402). The session lives in an encrypted ``defguard_proxy`` cookie that holds
the enrollment token (src/handlers/enrollment.rs); request bodies never carry it. Response keys
follow proto field order (prost structs serialised directly, build.rs), unlike core's sorted
keys. No 2.x proxy is public, so both server lines are served by this one.
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
    TRAFFIC_DISABLE_ALL,
    TRAFFIC_FORCE_ALL,
    Device,
    EnrollmentToken,
    Location,
    ProxyError,
    User,
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


def wg_config(location: Location, address: str, allowed_ips: str) -> str:
    """``Device::create_config`` (v2.0.1 crates/defguard_common/src/db/models/device.rs:651-683,
    v1.6.6 crates/defguard_core/src/db/models/device.rs:574-612): a blank line where there is no
    DNS, no ``AllowedIPs`` line when there are none, and no newline at the end."""
    dns = f"DNS = {location.dns}" if location.dns else ""
    allowed = f"AllowedIPs = {allowed_ips}\n" if allowed_ips else ""
    return (
        f"[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = {address}\n{dns}\n\n"
        f"[Peer]\nPublicKey = {location.pubkey}\n{allowed}"
        f"Endpoint = {location.endpoint}:{location.port}\n"
        f"PersistentKeepalive = {location.keepalive_interval}"
    )


class ProxyHandlers:
    def __init__(self, state: DefguardState) -> None:
        self.state = state
        self.sealer = CookieSealer()

    # ------------------------------------------------------------------------------------- views

    def instance_info(self, user: User) -> dict[str, Any]:
        """``InstanceInfo`` (v1.6.6 crates/defguard_core/src/grpc/mod.rs:818-858; v2.0.1 :172-213):
        ``client_traffic_policy`` is ``Some(policy as i32)`` on both lines."""
        policy = self.state.client_traffic_policy
        return {
            "id": self.state.instance_id,
            "name": self.state.instance_name,
            "url": _trailing_slash(self.state.core_url),
            "proxy_url": _trailing_slash(self.state.public_proxy_url),
            "username": user.username,
            "enterprise_enabled": self.state.enterprise_enabled(),
            "disable_all_traffic": policy == TRAFFIC_DISABLE_ALL,
            "openid_display_name": self.state.openid_display_name,
            "client_traffic_policy": policy,
        }

    def _allowed_ips(self, location: Location) -> list[str]:
        """v1.6.6 ``get_allowed_ips_for_device`` (db/models/wireguard.rs:1501) routes everything
        under FORCE_ALL_TRAFFIC; v2.0.1 leaves that to the client."""
        if self.state.line == "1.6" and self.state.client_traffic_policy == TRAFFIC_FORCE_ALL:
            return ["0.0.0.0/0", "::/0"]
        return location.allowed_ips

    def device_config_response(self, device: Device, token: str | None) -> dict[str, Any]:
        """``DeviceConfigResponse`` (v2.0.1 crates/defguard_core/src/grpc/utils.rs:32-211);
        ``token`` is the polling token, ``None`` when answering a poll."""
        configs = []
        for location in self.state.locations:
            address = device.addresses.get(location.id)
            if address is None:
                continue
            allowed_ips = ",".join(self._allowed_ips(location))  # AsCsv: "," without spaces
            endpoint = f"{location.endpoint}:{location.port}"
            configs.append(
                {
                    "network_id": location.id,
                    "network_name": location.name,
                    "config": wg_config(location, address, allowed_ips),
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
            "instance": self.instance_info(self.state.users_by_id[device.user_id]),
            "token": token,
        }

    def mfa_required(self) -> bool:
        """``EnrollmentSettings.mfa_required``: any location with internal MFA (v2.0.1
        servers/enrollment.rs:252-266), unless the tenant states it (``instance.mfa_required``)."""
        if self.state.mfa_required is not None:
            return self.state.mfa_required
        return any(loc.mfa_mode == "internal" for loc in self.state.locations)

    # ---------------------------------------------------------------------------------- handlers

    def _session(self, request: Request) -> EnrollmentToken:
        """``PrivateCookieJar::get`` yields nothing for a cookie it cannot open, so a forged or
        stale cookie reads as no cookie at all."""
        sealed = request.cookies.get(COOKIE_NAME)
        value = self.sealer.open(sealed) if sealed is not None else None
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
            "instance": self.instance_info(user),
            "settings": {
                "vpn_setup_optional": self.state.vpn_setup_optional,
                "only_client_activation": self.state.only_client_activation,
                "admin_device_management": self.state.admin_device_management,
                "smtp_configured": self.state.smtp_configured,
                "mfa_required": self.mfa_required(),
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
        device, polling_token = self.state.create_device(token, name, pubkey)
        return proxy_json(self.device_config_response(device, polling_token))

    async def network_info(self, request: Request) -> Response:
        reader = BodyReader(await read_json_body(request), "ExistingDevice")
        pubkey = reader.required("pubkey", str)
        token = self._session(request)
        device, polling_token = self.state.network_info(token, pubkey)
        return proxy_json(self.device_config_response(device, polling_token))

    async def poll(self, request: Request) -> Response:
        """proxy v1.6.2 src/handlers/polling.rs; the answer's ``token`` is null
        (v2.0.1 crates/defguard_core/src/enterprise/grpc/polling.rs:92)."""
        reader = BodyReader(await read_json_body(request), "InstanceInfoRequest")
        device = self.state.poll(reader.required("token", str))
        return proxy_json({"device_config": self.device_config_response(device, None)})

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
