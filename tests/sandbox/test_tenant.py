"""Tenant files: schema validation that names the field, references, the synthetic generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dgprov_sandbox.tenant import (
    TenantError,
    load_tenant,
    schema,
    synthetic_tenant,
    validate_tenant,
)

from ..conftest import EXAMPLE_TENANT, example_tenant


def _schema_paths(node: dict[str, Any], root: dict[str, Any], prefix: str = "") -> set[str]:
    """Every property path the schema defines, with ``[]`` for array items."""
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    paths: set[str] = set()
    for variant in node.get("oneOf", []):
        paths |= _schema_paths(variant, root, prefix)
    if "items" in node:
        paths |= _schema_paths(node["items"], root, prefix + "[]")
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}"
        paths.add(path)
        paths |= _schema_paths(child, root, path)
    return paths


def _document_paths(value: Any, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    if isinstance(value, dict):
        for name, child in value.items():
            paths.add(f"{prefix}.{name}")
            paths |= _document_paths(child, f"{prefix}.{name}")
    elif isinstance(value, list):
        for child in value:
            paths |= _document_paths(child, prefix + "[]")
    return paths


def test_example_tenant_is_valid_and_uses_every_field() -> None:
    tenant = load_tenant(EXAMPLE_TENANT)
    missing = _schema_paths(schema(), schema()) - _document_paths(tenant)
    assert not missing, f"example tenant does not exercise: {sorted(missing)}"


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda t: t["users"][2].update(username="bad name"), "$.users[2].username"),
        (lambda t: t["users"][2].update(active="yes"), "$.users[2].active"),
        (lambda t: t["users"][3].update(shoe_size=42), "$.users[3]"),
        (lambda t: t["locations"][0].update(mfa_mode="sometimes"), "$.locations[0].mfa_mode"),
        (lambda t: t["license"].update(tier="gold"), "$.license"),
        (lambda t: t["groups"][1]["members"].append("nobody"), "$.groups[1].members[10]"),
        (lambda t: t["api_tokens"][0].update(owner="nobody"), "$.api_tokens[0].owner"),
        (lambda t: t["locations"][1].update(address="10.20.0.1"), "$.locations[1].address"),
        (
            lambda t: t["locations"][0].update(allowed_groups=["ghosts"]),
            "$.locations[0].allowed_groups[0]",
        ),
        (lambda t: t["users"][3].update(username="jdoe"), "username 'jdoe' is used twice"),
        (lambda t: t.pop("api_tokens"), "'api_tokens' is a required property"),
        (
            lambda t: t["entra"]["applications"][0]["api_permissions"][0].update(
                resource="c0000000-0000-4000-8000-000000000002"
            ),
            "$.entra.applications[0].api_permissions[0].resource",
        ),
        (
            lambda t: t["entra"]["applications"][0]["api_permissions"][0].update(scopes=["Admin"]),
            "exposes no 'Admin' in its api.scopes",
        ),
        (
            lambda t: t["entra"]["applications"][1]["api_permissions"][0].update(roles=["Root"]),
            "$.entra.applications[1].api_permissions[0].roles",
        ),
    ],
)
def test_invalid_tenant_names_the_field(mutate: Any, named: str) -> None:
    tenant = example_tenant()
    mutate(tenant)
    with pytest.raises(TenantError) as caught:
        validate_tenant(tenant)
    assert named in str(caught.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(TenantError, match="cannot read tenant file"):
        load_tenant(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"users": [', "utf-8")
    with pytest.raises(TenantError, match="not valid JSON at line 1"):
        load_tenant(broken)


def test_synthetic_tenant_is_deterministic_per_seed() -> None:
    first, again, other = synthetic_tenant(5, 7), synthetic_tenant(5, 7), synthetic_tenant(5, 8)
    assert json.dumps(first) == json.dumps(again)
    assert first["api_tokens"][0]["token"] != other["api_tokens"][0]["token"]


def test_synthetic_tenant_shape() -> None:
    tenant = synthetic_tenant(20, 1)
    group = next(g for g in tenant["groups"] if g["name"] == "vpn-users")
    members = [u for u in tenant["users"] if u["username"] in group["members"]]
    assert len(members) == 20
    assert all(u["email"] and u.get("active", True) and not u.get("password") for u in members)
    token = tenant["api_tokens"][0]["token"]
    assert token.startswith("dg-") and len(token) == 35
    assert tenant["license"]["tier"] == "business"
    assert tenant["settings"]["public_proxy_url"] is None
    assert len(tenant["locations"]) == 1
