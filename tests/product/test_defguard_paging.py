"""Defguard 2.0's user list under an unstable order (audit D10).

``GET /user`` pages with ``LIMIT/OFFSET`` and no ``ORDER BY``; the sandbox's ``unstable`` order
reshuffles the rows for every request, the worst a client paging it can meet.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.defguard import DefguardClient, DefguardUser
from dgprov.errors import DgprovError
from dgprov.tls import tls_context

from ..conftest import Running, StartSandbox
from .hostile import Exchange, hostile
from .test_generate_tokens import Invoker, invoke, token_hashes

__all__ = ["invoke"]

MEMBERS = 350  # four pages of 100


def users_of(url: str, token: str, members: list[str]) -> dict[str, DefguardUser]:
    async def go() -> dict[str, DefguardUser]:
        client = DefguardClient(url, token, verify=tls_context())
        try:
            return await client.users(members)
        finally:
            await client.aclose()

    return asyncio.run(asyncio.wait_for(go(), 60))


def as_admin(running: Running) -> httpx.Client:
    """The core as the synthetic tenant's admin (its API token is not the example tenant's)."""
    headers = {"Authorization": f"Bearer {running.info['api_token']}"}
    return httpx.Client(base_url=running.info["defguard_url"], headers=headers)


def group_members(running: Running) -> list[str]:
    with as_admin(running) as core:
        groups = core.get("/api/v1/group-info").json()
    members: list[str] = next(g["members"] for g in groups if g["name"] == "vpn-users")
    return members


def unstable(start_sandbox: StartSandbox) -> Running:
    return start_sandbox(synthetic_tenant(MEMBERS, 41), user_list_order="unstable")


def test_every_member_is_found_under_an_unstable_order(start_sandbox: StartSandbox) -> None:
    running = unstable(start_sandbox)
    with as_admin(running) as core:
        first = core.get("/api/v1/user", params={"page": 1, "per_page": 100}).json()
        again = core.get("/api/v1/user", params={"page": 1, "per_page": 100}).json()
    assert [u["username"] for u in first["data"]] != [u["username"] for u in again["data"]]
    members = group_members(running)
    assert len(members) == MEMBERS
    users = users_of(running.info["defguard_url"], running.info["api_token"], members)
    assert set(members) <= set(users)
    assert all(users[name].username == name for name in members)


def test_every_member_is_planned_exactly_once(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = unstable(start_sandbox)
    report = tmp_path / "report.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["members"]
    counted = Counter(row["username"] for row in rows)
    members = group_members(running)
    assert set(counted) == set(members)
    assert set(counted.values()) == {1}
    outcomes = Counter((row["outcome"], row["reason"]) for row in rows)
    assert {row["outcome"] for row in rows} == {"provisioned"}, outcomes
    issued = token_hashes(running)
    assert all(len(issued[name]) == 1 for name in members)


def test_members_the_list_never_shows_are_asked_for_one_by_one() -> None:
    """A list that keeps missing a member (and counts one more than it shows): after a bounded
    number of readings the member is fetched alone; one Defguard does not know stays absent."""
    listed = [
        {"username": name, "email": f"{name}@example.com", "is_active": True, "enrolled": False}
        for name in ("ann", "bob")
    ]
    pagination = {
        "current_page": 1, "next_page": None, "page_size": 100, "total_items": 3,
        "total_pages": 1,
    }  # fmt: skip
    carl = {"username": "carl", "email": "carl@example.com", "is_active": False, "enrolled": True}

    def route(exchange: Exchange) -> None:
        if exchange.path == "/api/v1/user":
            exchange.reply(200, {"data": listed, "pagination": pagination})
        elif exchange.path == "/api/v1/user/carl":
            exchange.reply(200, {"user": carl, "security_keys": []})
        else:
            exchange.reply(404, {"msg": "user not found"})

    with hostile(route) as server:
        users = users_of(server.url, "dg-" + "A" * 32, ["ann", "carl", "nobody", "ann"])
    assert set(users) == {"ann", "bob", "carl"}
    assert users["carl"] == DefguardUser("carl", "carl@example.com", False, True)
    paths = Counter(r.path.split("?")[0] for r in server.received)
    assert paths == {"/api/v1/user": 3, "/api/v1/user/carl": 1, "/api/v1/user/nobody": 1}


def test_a_stable_list_is_read_once(start_sandbox: StartSandbox) -> None:
    """Extra readings only when the list came up short: a consistent list costs one pass."""
    running = start_sandbox(synthetic_tenant(250, 42), user_list_order="stable")
    members = group_members(running)
    before: dict[str, Any] = running.anonymous.get("/_sandbox/requests").json()["requests"]
    users = users_of(running.info["defguard_url"], running.info["api_token"], members)
    after: dict[str, Any] = running.anonymous.get("/_sandbox/requests").json()["requests"]
    assert set(members) <= set(users)
    listed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert listed == {"GET /api/v1/user": 3}, listed


def test_a_failed_page_stops_the_other_readers() -> None:
    """Pages are read side by side; when one fails the others are cancelled, not left fetching
    the rest of the list (in the broker, a failed load would otherwise leave them behind)."""
    pagination = {
        "current_page": 1, "next_page": 2, "page_size": 100, "total_items": 3_950,
        "total_pages": 40,
    }  # fmt: skip

    def route(exchange: Exchange) -> None:
        page = exchange.request.path.partition("page=")[2].partition("&")[0]
        if page == "3":
            exchange.reply(400, {"msg": "bad page"})
            return
        if page != "1":
            time.sleep(0.05)  # the server's latency: the failure arrives while others are out
        exchange.reply(200, {"data": [], "pagination": pagination})

    async def read(url: str) -> tuple[str, set[asyncio.Task[Any]]]:
        client = DefguardClient(url, "dg-" + "A" * 32, verify=tls_context())
        try:
            await client.users(["ann"])
        except DgprovError as exc:
            return str(exc), asyncio.all_tasks() - {asyncio.current_task()}
        finally:
            await client.aclose()
        raise AssertionError("the failed page was not reported")

    with hostile(route) as server:
        message, left = asyncio.run(read(server.url))
        pages = [r.path for r in server.received if r.path.startswith("/api/v1/user")]
    assert "bad page" in message
    assert left == set()  # no reader outlives the failure
    assert len(pages) <= 1 + 16  # the first page, then at most one wave of the 16 readers
