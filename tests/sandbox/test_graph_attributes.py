"""Custom security attributes and their definitions on the Graph emulator (``graph_attributes``).

Over real HTTPS, with tokens from real MSAL sign-ins: who reads values (scope and directory
role), who writes them, and how a PATCH is validated.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import Running, StartSandbox, example_tenant, graph_client, sign_in
from .conftest import read_csa, set_csa


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


EMPTY_SET = {
    "customSecurityAttributes": {
        "Defguard": {"@odata.type": "#microsoft.graph.customSecurityAttributeValue"}
    }
}


@pytest.mark.parametrize(
    ("rule", "admin_status", "plain_status"),
    [("checked", 204, 403), ("unchecked", 204, 204), ("rejected", 400, 400)],
)
def test_empty_attribute_set_patch(
    start_sandbox: StartSandbox, rule: str, admin_status: int, plain_status: int
) -> None:
    """Decision G1 (undocumented): a set without values, as a write preflight sends it."""
    running = start_sandbox(example_tenant(), empty_attribute_patch=rule)
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    plain = graph_client(running.info, sign_in(running, "sobrien@contoso.example"))
    assert admin.patch("/users/jdoe@contoso.example", json=EMPTY_SET).status_code == admin_status
    assert plain.patch("/me", json=EMPTY_SET).status_code == plain_status
    if rule == "unchecked":  # nothing is skipped for a PATCH that does assign a value
        real = set_csa(plain, "sobrien@contoso.example", {"EnrollmentToken": "x"})
        assert real.status_code == 403


@pytest.mark.parametrize(("role", "reader_sees"), [("reader", True), ("administrator", False)])
def test_delegated_read_role(start_sandbox: StartSandbox, role: str, reader_sees: bool) -> None:
    """Decision G2: Attribute Assignment Reader suffices (role definitions) or only the
    Administrator does (user-get.md, 12/2024); without it the value is null, status 200."""
    running = start_sandbox(example_tenant(), csa_read_role=role)
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    set_csa(admin, "jdoe@contoso.example", {"EnrollmentToken": "abc"})
    reader = graph_client(running.info, sign_in(running, "jdoe@contoso.example"))
    seen = reader.get("/me", params={"$select": "customSecurityAttributes"}).json()
    assert (seen["customSecurityAttributes"] is not None) is reader_sees
    assert read_csa(admin, "jdoe@contoso.example")["Defguard"]["EnrollmentToken"] == "abc"


def test_empty_string_value_is_refused(tenant: Running, admin: httpx.Client) -> None:
    """msgraph-sdk-powershell#1938: "" is not a way to clear a String attribute."""
    response = set_csa(admin, "jdoe@contoso.example", {"EnrollmentToken": ""})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Non empty string value expected for attribute."
