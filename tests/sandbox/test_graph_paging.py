"""``$filter``, ``$top``, ``$count`` and ``@odata.nextLink`` in Graph (``graph_paging``).

Over real HTTPS, with tokens from real MSAL sign-ins.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import StartSandbox, graph_client, sign_in
from .conftest import OBRIEN_MAIL, odata_quote, upns, users


def test_filter_with_quote_and_plus(admin: httpx.Client) -> None:
    assert upns(users(admin, f"mail eq {odata_quote(OBRIEN_MAIL)}")) == {"sobrien@contoso.example"}
    assert upns(users(admin, f"mail eq {odata_quote(OBRIEN_MAIL.upper())}")) == {
        "sobrien@contoso.example"
    }


def test_unencoded_plus_is_a_space(admin: httpx.Client) -> None:
    raw = quote(f"mail eq {odata_quote(OBRIEN_MAIL)}", safe="'+ =@").replace(" ", "%20")
    response = admin.get(f"/users?$filter={raw}")
    assert "+" in str(response.request.url)
    assert upns(response) == set()


def test_unescaped_quote_is_a_syntax_error(admin: httpx.Client) -> None:
    response = users(admin, "mail eq 'siobhan.o'brien+vpn@contoso.example'")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("startsWith(mail,'shared')", {"tess@contoso.example", "tom@contoso.example"}),
        (
            "mail in ('jdoe@contoso.example','ED@contoso.example')",
            {"jdoe@contoso.example", "ed@contoso.example"},
        ),
        ("otherMails/any(x:x eq 'Maria.Lopez@old-contoso.example')", {"mlopez@contoso.example"}),
        ("proxyAddresses/any(p:p eq 'smtp:sobrien@contoso.example')", {"sobrien@contoso.example"}),
        ("proxyAddresses/any(p:startsWith(p,'smtp:siobhan'))", {"sobrien@contoso.example"}),
        (
            "userPrincipalName eq 'nora@contoso.example' or mail eq 'ed@contoso.example'",
            {"nora@contoso.example", "ed@contoso.example"},
        ),
        ("displayName eq 'John Doe (IT)'", {"jdoe@contoso.example"}),
        ("accountEnabled eq false", {"dora@contoso.example"}),
    ],
)
def test_default_filters(admin: httpx.Client, filter_text: str, expected: set[str]) -> None:
    assert upns(users(admin, filter_text)) == expected


@pytest.mark.parametrize(
    "filter_text",
    [
        "endsWith(mail,'@old-contoso.example')",
        "mail ne 'x@y'",
        "not(mail eq 'x@y')",
        "otherMails/$count eq 1",
    ],
)
def test_advanced_filters_need_consistency_level_and_count(
    admin: httpx.Client, filter_text: str
) -> None:
    refused = users(admin, filter_text)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "Request_UnsupportedQuery"
    header_only = users(admin, filter_text, ConsistencyLevel="eventual")
    assert header_only.status_code == 400
    accepted = admin.get(
        "/users",
        params={"$filter": filter_text, "$count": "true", "$select": "id"},
        headers={"ConsistencyLevel": "eventual"},
    )
    assert accepted.status_code == 200
    assert accepted.json()["@odata.count"] == len(accepted.json()["value"])


def test_unsupported_property(admin: httpx.Client) -> None:
    response = users(admin, "jobTitle eq 'boss'")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"
    assert "'jobTitle'" in response.json()["error"]["message"]


def test_paging_to_the_end(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(synthetic_tenant(250, 4))
    client = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    seen: list[str] = []
    response = client.get("/users", params={"$select": "id"})
    while True:
        body = response.json()
        assert len(body["value"]) <= 100
        seen += [u["id"] for u in body["value"]]
        if "@odata.nextLink" not in body:
            break
        response = client.get(body["@odata.nextLink"])
    assert len(seen) == len(set(seen)) == 251
    assert client.get("/users", params={"$top": "1000"}).status_code == 400
    big = client.get("/users", params={"$top": "999", "$select": "id"}).json()
    assert len(big["value"]) == 251 and "@odata.nextLink" not in big


def test_next_link_needs_its_headers_resent(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(synthetic_tenant(30, 4))
    client = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    params = {
        "$filter": "endsWith(mail,'@example.com')",
        "$count": "true",
        "$top": "10",
        "$select": "id",
    }
    first = client.get("/users", params=params, headers={"ConsistencyLevel": "eventual"}).json()
    assert first["@odata.count"] == 31
    without = client.get(first["@odata.nextLink"])
    assert without.status_code == 400
    second = client.get(first["@odata.nextLink"], headers={"ConsistencyLevel": "eventual"}).json()
    assert len(second["value"]) == 10 and "@odata.count" not in second
