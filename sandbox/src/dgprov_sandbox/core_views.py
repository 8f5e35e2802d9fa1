"""The JSON shapes of core's answers, per server line: ``UserInfo``, ``GroupInfo``, devices,
2.0's pagination, and the inspection view of an enrollment token.

Core serialises ``serde_json::Value`` without ``preserve_order``, so ``core_app`` sorts keys;
the shapes follow v2.0.1 ``crates/defguard_common/src/types/user_info.rs`` and v1.6.6
``crates/defguard_core/src/db/models/mod.rs`` (``UserInfo``, ``UserDevice``), and
``crates/defguard_core/src/handlers/pagination.rs`` (v2.0.1).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from .clock import naive_iso
from .defguard_model import Device, EnrollmentToken, Group, User, sha256_hex
from .defguard_state import DefguardState
from .http_common import Rejection
from .rust_rules import RustParseError, parse_u32

MIN_PAGE = 1
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


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
    return device_record(device) | {"networks": networks}


def device_record(device: Device) -> dict[str, Any]:
    """``Device`` as ``GET /device`` serialises it: the table's columns, no networks (v1.6.6
    crates/defguard_core/src/db/models/device.rs:82-97, v2.0.1
    crates/defguard_common/src/db/models/device.rs:78)."""
    return {
        "configured": True,
        "created": naive_iso(device.created),
        "description": None,
        "device_type": "user",
        "id": device.id,
        "name": device.name,
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


def pagination_params(query: str) -> tuple[int, int]:
    """``Query<PaginationParams>`` (v2.0.1 crates/defguard_core/src/handlers/pagination.rs:24-118).

    serde_urlencoded parses each value with ``str::parse::<u32>`` and axum reports the first
    failure through serde_path_to_error (axum-v0.8.9 axum/src/extract/query.rs:88-95) as
    "Failed to deserialize query string: <key>: <error>". Then ``page`` >= 1 and ``per_page``
    is clamped to 1..100. Other keys are ignored.
    """
    found: dict[str, int] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        if key not in ("page", "per_page"):
            continue
        if key in found:
            raise Rejection(400, f"Failed to deserialize query string: duplicate field `{key}`")
        try:
            found[key] = parse_u32(raw)
        except RustParseError as error:
            raise Rejection(400, f"Failed to deserialize query string: {key}: {error}") from None
    page = max(MIN_PAGE, found.get("page", MIN_PAGE))
    per_page = min(MAX_PAGE_SIZE, max(1, found.get("per_page", DEFAULT_PAGE_SIZE)))
    return page, per_page


def paginate(request: Request, items: list[Any]) -> dict[str, Any]:
    """``LIMIT per_page OFFSET (page - 1) * per_page`` over ``items`` in scan order; the offset is
    a ``u32`` product, which release builds wrap (pagination.rs:134)."""
    page, per_page = pagination_params(request.url.query)
    offset = ((page - 1) * per_page) % 2**32
    total_pages = -(-len(items) // per_page)
    return {
        "data": items[offset : offset + per_page],
        "pagination": {
            "current_page": page,
            "next_page": page + 1 if page < total_pages else None,
            "page_size": per_page,
            "total_items": len(items),
            "total_pages": total_pages,
        },
    }


def token_view(state: DefguardState, token: EnrollmentToken) -> dict[str, Any]:
    """Inspection view of a token: its hash, never its value; ``lifetime_seconds`` is exact
    where ``expires_at`` is clamped to years 1-9999."""
    admin = state.users_by_id.get(token.admin_id) if token.admin_id else None
    return {
        "admin": admin.username if admin else None,
        "created_at": naive_iso(token.created_at),
        "email": token.email,
        "expires_at": naive_iso(token.expires_at),
        "issued_by": token.via,
        "kind": token.kind,
        "lifetime_seconds": token.lifetime_seconds,
        "token_sha256": sha256_hex(token.value),
        "used_at": naive_iso(token.used_at) if token.used_at else None,
        "username": state.users_by_id[token.user_id].username,
    }
