"""Shapes of core's answers and 2.0's pagination (``core_views``).

Pagination follows v2.0.1 crates/defguard_core/src/handlers/pagination.rs: ``page`` and
``per_page`` are ``u32`` parsed by serde_urlencoded, rejected by axum's ``Query`` extractor with a
text/plain 400 (axum-v0.8.9 axum/src/extract/query.rs:88-95).
"""

from __future__ import annotations

import pytest

from ..conftest import Running, StartSandbox, example_tenant


def bulk_tenant(count: int) -> dict[str, object]:
    tenant = example_tenant()
    for number in range(count):
        tenant["users"].append(
            {"username": f"bulk{number:03d}", "first_name": "B", "last_name": "U"}
        )
    return tenant


def test_pagination_on_2_0(start_sandbox: StartSandbox) -> None:
    sandbox = start_sandbox(bulk_tenant(230), "2.0")
    seen: list[str] = []
    page: int | None = 1
    while page is not None:
        body = sandbox.core.get("/api/v1/user", params={"page": page, "per_page": 1000}).json()
        assert body["pagination"]["page_size"] == 100
        seen += [u["username"] for u in body["data"]]
        page = body["pagination"]["next_page"]
    assert len(seen) == len(set(seen)) == 242
    default = sandbox.core.get("/api/v1/user").json()["pagination"]
    assert (default["page_size"], default["total_pages"]) == (50, 5)
    clamped = sandbox.core.get("/api/v1/user", params={"page": 0, "per_page": 0}).json()
    assert clamped["pagination"]["current_page"] == 1 and clamped["pagination"]["page_size"] == 1
    beyond = sandbox.core.get("/api/v1/user", params={"page": 9}).json()
    assert beyond["data"] == [] and beyond["pagination"]["next_page"] is None


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("page=-1", "page: invalid digit found in string"),
        ("page=%205", "page: invalid digit found in string"),
        ("page=+5", "page: invalid digit found in string"),  # '+' decodes to a space
        ("per_page=", "per_page: cannot parse integer from empty string"),
        ("per_page", "per_page: cannot parse integer from empty string"),
        ("page=4294967296", "page: number too large to fit in target type"),
        ("page=1.0", "page: invalid digit found in string"),
        ("page=%D9%A1", "page: invalid digit found in string"),  # Arabic-Indic one
        ("page=1&page=2", "duplicate field `page`"),
    ],
)
def test_page_numbers_are_u32(start_sandbox: StartSandbox, query: str, error: str) -> None:
    sandbox = start_sandbox(line="2.0")
    response = sandbox.core.get(f"/api/v1/user?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == f"Failed to deserialize query string: {error}"


def test_what_u32_parsing_accepts(start_sandbox: StartSandbox) -> None:
    sandbox = start_sandbox(line="2.0")
    for query in ("page=%2B2&per_page=5", "page=02&per_page=5&search=x", "per_page=5&page=2"):
        body = sandbox.core.get(f"/api/v1/user?{query}").json()
        assert (body["pagination"]["current_page"], body["pagination"]["page_size"]) == (2, 5)
    assert sandbox.core.get("/api/v1/group?page=x").status_code == 400  # groups page alike


def test_offset_wraps_like_a_release_build(start_sandbox: StartSandbox) -> None:
    """``(page - 1) * per_page`` is a u32 product (pagination.rs:134); release builds wrap."""
    sandbox = start_sandbox(line="2.0")
    everyone = sandbox.core.get("/api/v1/user", params={"per_page": 100}).json()["data"]
    wrapped = sandbox.core.get("/api/v1/user", params={"page": 42949674, "per_page": 100}).json()
    assert [u["id"] for u in wrapped["data"]] == [u["id"] for u in everyone[4:]]
    assert wrapped["pagination"]["next_page"] is None


def test_1_6_lists_everyone_and_ignores_the_query(sandbox: Running, line: str) -> None:
    response = sandbox.core.get("/api/v1/user?page=-1")
    if line == "1.6":
        assert response.status_code == 200 and isinstance(response.json(), list)
    else:
        assert response.status_code == 400
