"""The Microsoft Graph emulator over real HTTPS, with tokens from real MSAL sign-ins."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import Running, StartSandbox, example_tenant, graph_client, sign_in

CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"
OBRIEN_MAIL = "siobhan.o'brien+vpn@contoso.example"


@pytest.fixture
def tenant(start_sandbox: StartSandbox) -> Running:
    return start_sandbox(example_tenant())


@pytest.fixture
def admin(tenant: Running) -> httpx.Client:
    return graph_client(tenant.info, sign_in(tenant, tenant.info["admin_upn"]))


def odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def users(client: httpx.Client, filter_text: str, **headers: str) -> httpx.Response:
    return client.get(
        "/users",
        params={"$filter": filter_text, "$select": "id,mail,userPrincipalName"},
        headers=headers,
    )


def upns(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {u["userPrincipalName"] for u in response.json()["value"]}


def set_csa(
    client: httpx.Client, user: str, values: dict[str, Any], set_name: str = "Defguard"
) -> httpx.Response:
    return client.patch(
        f"/users/{user}",
        json={"customSecurityAttributes": {set_name: {"@odata.type": CSA_TYPE, **values}}},
    )


def read_csa(client: httpx.Client, user: str) -> Any:
    response = client.get(f"/users/{user}", params={"$select": "customSecurityAttributes"})
    assert response.status_code == 200, response.text
    return response.json()["customSecurityAttributes"]


# -------------------------------------------------------------------------------------- filters


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


# ------------------------------------------------------------------------- select and objects


def test_default_properties_and_select(admin: httpx.Client) -> None:
    default = admin.get("/users/jdoe@contoso.example").json()
    assert "customSecurityAttributes" not in default and "otherMails" not in default
    assert default["displayName"] == "John Doe (IT)" and default["id"]
    chosen = admin.get("/users/jdoe@contoso.example", params={"$select": "id,otherMails"}).json()
    assert set(chosen) == {"@odata.context", "id", "otherMails"}
    bad = admin.get("/users", params={"$select": "id,shoeSize"})
    assert bad.status_code == 400 and "shoeSize" in bad.json()["error"]["message"]


def test_lookup_by_id_and_upn_and_errors(admin: httpx.Client) -> None:
    by_upn = admin.get("/users/SOBRIEN@contoso.example")
    by_id = admin.get(f"/users/{by_upn.json()['id']}")
    assert by_id.json()["userPrincipalName"] == "sobrien@contoso.example"
    missing = admin.get("/users/nobody@contoso.example", headers={"client-request-id": "abc-123"})
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "Request_ResourceNotFound"
    assert error["innerError"]["request-id"] == missing.headers["request-id"]
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert missing.headers["client-request-id"] == "abc-123"


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


# ---------------------------------------------------------------------------------- groups


def test_groups_and_members(admin: httpx.Client) -> None:
    groups = admin.get("/groups", params={"$filter": "displayName eq 'vpn-users'"}).json()["value"]
    assert [g["displayName"] for g in groups] == ["vpn-users"]
    group_id = groups[0]["id"]
    expected = {
        "jdoe@contoso.example",
        "sobrien@contoso.example",
        "mlopez@contoso.example",
        "tess@contoso.example",
        "dora@contoso.example",
        "nora@contoso.example",
        "paula@contoso.example",
        "ed@contoso.example",
    }
    for route in ("members", "transitiveMembers", "members/microsoft.graph.user"):
        body = admin.get(
            f"/groups/{group_id}/{route}", params={"$select": "id,userPrincipalName,mail"}
        ).json()
        assert {m["userPrincipalName"] for m in body["value"]} == expected
        assert {m["@odata.type"] for m in body["value"]} == {"#microsoft.graph.user"}
    paged = admin.get(f"/groups/{group_id}/members", params={"$top": "3", "$select": "id"}).json()
    assert len(paged["value"]) == 3 and "@odata.nextLink" in paged
    assert admin.get("/groups/00000000-0000-4000-8000-000000000000/members").status_code == 404


def test_members_with_group_member_read_only_are_limited(
    tenant: Running, admin: httpx.Client
) -> None:
    group_id = admin.get("/groups", params={"$filter": "displayName eq 'vpn-users'"}).json()[
        "value"
    ][0]["id"]
    limited = graph_client(
        tenant.info, sign_in(tenant, tenant.info["admin_upn"], ["GroupMember.Read.All"])
    )
    members = limited.get(f"/groups/{group_id}/members", params={"$select": "id,mail"}).json()[
        "value"
    ]
    assert all(m["id"] and m["mail"] is None for m in members)
    assert limited.get("/users").status_code == 403


# ------------------------------------------------------------------ custom security attributes


def test_write_and_read_custom_security_attributes(tenant: Running, admin: httpx.Client) -> None:
    assert (
        set_csa(
            admin,
            "ed@contoso.example",
            {"EnrollmentUrl": "https://vpn/", "EnrollmentToken": "T" * 32},
        ).status_code
        == 204
    )
    assert read_csa(admin, "ed@contoso.example") == {
        "Defguard": {
            "@odata.type": "#microsoft.graph.customSecurityAttributeValue",
            "EnrollmentUrl": "https://vpn/",
            "EnrollmentToken": "T" * 32,
        }
    }
    assert set_csa(admin, "ed@contoso.example", {"EnrollmentToken": None}).status_code == 204
    assert read_csa(admin, "ed@contoso.example")["Defguard"] == {
        "@odata.type": "#microsoft.graph.customSecurityAttributeValue",
        "EnrollmentUrl": "https://vpn/",
    }
    set_csa(admin, "ed@contoso.example", {"EnrollmentUrl": None})
    assert read_csa(admin, "ed@contoso.example") is None


def test_reader_role_reads_and_others_see_null(tenant: Running, admin: httpx.Client) -> None:
    set_csa(admin, "jdoe@contoso.example", {"EnrollmentToken": "abc"})
    set_csa(admin, "sobrien@contoso.example", {"EnrollmentToken": "abc"})
    reader = graph_client(tenant.info, sign_in(tenant, "jdoe@contoso.example"))
    own = reader.get("/me", params={"$select": "customSecurityAttributes"}).json()
    assert own["customSecurityAttributes"]["Defguard"]["EnrollmentToken"] == "abc"
    assert own["customSecurityAttributes"]["HR"] == {
        "@odata.type": "#microsoft.graph.customSecurityAttributeValue",
        "CostCenter@odata.type": "#Int32",
        "CostCenter": 4100,
        "Sites@odata.type": "#Collection(String)",
        "Sites": ["HQ"],
    }
    plain = graph_client(tenant.info, sign_in(tenant, "sobrien@contoso.example"))
    response = plain.get("/me", params={"$select": "customSecurityAttributes"})
    assert response.status_code == 200 and response.json()["customSecurityAttributes"] is None


def test_writes_need_the_assignment_administrator_role(tenant: Running) -> None:
    reader = graph_client(tenant.info, sign_in(tenant, "jdoe@contoso.example"))
    response = set_csa(reader, "jdoe@contoso.example", {"EnrollmentToken": "abc"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "Authorization_RequestDenied"
    assert (
        response.json()["error"]["message"] == "Insufficient privileges to complete the operation."
    )


@pytest.mark.parametrize(
    ("set_name", "values", "message"),
    [
        ("Defguard", {"EnrollmentToken": "x" * 65}, "maximum length of 64"),
        ("Defguard", {"EnrollmentToken": 5}, "a String is expected"),
        ("Defguard", {"Nickname": "x"}, "Invalid property 'Nickname'"),
        ("Payroll", {"EnrollmentToken": "x"}, "Invalid property 'Payroll'"),
        ("HR", {"Legacy": "x"}, "Invalid property 'Legacy'"),
        ("HR", {"CostCenter": 7}, "'CostCenter@odata.type' must be '#Int32'"),
        (
            "HR",
            {"Sites": "HQ", "Sites@odata.type": "#Collection(String)"},
            "a collection is expected",
        ),
    ],
)
def test_invalid_attribute_writes(
    admin: httpx.Client, set_name: str, values: dict[str, Any], message: str
) -> None:
    response = set_csa(admin, "ed@contoso.example", values, set_name)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_BadRequest"
    assert message in response.json()["error"]["message"]
    assert read_csa(admin, "ed@contoso.example") is None


def test_sixty_four_characters_and_typed_values_are_accepted(admin: httpx.Client) -> None:
    assert set_csa(admin, "ed@contoso.example", {"EnrollmentToken": "x" * 64}).status_code == 204
    typed = {"CostCenter@odata.type": "#Int32", "CostCenter": 7, "Contractor": True}
    assert set_csa(admin, "ed@contoso.example", typed, "HR").status_code == 204
    assert read_csa(admin, "ed@contoso.example")["HR"]["Contractor"] is True


def test_odata_type_rules(admin: httpx.Client) -> None:
    missing = admin.patch(
        "/users/ed@contoso.example",
        json={"customSecurityAttributes": {"Defguard": {"EnrollmentToken": "a"}}},
    )
    assert missing.status_code == 400
    response_spelling = admin.patch(
        "/users/ed@contoso.example",
        json={
            "customSecurityAttributes": {
                "Defguard": {
                    "@odata.type": "#microsoft.graph.customSecurityAttributeValue",
                    "EnrollmentToken": "a",
                }
            }
        },
    )
    assert response_spelling.status_code == 204
    as_string = admin.patch(
        "/users/ed@contoso.example",
        json={"customSecurityAttributes": {"Defguard": '{"EnrollmentToken": "b"}'}},
    )
    assert as_string.status_code == 204
    assert read_csa(admin, "ed@contoso.example")["Defguard"]["EnrollmentToken"] == "a"
    other = admin.patch("/users/ed@contoso.example", json={"displayName": "Ed"})
    assert other.status_code == 400


def test_attribute_definitions(tenant: Running, admin: httpx.Client) -> None:
    assert admin.get("/directory/attributeSets/defguard").json()["id"] == "Defguard"
    definitions = admin.get("/directory/customSecurityAttributeDefinitions").json()["value"]
    assert {"Defguard_EnrollmentUrl", "Defguard_EnrollmentToken"} <= {d["id"] for d in definitions}
    assert admin.get("/directory/attributeSets/Payroll").status_code == 404
    plain = graph_client(tenant.info, sign_in(tenant, "sobrien@contoso.example"))
    assert plain.get("/directory/attributeSets").status_code == 403


# ---------------------------------------------------------------------------- authentication


def test_missing_expired_and_foreign_tokens(tenant: Running) -> None:
    anonymous = graph_client(tenant.info, None)
    response = anonymous.get("/me")
    assert response.status_code == 401
    assert response.json()["error"] == {
        **response.json()["error"],
        "code": "InvalidAuthenticationToken",
        "message": "Access token is empty.",
    }
    assert tenant.sandbox.entra is not None
    foreign = tenant.sandbox.entra.signer.sign(
        {"aud": "api://other", "tid": tenant.info["tenant_id"], "exp": 2**40}
    )
    wrong = graph_client(tenant.info, foreign).get("/me")
    assert wrong.status_code == 401 and "Invalid audience" in wrong.json()["error"]["message"]
    token = sign_in(tenant, tenant.info["admin_upn"])
    tenant.advance_clock(2 * 3600)
    expired = graph_client(tenant.info, token).get("/me")
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_scope_without_directory_read(tenant: Running) -> None:
    client = graph_client(tenant.info, sign_in(tenant, "sobrien@contoso.example", ["User.Read"]))
    assert client.get("/me").status_code == 200
    denied = client.get("/users")
    assert (
        denied.status_code == 403
        and denied.json()["error"]["code"] == "Authorization_RequestDenied"
    )


# ------------------------------------------------------------------------------------ batch


def batch(client: httpx.Client, requests: list[dict[str, Any]]) -> httpx.Response:
    return client.post("/$batch", json={"requests": requests})


def test_batch_limits(admin: httpx.Client) -> None:
    many = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]
    over = batch(admin, many)
    assert over.status_code == 400
    assert over.json()["error"]["message"] == "Number of requests inside batch exceeds the limit."
    duplicate = batch(
        admin,
        [{"id": "A", "method": "GET", "url": "/me"}, {"id": "a", "method": "GET", "url": "/me"}],
    )
    assert duplicate.status_code == 400
    unknown = batch(admin, [{"id": "1", "method": "GET", "url": "/me", "dependsOn": ["9"]}])
    assert unknown.status_code == 400


def test_batch_responses_are_shuffled_and_correlated_by_id(admin: httpx.Client) -> None:
    requests = [
        {"id": str(i), "method": "GET", "url": f"/users?$filter=mail eq 'nobody{i}@x'&$select=id"}
        for i in range(20)
    ]
    body = batch(admin, requests).json()
    ids = [r["id"] for r in body["responses"]]
    assert sorted(ids, key=int) == [str(i) for i in range(20)]
    assert ids != [str(i) for i in range(20)]
    assert all(r["status"] == 200 and r["body"]["value"] == [] for r in body["responses"])


def test_batch_depends_on_and_inner_errors(admin: httpx.Client) -> None:
    body = batch(
        admin,
        [
            {"id": "1", "method": "GET", "url": "/users/nobody@contoso.example"},
            {"id": "2", "method": "GET", "url": "/me", "dependsOn": ["1"]},
            {"id": "3", "method": "GET", "url": "me?$select=id"},
            {"id": "4", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"},
            {"id": "5", "method": "PATCH", "url": "/users/ed@contoso.example", "body": {}},
            {
                "id": "6",
                "method": "PATCH",
                "url": "/users/ed@contoso.example",
                "headers": {"Content-Type": "application/json"},
                "body": {
                    "customSecurityAttributes": {
                        "Defguard": {"@odata.type": CSA_TYPE, "EnrollmentToken": "z"}
                    }
                },
            },
            {
                "id": "7",
                "method": "GET",
                "url": f"/users?$filter=mail eq {quote(odata_quote(OBRIEN_MAIL))}&$select=id",
            },
        ],
    ).json()
    statuses = {r["id"]: r["status"] for r in body["responses"]}
    assert statuses == {"1": 404, "2": 424, "3": 200, "4": 400, "5": 400, "6": 204, "7": 200}
    by_id = {r["id"]: r for r in body["responses"]}
    assert "body" not in by_id["6"]
    assert len(by_id["7"]["body"]["value"]) == 1
    assert read_csa(admin, "ed@contoso.example")["Defguard"]["EnrollmentToken"] == "z"


def test_synthetic_tenant_roles_decide_who_reads_attributes(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(synthetic_tenant(3, 8))
    info = running.info
    admin = graph_client(info, sign_in(running, info["admin_upn"]))
    for upn in info["user_upns"][:2]:
        assert (
            set_csa(
                admin, upn, {"EnrollmentUrl": "https://vpn/", "EnrollmentToken": "t"}
            ).status_code
            == 204
        )
    reader_scopes = ["User.Read", "CustomSecAttributeAssignment.Read.All"]
    first = graph_client(info, sign_in(running, info["user_upns"][0], reader_scopes))
    second = graph_client(info, sign_in(running, info["user_upns"][1], reader_scopes))
    own = first.get("/me", params={"$select": "customSecurityAttributes"}).json()
    assert own["customSecurityAttributes"]["Defguard"]["EnrollmentToken"] == "t"
    other = second.get("/me", params={"$select": "customSecurityAttributes"}).json()
    assert other["customSecurityAttributes"] is None


def test_graph_faults_use_graph_errors(start_sandbox: StartSandbox) -> None:
    from dgprov_sandbox.http_common import FaultSettings

    running = start_sandbox(example_tenant(), faults=FaultSettings(error_rate=1.0, seed=3))
    client = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    responses = [client.get("/me") for _ in range(12)]
    assert {r.status_code for r in responses} == {503, 504}
    assert all(
        r.json()["error"]["code"] in ("serviceNotAvailable", "gatewayTimeout") for r in responses
    )
    assert any("Retry-After" in r.headers for r in responses if r.status_code == 503)
    dropped = start_sandbox(example_tenant(), faults=FaultSettings(drop_rate=1.0))
    token = sign_in(dropped, dropped.info["admin_upn"])
    with pytest.raises(httpx.TransportError):
        graph_client(dropped.info, token).get("/me")
