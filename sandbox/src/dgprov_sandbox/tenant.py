"""Tenant files: the one JSON document that seeds every emulator of a sandbox run.

A tenant is validated twice: against ``tenant.schema.json`` (shapes and types) and then for the
references the schema cannot express (a group member who does not exist, two users with one
username). Either failure names the offending field as a JSON path, because an administrator
editing a 500-line file needs to know *where*, not just *that*.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import random
import string
import uuid
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

Tenant = dict[str, Any]
"""A tenant document as it appears on disk (already validated when returned from this module)."""


class TenantError(ValueError):
    """The tenant document is invalid; the message names the field and the problem."""


def schema() -> dict[str, Any]:
    """The JSON Schema of tenant files, shipped inside the package."""
    text = resources.files(__package__).joinpath("tenant.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def example_tenant() -> Tenant:
    """The example tenant shipped with the package: every field, and the awkward users."""
    text = resources.files(__package__).joinpath("example_tenant.json").read_text("utf-8")
    return validate_tenant(json.loads(text))


def load_tenant(path: Path) -> Tenant:
    """Read and validate a tenant file."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise TenantError(f"cannot read tenant file {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TenantError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    return validate_tenant(document)


def validate_tenant(document: Any) -> Tenant:
    """Check ``document`` against the schema and its cross-references; return it unchanged."""
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        raise TenantError(f"tenant field {error.json_path}: {error.message}")
    _check_references(document)
    return document  # type: ignore[no-any-return]


def _duplicates(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def _check_references(document: Tenant) -> None:
    users = document["users"]
    usernames = [u["username"] for u in users if u.get("username")]
    for index, user in enumerate(users):
        if user.get("username") is None and user.get("entra") is None:
            raise TenantError(
                f"tenant field $.users[{index}]: a person needs a username, an entra account, "
                "or both"
            )
    for name in _duplicates(usernames):
        raise TenantError(f"tenant field $.users: username {name!r} is used twice")
    object_ids = [u["entra"]["object_id"].lower() for u in users if u.get("entra")]
    for object_id in _duplicates(object_ids):
        raise TenantError(f"tenant field $.users: entra object_id {object_id} is used twice")
    known = set(usernames)
    group_names = [g["name"] for g in document["groups"]]
    for name in _duplicates(group_names):
        raise TenantError(f"tenant field $.groups: group name {name!r} is used twice")
    for gi, group in enumerate(document["groups"]):
        for mi, member in enumerate(group.get("members", [])):
            if member not in known:
                raise TenantError(
                    f"tenant field $.groups[{gi}].members[{mi}]: no user named {member!r}"
                )
    for ti, token in enumerate(document["api_tokens"]):
        if token["owner"] not in known:
            raise TenantError(
                f"tenant field $.api_tokens[{ti}].owner: no user named {token['owner']!r}"
            )
    _check_api_permissions(document.get("entra", {}).get("applications", []))
    for li, location in enumerate(document.get("locations", [])):
        try:
            ipaddress.ip_interface(location["address"])
        except ValueError:
            raise TenantError(
                f"tenant field $.locations[{li}].address: {location['address']!r} is not an "
                "address with prefix such as 10.10.0.1/24"
            ) from None
        for gi, group_name in enumerate(location.get("allowed_groups") or []):
            if group_name not in group_names:
                raise TenantError(
                    f"tenant field $.locations[{li}].allowed_groups[{gi}]: no group named "
                    f"{group_name!r}"
                )


def _check_api_permissions(applications: list[dict[str, Any]]) -> None:
    """Each permission on a web API names an app of the tenant that exposes what is granted."""
    apis = {a["client_id"].lower(): a.get("api") for a in applications}
    for ai, app in enumerate(applications):
        for pi, grant in enumerate(app.get("api_permissions", [])):
            where = f"tenant field $.entra.applications[{ai}].api_permissions[{pi}]"
            api = apis.get(grant["resource"].lower())
            if api is None:
                raise TenantError(
                    f"{where}.resource: no application {grant['resource']} with an api in the "
                    "tenant"
                )
            for kind, offered in (("scopes", "scopes"), ("roles", "app_roles")):
                for name in grant.get(kind, []):
                    if name not in api.get(offered, []):
                        raise TenantError(
                            f"{where}.{kind}: {grant['resource']} exposes no {name!r} in its "
                            f"api.{offered}"
                        )


SYNTHETIC_GROUP = "vpn-users"
SYNTHETIC_ADMIN = "admin"
SYNTHETIC_ATTRIBUTE_SET = "Defguard"
SYNTHETIC_BROKER_SCOPE = "Provision"
SYNTHETIC_DELEGATED_PERMISSIONS = [
    "User.Read",
    "User.Read.All",
    "GroupMember.Read.All",
    "CustomSecAttributeAssignment.Read.All",
    "CustomSecAttributeAssignment.ReadWrite.All",
    "CustomSecAttributeDefinition.Read.All",
]
SYNTHETIC_APPLICATION_PERMISSIONS = [
    "User.Read.All",
    "GroupMember.Read.All",
    "CustomSecAttributeAssignment.ReadWrite.All",
    "CustomSecAttributeDefinition.Read.All",
]


# Before setup-entra (--entra-setup none) the admin holds the roles setup-entra needs and no
# attribute role yet (setup-entra.md section 10: four roles, Global Administrator not enough).
SETUP_ADMIN_ROLES = [
    "User Administrator",
    "Attribute Definition Administrator",
    "Privileged Role Administrator",
    "Cloud Application Administrator",
]


def without_entra_setup(tenant: Tenant) -> Tenant:
    """The tenant before ``dgprov setup-entra``: its users, groups and admin, but no attribute
    set or definition, no values of them, and none of the tenant's app registrations."""
    stripped = copy.deepcopy(tenant)
    entra = stripped.setdefault("entra", {})
    entra["applications"] = []
    entra["attribute_sets"] = []
    for person in stripped["users"]:
        if person.get("entra"):
            person["entra"].pop("custom_security_attributes", None)
    return stripped


def synthetic_tenant(users: int, seed: int, *, entra_setup: str = "full") -> Tenant:
    """A tenant of ``users`` active, not-yet-enrolled members of one group, the same for one seed.

    Every value is drawn from ``random.Random(seed)`` so two runs with the same arguments produce
    the same tenant, API token included, which lets scripts and benchmarks be replayed.
    """
    if users < 0:
        raise TenantError("--users must be zero or more")
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits

    def new_uuid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    domain = "example.com"
    public_client_id = new_uuid()
    # The broker's registration draws from its own stream, so the rest stays as it was.
    broker_rng = random.Random(f"{seed}:broker")
    broker_client_id = str(uuid.UUID(int=broker_rng.getrandbits(128), version=4))
    broker_secret = "".join(broker_rng.choices(alphabet, k=40))
    people: list[dict[str, Any]] = [
        {
            "username": SYNTHETIC_ADMIN,
            "first_name": "Sandbox",
            "last_name": "Admin",
            "email": f"{SYNTHETIC_ADMIN}@{domain}",
            "password": "".join(rng.choices(alphabet, k=16)) + "!1aA",
            "entra": {
                "object_id": new_uuid(),
                "user_principal_name": f"{SYNTHETIC_ADMIN}@{domain}",
                "mail": f"{SYNTHETIC_ADMIN}@{domain}",
                "directory_roles": (
                    SETUP_ADMIN_ROLES
                    if entra_setup == "none"
                    else ["User Administrator", "Attribute Assignment Administrator"]
                ),
            },
        }
    ]
    members = []
    width = max(4, len(str(users)))
    for number in range(1, users + 1):
        username = f"user{number:0{width}d}"
        members.append(username)
        people.append(
            {
                "username": username,
                "first_name": "User",
                "last_name": f"{number:0{width}d}",
                "email": f"{username}@{domain}",
                "entra": {
                    "object_id": new_uuid(),
                    "user_principal_name": f"{username}@{domain}",
                    "mail": f"{username}@{domain}",
                    "directory_roles": (
                        ["Attribute Assignment Reader"]
                        if number == 1 and entra_setup != "none"
                        else []
                    ),
                },
            }
        )
    return validate_tenant(
        {
            "instance": {"id": new_uuid(), "name": "Sandbox Defguard"},
            "license": {"tier": "business", "expires_at": None},
            "settings": {"public_proxy_url": None},
            "entra": {
                "tenant_id": new_uuid(),
                "domain": domain,
                "applications": [
                    {
                        "client_id": public_client_id,
                        "display_name": "dgprov",
                        "public_client": True,
                        "redirect_uris": ["http://localhost"],
                        "delegated_permissions": SYNTHETIC_DELEGATED_PERMISSIONS,
                        "api_permissions": [
                            {"resource": broker_client_id, "scopes": [SYNTHETIC_BROKER_SCOPE]}
                        ],
                    },
                    {
                        "client_id": new_uuid(),
                        "display_name": "dgprov automation",
                        "public_client": False,
                        "redirect_uris": [],
                        "client_secret": "".join(rng.choices(alphabet, k=40)),
                        "application_permissions": SYNTHETIC_APPLICATION_PERMISSIONS,
                    },
                    {
                        "client_id": broker_client_id,
                        "display_name": "dgprov broker",
                        "public_client": False,
                        "redirect_uris": [],
                        "client_secret": broker_secret,
                        "application_permissions": ["User.Read.All"],
                        "api": {"scopes": [SYNTHETIC_BROKER_SCOPE]},
                    },
                ],
                "attribute_sets": [
                    {
                        "id": SYNTHETIC_ATTRIBUTE_SET,
                        "description": "Defguard VPN provisioning",
                        "attributes": [
                            {"name": "EnrollmentUrl", "type": "String"},
                            {"name": "EnrollmentToken", "type": "String"},
                            {"name": "EnrollmentTokenExpiresAt", "type": "String"},
                        ],
                    }
                ],
            },
            "users": people,
            "groups": [
                {"name": "admin", "is_admin": True, "members": [SYNTHETIC_ADMIN]},
                {"name": SYNTHETIC_GROUP, "members": members, "entra_object_id": new_uuid()},
            ],
            "api_tokens": [
                {
                    "owner": SYNTHETIC_ADMIN,
                    "name": "sandbox",
                    "token": "dg-" + "".join(rng.choices(alphabet, k=32)),
                }
            ],
            "locations": [
                {
                    "name": "HQ",
                    "address": "10.10.0.1/16",
                    "endpoint": "vpn.example.com",
                    "allowed_ips": ["10.10.0.0/16"],
                    "dns": "10.10.0.1",
                }
            ],
        }
    )
