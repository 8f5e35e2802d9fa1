"""Graph's documented filter limits (audit G4) and failed next pages (G8).

The sandbox enforces Graph's limits outside advanced queries: at most 15 ``in`` values or ``or``
clauses, string values of at most 120 characters; anything beyond is a 400 for the whole lookup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.errors import DgprovError
from dgprov.graph import MAX_FILTER_VALUE

from ..conftest import StartSandbox
from .hostile import Exchange, hostile
from .test_generate_tokens import Invoker, invoke, token_hashes
from .test_hostile_servers import batch_answer, graph_lookup

__all__ = ["invoke"]


def test_lookups_stay_within_graph_limits_and_an_overlong_address_is_reported(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    tenant: dict[str, Any] = synthetic_tenant(40, 31)
    members = tenant["users"][1:]
    # 20 members known to Entra only by an alias: the otherMails stage gets 20 addresses,
    # more than one 15-clause `or` chain holds.
    for person in members[:20]:
        alias = f"alias.{person['username']}@example.com"
        person["email"] = alias
        person["entra"]["other_mails"] = [alias]
    overlong = members[-1]
    address = "x" * (MAX_FILTER_VALUE - len("@example.com") + 1) + "@example.com"
    assert len(address) == MAX_FILTER_VALUE + 1
    overlong["email"] = overlong["entra"]["mail"] = address
    running = start_sandbox(tenant)

    report = tmp_path / "report.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 0, result.output
    rows = {row["username"]: row for row in json.loads(report.read_text())["members"]}
    skipped = rows[overlong["username"]]
    assert skipped["outcome"] == "skipped"
    assert "e-mail address longer than Graph can search (120 characters)" in skipped["reason"]
    provisioned = {name for name, row in rows.items() if row["outcome"] == "provisioned"}
    assert provisioned == {p["username"] for p in members[:-1]}
    issued = token_hashes(running)
    assert overlong["username"] not in issued
    assert all(len(issued[name]) == 1 for name in provisioned)


def test_an_address_of_exactly_120_characters_is_looked_up(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    tenant: dict[str, Any] = synthetic_tenant(2, 32)
    person = tenant["users"][1]
    address = "y" * (MAX_FILTER_VALUE - len("@example.com")) + "@example.com"
    person["email"] = person["entra"]["mail"] = address
    running = start_sandbox(tenant)
    report = tmp_path / "report.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 0, result.output
    rows = {row["username"]: row for row in json.loads(report.read_text())["members"]}
    assert rows[person["username"]]["outcome"] == "provisioned", rows[person["username"]]


@pytest.mark.parametrize("status", [400, 404, 403])
def test_a_failed_next_page_is_an_error_not_not_found(status: int) -> None:
    """A lookup whose second page fails must stop the run: its users are unknown, not absent."""

    def graph_route(exchange: Exchange) -> None:
        if exchange.path.endswith("$batch"):
            page = {"value": [], "@odata.nextLink": f"{server_url[0]}/v1.0/users?page=2"}
            batch_answer(exchange, page)
        else:
            error = {"error": {"code": "Request_BadRequest", "message": "page went away"}}
            exchange.reply(status, error)

    server_url: list[str] = []
    with hostile(graph_route) as graph:
        server_url.append(graph.url)
        with pytest.raises(DgprovError) as caught:
            graph_lookup(graph.url, "jdoe@contoso.example")
    message = str(caught.value)
    assert "Microsoft Graph" in message and f"answered {status}" in message, message
    assert "page 2" in message and "page went away" in message
