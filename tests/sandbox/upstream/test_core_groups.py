"""Ports of Defguard core's ``crates/defguard_core/tests/integration/api/group.rs``.

Tags v2.0.1 and v1.6.6. Only the reads are emulated (groups are tenant data), so each port keeps
the assertions upstream makes through ``GET``; ``/group/{id}`` on 2.0, ``/group/{name}`` on 1.6.
"""

from __future__ import annotations

from .conftest import Hogwarts


def group_path(hogwarts: Hogwarts, line: str, name: str) -> str:
    if line == "1.6":
        return f"/api/v1/group/{name}"
    ids = {g["name"]: g["id"] for g in hogwarts.admin.get("/api/v1/group-info").json()}
    return f"/api/v1/group/{ids[name]}"


def test_modify_group_members(hogwarts: Hogwarts, line: str) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/group.rs:82,
    v1.6.6:crates/defguard_core/tests/integration/api/group.rs:74 (the group as created)."""
    response = hogwarts.admin.get(group_path(hogwarts, line, "hogwards"))
    assert response.status_code == 200
    assert response.json()["members"] == ["hpotter"]


def test_remove_last_admin_group(hogwarts: Hogwarts, line: str) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/group.rs:177,
    v1.6.6:crates/defguard_core/tests/integration/api/group.rs:162 (the read before the
    refused delete), also test_modify_last_admin_group (:204, v1.6.6 :183)."""
    response = hogwarts.admin.get(group_path(hogwarts, line, "admin"))
    assert response.status_code == 200
    assert response.json()["members"] == ["admin"]


def test_group_endpoints_access(hogwarts: Hogwarts, line: str) -> None:
    """v2.0.1:crates/defguard_core/tests/integration/api/group.rs:243,
    v1.6.6:crates/defguard_core/tests/integration/api/group.rs:211 (normal user: the reads)."""
    assert hogwarts.hpotter.get("/api/v1/group").status_code == 403
    key = "1" if line == "2.0" else "admin"
    assert hogwarts.hpotter.get(f"/api/v1/group/{key}").status_code == 403
