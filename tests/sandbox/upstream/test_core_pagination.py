"""Ports of the unit tests of Defguard core's pagination, through ``GET /api/v1/user`` (2.0).

v2.0.1:crates/defguard_core/src/handlers/pagination.rs:224-262 deserialise ``PaginationParams``
from a query string; the ports send that query and read the parameters back from the
``pagination`` block and the offset from which users come back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ...conftest import StartSandbox
from .conftest import Hogwarts, hogwarts_tenant


@pytest.fixture
def many(start_sandbox: StartSandbox) -> Iterator[Hogwarts]:
    """120 more users, listed in id order."""
    tenant = hogwarts_tenant()
    for number in range(120):
        tenant["users"].append(
            {"username": f"student{number:03d}", "first_name": "S", "last_name": "T"}
        )
    world = Hogwarts(start_sandbox(tenant, "2.0", user_list_order="stable"))
    yield world
    world.close()


def page(world: Hogwarts, query: str) -> tuple[dict[str, Any], list[int]]:
    body = world.admin.get(f"/api/v1/user?{query}").json()
    return body["pagination"], [u["id"] for u in body["data"]]


def test_deserialize_pagination_params_defaults(many: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/src/handlers/pagination.rs:224."""
    meta, ids = page(many, "")
    assert (meta["current_page"], meta["page_size"], ids[0]) == (1, 50, 1)  # offset 0


def test_deserialize_pagination_foreign_params(many: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/src/handlers/pagination.rs:232."""
    meta, ids = page(many, "search=term")
    assert (meta["current_page"], meta["page_size"], ids[0]) == (1, 50, 1)


def test_deserialize_pagination_params_zero_values(many: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/src/handlers/pagination.rs:240."""
    meta, ids = page(many, "page=0&per_page=0")
    assert (meta["current_page"], meta["page_size"], ids) == (1, 1, [1])


def test_deserialize_pagination_params_large_values(many: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/src/handlers/pagination.rs:248 (offset 99900: past the end)."""
    meta, ids = page(many, "page=1000&per_page=1000")
    assert (meta["current_page"], meta["page_size"], ids) == (1000, 100, [])


def test_deserialize_pagination_params_valid_values(many: Hogwarts) -> None:
    """v2.0.1:crates/defguard_core/src/handlers/pagination.rs:257 (offset 50)."""
    meta, ids = page(many, "page=3&per_page=25")
    assert (meta["current_page"], meta["page_size"], ids[0]) == (3, 25, 51)
