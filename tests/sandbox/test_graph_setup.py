"""The tenant before ``dgprov setup-entra`` (``--entra-setup none``) and the Graph endpoints
setup-entra calls: permissions and roles, duplicate answers, replication delays, and the effect
of what they create on later sign-ins (issue 22, point 6)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from dgprov_sandbox.entra_setup import GRAPH_CLI_APP_ID
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import ADMIN_SCOPES, Running, StartSandbox, graph_client, msal_http_client
from .conftest import jwt_claims, sandbox_process

GRAPH = "00000003-0000-0000-c000-000000000000"
AAA = "58a13ea3-c632-46ae-9ee0-9c0d43cd7f3d"  # Attribute Assignment Administrator
AAR = "ffd52fa5-98dc-465c-991d-fc073eb59f8f"  # Attribute Assignment Reader
USER_READ_ALL_ROLE = "df021288-bdef-4463-88db-98f22de89214"
SETUP_SCOPES = [
    "User.Read",
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "CustomSecAttributeDefinition.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
    "Group.Read.All",
]
ADMIN_GRANT = " ".join(["User.Read", *ADMIN_SCOPES])
DEFINITIONS = ("EnrollmentUrl", "EnrollmentToken", "EnrollmentTokenExpiresAt")
CREATE = {"Prefer": "create-if-missing"}


def start_bare(start_sandbox: StartSandbox, **options: Any) -> Running:
    return start_sandbox(
        synthetic_tenant(3, 7, entra_setup="none"),
        entra_setup="none",
        device_code_interval=1,
        **options,
    )


def device_code_token(
    running: Running, client_id: str, upn: str, scopes: list[str]
) -> dict[str, Any]:
    """MSAL's device-code flow with ``client_id``, auto-approved as ``upn``: the raw result."""
    import msal

    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    app = msal.PublicClientApplication(
        client_id,
        authority=running.info["authority_url"],
        instance_discovery=False,
        http_client=msal_http_client(running.info["ca_bundle"]),
    )
    flow = app.initiate_device_flow(scopes=scopes)
    if "user_code" not in flow:
        running.sandbox.entra.auto_approve_upn = None
        return dict(flow)
    result: dict[str, Any] = app.acquire_token_by_device_flow(flow)
    running.sandbox.entra.auto_approve_upn = None
    return result


def graph_as(running: Running, upn: str, client_id: str = GRAPH_CLI_APP_ID) -> httpx.Client:
    result = device_code_token(running, client_id, upn, SETUP_SCOPES)
    assert "access_token" in result, result
    return graph_client(running.info, result["access_token"])


def one(client: httpx.Client, path: str, filter_text: str) -> dict[str, Any]:
    response = client.get(path, params={"$filter": filter_text})
    assert response.status_code == 200, response.text
    (item,) = response.json()["value"]
    return dict(item)


def create_set_and_definitions(admin: httpx.Client, set_id: str = "Defguard") -> None:
    created = admin.post("/directory/attributeSets", json={"id": set_id, "description": "VPN"})
    assert created.status_code == 201, created.text
    for name in DEFINITIONS:
        body = {
            "attributeSet": set_id,
            "name": name,
            "type": "String",
            "isCollection": False,
            "isSearchable": False,
            "status": "Available",
            "usePreDefinedValuesOnly": False,
        }
        response = admin.post("/directory/customSecurityAttributeDefinitions", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["id"] == f"{set_id}_{name}"


def public_client_app(admin: httpx.Client, unique_name: str = "dgprov") -> dict[str, Any]:
    body = {
        "displayName": "dgprov",
        "signInAudience": "AzureADMyOrg",
        "isFallbackPublicClient": True,
        "publicClient": {"redirectUris": ["http://localhost"]},
    }
    created = admin.patch(f"/applications(uniqueName='{unique_name}')", json=body, headers=CREATE)
    assert created.status_code == 201, created.text
    return dict(created.json())


def service_principal(admin: httpx.Client, app_id: str) -> dict[str, Any]:
    response = admin.post("/servicePrincipals", json={"appId": app_id})
    assert response.status_code == 201, response.text
    return dict(response.json())


def graph_sp_id(admin: httpx.Client) -> str:
    return str(one(admin, "/servicePrincipals", f"appId eq '{GRAPH}'")["id"])


def grant(admin: httpx.Client, client_sp: str, resource_sp: str, scope: str) -> httpx.Response:
    body = {
        "clientId": client_sp,
        "consentType": "AllPrincipals",
        "resourceId": resource_sp,
        "scope": scope,
    }
    return admin.post("/oauth2PermissionGrants", json=body)


def admin_id(running: Running) -> str:
    assert running.sandbox.entra is not None
    admin = running.sandbox.entra.find_user(running.info["admin_upn"])
    assert admin is not None
    return admin.object_id


def assign_role(admin: httpx.Client, role: str, principal: str, scope: str) -> httpx.Response:
    body = {
        "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
        "roleDefinitionId": role,
        "principalId": principal,
        "directoryScopeId": scope,
    }
    return admin.post("/roleManagement/directory/roleAssignments", json=body)


def enrollment_patch(set_id: str = "Defguard") -> dict[str, Any]:
    return {
        "customSecurityAttributes": {
            set_id: {
                "@odata.type": "#Microsoft.DirectoryServices.CustomSecurityAttributeValue",
                "EnrollmentToken": "abc",
            }
        }
    }


# ------------------------------------------------------------------------------ the bare tenant


def test_a_bare_tenant_has_users_and_admin_but_no_set_and_no_dgprov_apps(
    start_sandbox: StartSandbox,
) -> None:
    running = start_bare(start_sandbox)
    info = running.info
    assert info["entra_setup"] == "none" and info["setup_client_id"] == GRAPH_CLI_APP_ID
    assert info["client_id"] is None and info["confidential_client_id"] is None
    assert info["broker_client_id"] is None and info["admin_upn"] == "admin@example.com"
    assert len(info["user_upns"]) == 3
    admin = graph_as(running, info["admin_upn"])
    assert admin.get("/directory/attributeSets").json()["value"] == []
    assert admin.get("/directory/customSecurityAttributeDefinitions").json()["value"] == []
    assert admin.get("/applications").json()["value"] == []
    graph_sp = one(admin, "/servicePrincipals", f"appId eq '{GRAPH}'")
    assert any(r["id"] == USER_READ_ALL_ROLE for r in graph_sp["appRoles"])
    assert {"User.Read.All", "CustomSecAttributeAssignment.ReadWrite.All"} <= {
        s["value"] for s in graph_sp["oauth2PermissionScopes"]
    }
    cli = one(admin, "/servicePrincipals", f"appId eq '{GRAPH_CLI_APP_ID}'")
    assert cli["displayName"] == "Microsoft Graph Command Line Tools"
    roles = admin.get("/me/memberOf/microsoft.graph.directoryRole").json()["value"]
    assert {r["roleTemplateId"] for r in roles} >= {
        "e8611ab8-c189-46e8-94e1-60213ab1f814",  # Privileged Role Administrator
        "8424c6f0-a189-499e-bbd0-26c1753c96d4",  # Attribute Definition Administrator
        "158c047a-c907-4556-b7ef-446551a6b5f7",  # Cloud Application Administrator
    }
    assert AAA not in {r["roleTemplateId"] for r in roles}


def test_the_default_keeps_the_tenant_files_apps_and_knows_the_first_party_client(
    start_sandbox: StartSandbox,
) -> None:
    running = start_sandbox(synthetic_tenant(2, 7), device_code_interval=1)
    assert running.info["client_id"] and "entra_setup" not in running.info
    admin = graph_as(running, running.info["admin_upn"])
    names = {a["displayName"] for a in admin.get("/applications").json()["value"]}
    assert names == {"dgprov", "dgprov automation", "dgprov broker"}
    dgprov_sp = one(admin, "/servicePrincipals", f"appId eq '{running.info['client_id']}'")
    seeded = one(
        admin,
        "/oauth2PermissionGrants",
        f"clientId eq '{dgprov_sp['id']}' and resourceId eq '{graph_sp_id(admin)}'",
    )
    assert "CustomSecAttributeAssignment.ReadWrite.All" in seeded["scope"].split()


# -------------------------------------------------------------------- attribute set, definitions


@pytest.mark.parametrize(("answer", "status"), [("bad-request", 400), ("conflict", 409)])
def test_attribute_set_and_definitions_with_their_duplicate_answers(
    start_sandbox: StartSandbox, answer: str, status: int
) -> None:
    running = start_bare(start_sandbox, entra_duplicate_answer=answer)
    admin = graph_as(running, running.info["admin_upn"])
    create_set_and_definitions(admin)
    again = admin.post("/directory/attributeSets", json={"id": "defguard"})
    assert again.status_code == status
    definition = {
        "attributeSet": "Defguard",
        "name": "EnrollmentToken",
        "type": "Integer",
        "isCollection": False,
        "isSearchable": False,
        "status": "Available",
        "usePreDefinedValuesOnly": False,
    }
    twice = admin.post("/directory/customSecurityAttributeDefinitions", json=definition)
    assert twice.status_code == status
    code = "Request_BadRequest" if status == 400 else "Request_MultipleObjectsWithSameKeyValue"
    assert twice.json()["error"]["code"] == code
    assert admin.get("/directory/attributeSets/Defguard").json()["id"] == "Defguard"
    listed = admin.get(
        "/directory/customSecurityAttributeDefinitions",
        params={"$filter": "attributeSet eq 'Defguard'"},
    ).json()["value"]
    assert {d["name"] for d in listed} == set(DEFINITIONS)
    assert all(d["type"] == "String" and d["isCollection"] is False for d in listed)


def test_definitions_are_validated_and_need_attribute_definition_administrator(
    start_sandbox: StartSandbox,
) -> None:
    running = start_bare(start_sandbox)
    admin = graph_as(running, running.info["admin_upn"])
    assert admin.post("/directory/attributeSets", json={"id": "Def guard"}).status_code == 400
    assert admin.post("/directory/attributeSets", json={"id": "Defguard"}).status_code == 201
    base = {
        "attributeSet": "Defguard",
        "name": "EnrollmentUrl",
        "type": "String",
        "isCollection": False,
        "isSearchable": False,
        "status": "Available",
        "usePreDefinedValuesOnly": False,
    }
    path = "/directory/customSecurityAttributeDefinitions"
    for broken in (
        {"type": "Text"},
        {"name": "1Url"},
        {"attributeSet": "Missing"},
        {"isCollection": None},
    ):
        assert admin.post(path, json=base | broken).status_code == 400, broken
    member = graph_as(running, running.info["user_upns"][0])
    denied = member.post("/directory/attributeSets", json={"id": "Other"})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert member.post(path, json=base).status_code == 403


# ------------------------------------------------------------------ the whole setup, then sign-in


def test_after_setup_the_new_public_client_signs_in_and_writes_the_attributes(
    start_sandbox: StartSandbox,
) -> None:
    running = start_bare(start_sandbox)
    upn = running.info["admin_upn"]
    admin = graph_as(running, upn)
    create_set_and_definitions(admin)
    app = public_client_app(admin)
    again = admin.patch(
        "/applications(uniqueName='dgprov')", json={"displayName": "dgprov"}, headers=CREATE
    )
    assert again.status_code == 204
    missing = admin.patch("/applications(uniqueName='other')", json={"displayName": "x"})
    assert missing.status_code == 404
    assert one(admin, "/applications", "uniqueName eq 'dgprov'")["appId"] == app["appId"]

    # Known, but nothing consented yet: AADSTS65001.
    refused = device_code_token(running, app["appId"], upn, ADMIN_SCOPES)
    assert "AADSTS65001" in refused.get("error_description", ""), refused

    sp = service_principal(admin, app["appId"])
    twice = admin.post("/servicePrincipals", json={"appId": app["appId"]})
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "Request_MultipleObjectsWithSameKeyValue"
    graph_sp = graph_sp_id(admin)
    assert grant(admin, sp["id"], graph_sp, "User.Read User.Read.All").status_code == 201
    duplicate = grant(admin, sp["id"], graph_sp, "User.Read")
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["message"] == "Permission entry already exists."
    existing = one(
        admin,
        "/oauth2PermissionGrants",
        f"clientId eq '{sp['id']}' and consentType eq 'AllPrincipals'",
    )
    assert (
        admin.patch(
            f"/oauth2PermissionGrants/{existing['id']}", json={"scope": "Nonexistent.Scope"}
        ).status_code
        == 400
    )
    patched = admin.patch(f"/oauth2PermissionGrants/{existing['id']}", json={"scope": ADMIN_GRANT})
    assert patched.status_code == 204

    # Signed in with the new app, the admin may not write the attributes before the role...
    result = device_code_token(running, app["appId"], upn, ADMIN_SCOPES)
    assert "access_token" in result, result
    claims = jwt_claims(result["access_token"])
    assert set(claims["scp"].split()) == set(ADMIN_SCOPES) and claims["appid"] == app["appId"]
    dgprov = graph_client(running.info, result["access_token"])
    target = running.info["user_upns"][0]
    assert dgprov.patch(f"/users/{target}", json=enrollment_patch()).status_code == 403

    # ...and may once Attribute Assignment Administrator is assigned at the set's scope.
    me = admin_id(running)
    assert assign_role(admin, AAA, me, "/attributeSets/Defguard").status_code == 201
    conflict = assign_role(admin, AAA, me, "/attributeSets/Defguard")
    assert (
        conflict.status_code == 400 and "conflicting object" in conflict.json()["error"]["message"]
    )
    listed = admin.get(
        "/roleManagement/directory/roleAssignments", params={"$filter": f"principalId eq '{me}'"}
    ).json()["value"]
    assert {"roleDefinitionId": AAA, "directoryScopeId": "/attributeSets/Defguard"}.items() <= next(
        a for a in listed if a["directoryScopeId"] != "/"
    ).items()
    assert dgprov.patch(f"/users/{target}", json=enrollment_patch()).status_code == 204
    read = dgprov.get(f"/users/{target}", params={"$select": "customSecurityAttributes"})
    assert read.json()["customSecurityAttributes"]["Defguard"]["EnrollmentToken"] == "abc"


def test_a_role_scoped_to_one_set_does_not_reach_another(start_sandbox: StartSandbox) -> None:
    running = start_bare(start_sandbox)
    admin = graph_as(running, running.info["admin_upn"])
    create_set_and_definitions(admin, "Defguard")
    create_set_and_definitions(admin, "Other")
    writer_upn, target = running.info["user_upns"][:2]
    assert running.sandbox.entra is not None
    writer_user = running.sandbox.entra.find_user(writer_upn)
    assert writer_user is not None
    result = device_code_token(running, GRAPH_CLI_APP_ID, writer_upn, ADMIN_SCOPES)
    writer = graph_client(running.info, result["access_token"])
    assert writer.patch(f"/users/{target}", json=enrollment_patch("Defguard")).status_code == 403
    assert writer.get("/directory/customSecurityAttributeDefinitions").status_code == 403
    scope = "/attributeSets/Defguard"
    assert assign_role(admin, AAA, writer_user.object_id, scope).status_code == 201
    assert assign_role(admin, AAA, admin_id(running), "/").status_code == 201
    everywhere = device_code_token(
        running, GRAPH_CLI_APP_ID, running.info["admin_upn"], ADMIN_SCOPES
    )
    other = graph_client(running.info, everywhere["access_token"])
    assert other.patch(f"/users/{target}", json=enrollment_patch("Other")).status_code == 204
    # Graph evaluates roles on each call: the same token now may write that set, not the other.
    assert writer.patch(f"/users/{target}", json=enrollment_patch("Other")).status_code == 403
    assert writer.patch(f"/users/{target}", json=enrollment_patch("Defguard")).status_code == 204
    seen = writer.get("/directory/customSecurityAttributeDefinitions").json()["value"]
    assert {d["attributeSet"] for d in seen} == {"Defguard"}
    read = writer.get(f"/users/{target}", params={"$select": "customSecurityAttributes"})
    assert set(read.json()["customSecurityAttributes"]) == {"Defguard"}
    both = other.get(f"/users/{target}", params={"$select": "customSecurityAttributes"})
    assert set(both.json()["customSecurityAttributes"]) == {"Defguard", "Other"}


def test_without_allow_public_client_flows_the_device_code_fails_with_7000218(
    start_sandbox: StartSandbox,
) -> None:
    running = start_bare(start_sandbox)
    upn = running.info["admin_upn"]
    admin = graph_as(running, upn)
    created = admin.post("/applications", json={"displayName": "dgprov"})
    assert created.status_code == 201
    app = created.json()
    assert app["signInAudience"] == "AzureADMyOrg" and app["isFallbackPublicClient"] is None
    sp = service_principal(admin, app["appId"])
    assert grant(admin, sp["id"], graph_sp_id(admin), ADMIN_GRANT).status_code == 201
    refused = device_code_token(running, app["appId"], upn, ["User.Read"])
    assert "AADSTS7000218" in refused.get("error_description", ""), refused
    assert (
        admin.patch(f"/applications/{app['id']}", json={"isFallbackPublicClient": True}).status_code
        == 204
    )
    assert "access_token" in device_code_token(running, app["appId"], upn, ["User.Read"])


def test_role_assignments_need_privileged_role_administrator_unless_switched(
    start_sandbox: StartSandbox,
) -> None:
    for assigner, status in (
        ("privileged-role-administrator", 403),
        ("attribute-assignment-administrator", 201),
    ):
        running = start_bare(start_sandbox, scoped_role_assigner=assigner)
        admin = graph_as(running, running.info["admin_upn"])
        create_set_and_definitions(admin)
        member_upn, other_upn = running.info["user_upns"][:2]
        assert running.sandbox.entra is not None
        member = running.sandbox.entra.find_user(member_upn)
        other = running.sandbox.entra.find_user(other_upn)
        assert member is not None and other is not None
        scope = "/attributeSets/Defguard"
        assert assign_role(admin, AAA, member.object_id, scope).status_code == 201
        delegate = graph_as(running, member_upn)
        assert assign_role(delegate, AAR, other.object_id, scope).status_code == status
        assert assign_role(delegate, AAA, other.object_id, "/").status_code == 403
        assert assign_role(admin, AAA, other.object_id, "/attributeSets/Nope").status_code == 400


def test_writes_need_their_roles_but_members_may_register_apps(
    start_sandbox: StartSandbox,
) -> None:
    running = start_bare(start_sandbox)
    admin = graph_as(running, running.info["admin_upn"])
    member = graph_as(running, running.info["user_upns"][0])
    own = member.post("/applications", json={"displayName": "mine"})
    assert own.status_code == 201
    others = public_client_app(admin)
    assert member.patch(f"/applications/{own.json()['id']}", json={"notes": "x"}).status_code == 204
    assert member.patch(f"/applications/{others['id']}", json={"notes": "x"}).status_code == 403
    assert member.post(f"/applications/{others['id']}/addPassword", json={}).status_code == 403
    assert member.post("/servicePrincipals", json={"appId": others["appId"]}).status_code == 403
    sp = service_principal(admin, others["appId"])
    assert grant(member, sp["id"], graph_sp_id(admin), "User.Read").status_code == 403
    listing = member.get("/roleManagement/directory/roleAssignments")
    assert listing.status_code == 403
    body = {
        "principalId": sp["id"],
        "resourceId": graph_sp_id(admin),
        "appRoleId": USER_READ_ALL_ROLE,
    }
    assert (
        member.post(
            f"/servicePrincipals/{graph_sp_id(admin)}/appRoleAssignedTo", json=body
        ).status_code
        == 403
    )


# ------------------------------------------------------------------------------ replication


def test_objects_are_invisible_until_the_replication_delay_has_passed(
    start_sandbox: StartSandbox,
) -> None:
    running = start_bare(start_sandbox, entra_replication_delay=30)
    upn = running.info["admin_upn"]
    admin = graph_as(running, upn)
    created = admin.post("/directory/attributeSets", json={"id": "Defguard"})
    assert created.status_code == 201
    assert admin.get("/directory/attributeSets/Defguard").status_code == 404
    app = public_client_app(admin)
    fresh = admin.get(f"/applications/{app['id']}")
    assert fresh.status_code == 404
    assert fresh.json()["error"]["code"] == "Request_ResourceNotFound"
    assert (
        admin.get("/applications", params={"$filter": f"appId eq '{app['appId']}'"}).json()["value"]
        == []
    )
    assert admin.patch(f"/applications/{app['id']}", json={"notes": "x"}).status_code == 404
    # The upsert finds the app by its key all the same: no duplicate.
    assert (
        admin.patch(
            "/applications(uniqueName='dgprov')", json={"displayName": "dgprov"}, headers=CREATE
        ).status_code
        == 204
    )
    early = admin.post("/servicePrincipals", json={"appId": app["appId"]})
    assert early.status_code == 400
    assert early.json()["error"]["details"][0]["code"] == "NoBackingApplicationObject"
    unknown = device_code_token(running, app["appId"], upn, ["User.Read"])
    assert "AADSTS700016" in unknown.get("error_description", ""), unknown

    running.advance_clock(31)
    assert admin.get("/directory/attributeSets/Defguard").status_code == 200
    assert admin.get(f"/applications/{app['id']}").status_code == 200
    sp = service_principal(admin, app["appId"])
    assert admin.get(f"/servicePrincipals/{sp['id']}").status_code == 404
    graph_sp = graph_sp_id(admin)
    assert grant(admin, sp["id"], graph_sp, "User.Read").status_code == 400
    running.advance_clock(31)
    assert grant(admin, sp["id"], graph_sp, "User.Read").status_code == 201
    # The grant itself replicates: sign-in gets the scope only afterwards.
    assert "AADSTS65001" in device_code_token(running, app["appId"], upn, ["User.Read"]).get(
        "error_description", ""
    )
    running.advance_clock(31)
    assert "access_token" in device_code_token(running, app["appId"], upn, ["User.Read"])


# -------------------------------------------------------------------------------- the broker


def test_the_brokers_app_permission_secret_and_assignment_required(
    start_sandbox: StartSandbox,
) -> None:
    import msal

    running = start_bare(start_sandbox)
    upn = running.info["admin_upn"]
    admin = graph_as(running, upn)
    client = public_client_app(admin)
    client_sp = service_principal(admin, client["appId"])
    scope_id = "3f7c1d2e-0b4a-4e5f-8a9b-1c2d3e4f5a6b"
    broker = admin.patch(
        "/applications(uniqueName='dgprov-broker')",
        headers=CREATE,
        json={
            "displayName": "dgprov broker",
            "signInAudience": "AzureADMyOrg",
            "api": {
                "requestedAccessTokenVersion": 2,
                "oauth2PermissionScopes": [
                    {"id": scope_id, "value": "Provision", "type": "Admin", "isEnabled": True}
                ],
            },
        },
    ).json()
    uri = f"api://{broker['appId']}"
    preauthorized = {"appId": client["appId"], "permissionIds": [scope_id]}
    assert (
        admin.patch(
            f"/applications/{broker['id']}",
            json={"identifierUris": [uri], "api": {"preAuthorizedApplications": [preauthorized]}},
        ).status_code
        == 204
    )
    removed = admin.patch(
        f"/applications/{broker['id']}", json={"api": {"oauth2PermissionScopes": []}}
    )
    assert removed.status_code == 400
    broker_sp = service_principal(admin, broker["appId"])
    graph_sp = graph_sp_id(admin)
    body = {"principalId": broker_sp["id"], "resourceId": graph_sp, "appRoleId": USER_READ_ALL_ROLE}
    path = f"/servicePrincipals/{graph_sp}/appRoleAssignedTo"
    assert admin.post(path, json=body).status_code == 201
    again = admin.post(path, json=body)
    assert again.status_code == 400 and "already exists" in again.json()["error"]["message"]
    held = admin.get(f"/servicePrincipals/{broker_sp['id']}/appRoleAssignments").json()["value"]
    assert [a["appRoleId"] for a in held] == [USER_READ_ALL_ROLE]

    password = admin.post(
        f"/applications/{broker['id']}/addPassword",
        json={"passwordCredential": {"displayName": "dgprov-broker"}},
    )
    assert password.status_code == 200
    secret = password.json()["secretText"]
    listed = admin.get(f"/applications/{broker['id']}").json()["passwordCredentials"]
    assert listed[0]["secretText"] is None and listed[0]["hint"] == secret[:3]
    confidential = msal.ConfidentialClientApplication(
        broker["appId"],
        client_credential=secret,
        authority=running.info["authority_url"],
        instance_discovery=False,
        http_client=msal_http_client(running.info["ca_bundle"]),
    )
    app_token = confidential.acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert jwt_claims(app_token["access_token"])["roles"] == ["User.Read.All"]

    member_upn = running.info["user_upns"][0]
    provision = [f"{uri}/Provision"]
    token = device_code_token(running, client["appId"], member_upn, provision)
    assert jwt_claims(token["access_token"])["aud"] == broker["appId"]
    assert (
        admin.patch(
            f"/servicePrincipals/{broker_sp['id']}", json={"appRoleAssignmentRequired": True}
        ).status_code
        == 204
    )
    blocked = device_code_token(running, client["appId"], member_upn, provision)
    assert "AADSTS50105" in blocked.get("error_description", ""), blocked
    assert running.sandbox.entra is not None
    group = next(iter(running.sandbox.entra.groups.values()))
    assignment = {
        "principalId": group.object_id,
        "resourceId": broker_sp["id"],
        "appRoleId": "00000000-0000-0000-0000-000000000000",
    }
    assigned = admin.post(
        f"/servicePrincipals/{broker_sp['id']}/appRoleAssignedTo", json=assignment
    )
    assert assigned.status_code == 201 and assigned.json()["principalType"] == "Group"
    assert "access_token" in device_code_token(running, client["appId"], member_upn, provision)
    assert client_sp["appRoleAssignmentRequired"] is False


# ------------------------------------------------------------------------------ command line


def test_the_command_line_starts_a_bare_tenant() -> None:
    with sandbox_process(
        "--users", "2", "--entra-setup", "none", "--entra-replication-delay", "5"
    ) as info:
        assert info["entra_setup"] == "none" and info["client_id"] is None
        assert info["setup_client_id"] == GRAPH_CLI_APP_ID
        assert info["admin_upn"] == "admin@example.com"


def test_a_certificate_added_through_graph_signs_client_assertions(
    start_sandbox: StartSandbox,
) -> None:
    import base64

    import msal
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from ..conftest import make_certificate

    running = start_bare(start_sandbox)
    admin = graph_as(running, running.info["admin_upn"])
    app = admin.post("/applications", json={"displayName": "dgprov broker"}).json()
    sp = service_principal(admin, app["appId"])
    graph_sp = graph_sp_id(admin)
    body = {"principalId": sp["id"], "resourceId": graph_sp, "appRoleId": USER_READ_ALL_ROLE}
    assert (
        admin.post(f"/servicePrincipals/{graph_sp}/appRoleAssignedTo", json=body).status_code == 201
    )
    key, certificate = make_certificate()
    der = x509.load_pem_x509_certificate(certificate.encode()).public_bytes(Encoding.DER)
    credential = {
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "key": base64.b64encode(der).decode(),
    }
    broken = admin.patch(
        f"/applications/{app['id']}",
        json={"keyCredentials": [credential | {"key": "bm90IGEgY2VydA=="}]},
    )
    assert broken.status_code == 400
    assert (
        admin.patch(f"/applications/{app['id']}", json={"keyCredentials": [credential]}).status_code
        == 204
    )
    read = admin.get(f"/applications/{app['id']}").json()["keyCredentials"]
    assert read[0]["key"] is None and read[0]["keyId"]

    def app_token(pem_key: str, pem_certificate: str) -> dict[str, Any]:
        client = msal.ConfidentialClientApplication(
            app["appId"],
            client_credential={"private_key": pem_key, "public_certificate": pem_certificate},
            authority=running.info["authority_url"],
            instance_discovery=False,
            http_client=msal_http_client(running.info["ca_bundle"]),
        )
        result: dict[str, Any] = client.acquire_token_for_client(
            ["https://graph.microsoft.com/.default"]
        )
        return result

    accepted = app_token(key, certificate)
    assert jwt_claims(accepted["access_token"])["roles"] == ["User.Read.All"]
    other_key, other_certificate = make_certificate("not registered")
    assert "AADSTS700027" in app_token(other_key, other_certificate)["error_description"]


def test_the_first_party_client_signs_the_admin_in_with_an_authorization_code(
    start_sandbox: StartSandbox,
) -> None:
    import base64
    import hashlib
    import os
    from urllib.parse import parse_qs, urlsplit

    from ..conftest import trust

    running = start_bare(start_sandbox)
    info = running.info
    verifier = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    redirect = "http://localhost:8400"
    scope = "Application.ReadWrite.All RoleManagement.ReadWrite.Directory openid"
    response = httpx.get(
        f"{info['authority_url']}/oauth2/v2.0/authorize",
        params={
            "client_id": GRAPH_CLI_APP_ID,
            "response_type": "code",
            "redirect_uri": redirect,
            "scope": scope,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": info["admin_upn"],
        },
        verify=trust(info),
    )
    assert response.status_code == 302, response.text
    code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
    tokens = httpx.post(
        f"{info['authority_url']}/oauth2/v2.0/token",
        data={
            "grant_type": "authorization_code",
            "client_id": GRAPH_CLI_APP_ID,
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": verifier,
        },
        verify=trust(info),
    ).json()
    claims = jwt_claims(tokens["access_token"])
    assert claims["appid"] == GRAPH_CLI_APP_ID and claims["upn"] == info["admin_upn"]
    assert set(claims["scp"].split()) == {
        "Application.ReadWrite.All",
        "RoleManagement.ReadWrite.Directory",
    }


def test_reads_by_id_and_alternate_key_upserts_and_limits(start_sandbox: StartSandbox) -> None:
    running = start_bare(start_sandbox)
    admin = graph_as(running, running.info["admin_upn"])
    app = public_client_app(admin)
    by_app_id = admin.get(f"/applications(appId='{app['appId']}')", params={"$select": "id,appId"})
    assert set(by_app_id.json()) == {"@odata.context", "id", "appId"}
    assert admin.get("/applications(uniqueName='dgprov')").json()["id"] == app["id"]
    assert admin.get("/applications(uniqueName='nope')").status_code == 404
    path = f"/servicePrincipals(appId='{app['appId']}')"
    assert admin.patch(path, json={"appRoleAssignmentRequired": False}).status_code == 404
    created = admin.patch(path, json={"appRoleAssignmentRequired": True}, headers=CREATE)
    assert created.status_code == 201 and created.json()["appRoleAssignmentRequired"] is True
    assert (
        admin.patch(path, json={"appRoleAssignmentRequired": False}, headers=CREATE).status_code
        == 204
    )
    sp = admin.get(path).json()
    assert sp["appRoleAssignmentRequired"] is False and sp["servicePrincipalNames"] == [
        app["appId"]
    ]
    made = grant(admin, sp["id"], graph_sp_id(admin), "User.Read")
    assert admin.get(f"/oauth2PermissionGrants/{made.json()['id']}").json()["scope"] == "User.Read"
    me = admin_id(running)
    listed = admin.get(
        "/roleManagement/directory/roleAssignments", params={"$filter": f"principalId eq '{me}'"}
    ).json()["value"]
    first = admin.get(f"/roleManagement/directory/roleAssignments/{listed[0]['id']}")
    assert first.json()["principalId"] == me and first.json()["directoryScopeId"] == "/"
    groups = admin.get("/me/transitiveMemberOf/microsoft.graph.group").json()["value"]
    everything = admin.get("/me/transitiveMemberOf").json()["value"]
    assert groups == [] and len(everything) == len(listed)
    small = admin.post("/directory/attributeSets", json={"id": "Small", "maxAttributesPerSet": 1})
    assert small.status_code == 201
    definition = {
        "attributeSet": "Small",
        "type": "String",
        "isCollection": False,
        "isSearchable": False,
        "status": "Available",
        "usePreDefinedValuesOnly": False,
    }
    definitions = "/directory/customSecurityAttributeDefinitions"
    assert admin.post(definitions, json=definition | {"name": "One"}).status_code == 201
    assert admin.post(definitions, json=definition | {"name": "Two"}).status_code == 400
    assert running.sandbox.entra is not None
    member = running.sandbox.entra.find_user(running.info["user_upns"][0])
    assert member is not None
    group = next(
        g for g in running.sandbox.entra.groups.values() if member.object_id in g.member_ids
    )
    member_graph = graph_as(running, member.user_principal_name)
    mine = member_graph.get("/me/memberOf").json()["value"]
    assert [g["id"] for g in mine] == [group.object_id]


def test_a_tenant_file_is_served_without_its_setup(start_sandbox: StartSandbox) -> None:
    from ..conftest import example_tenant

    tenant = example_tenant()
    full = start_sandbox(tenant, device_code_interval=1)
    bare = start_sandbox(tenant, entra_setup="none", device_code_interval=1)
    assert full.sandbox.entra is not None and bare.sandbox.entra is not None
    assert full.sandbox.entra.attribute_sets and not bare.sandbox.entra.attribute_sets
    assert any(u.custom_security_attributes for u in full.sandbox.entra.users.values())
    assert not any(u.custom_security_attributes for u in bare.sandbox.entra.users.values())
    assert set(bare.sandbox.entra.applications) == {GRAPH_CLI_APP_ID}
    assert GRAPH_CLI_APP_ID in full.sandbox.entra.applications
    assert bare.info["client_id"] is None and full.info["client_id"] is not None
    assert len(bare.sandbox.entra.users) == len(full.sandbox.entra.users)
    assert {u.object_id: u.directory_roles for u in bare.sandbox.entra.users.values()} == {
        u.object_id: u.directory_roles for u in full.sandbox.entra.users.values()
    }


def test_a_taken_identifier_uri_is_a_duplicate(start_sandbox: StartSandbox) -> None:
    for answer, status in (("bad-request", 400), ("conflict", 409)):
        running = start_bare(start_sandbox, entra_duplicate_answer=answer)
        admin = graph_as(running, running.info["admin_upn"])
        first = admin.post("/applications", json={"displayName": "a"}).json()
        second = admin.post("/applications", json={"displayName": "b"}).json()
        uri = {"identifierUris": [f"api://{first['appId']}"]}
        assert admin.patch(f"/applications/{first['id']}", json=uri).status_code == 204
        taken = admin.patch(f"/applications/{second['id']}", json=uri)
        assert taken.status_code == status and "identifierUris" in taken.json()["error"]["message"]
        named = admin.post("/applications", json={"displayName": "c", "uniqueName": "one"})
        assert named.status_code == 201
        again = admin.post("/applications", json={"displayName": "d", "uniqueName": "ONE"})
        assert again.status_code == status


def test_an_api_without_token_version_2_gets_v1_tokens(start_sandbox: StartSandbox) -> None:
    running = start_bare(start_sandbox)
    upn = running.info["admin_upn"]
    admin = graph_as(running, upn)
    client = public_client_app(admin)
    scope = {"id": "0d5b7c3e-1f2a-4b6c-9d8e-7f6a5b4c3d2e", "value": "Provision", "type": "Admin"}
    api = admin.post(
        "/applications",
        json={
            "displayName": "api",
            "api": {"oauth2PermissionScopes": [scope | {"isEnabled": True}]},
        },
    ).json()
    uri = f"api://{api['appId']}"
    preauthorized = {"appId": client["appId"], "permissionIds": [scope["id"]]}
    changed = admin.patch(
        f"/applications/{api['id']}",
        json={"identifierUris": [uri], "api": {"preAuthorizedApplications": [preauthorized]}},
    )
    assert changed.status_code == 204
    token = device_code_token(running, client["appId"], upn, [f"{uri}/Provision"])
    claims = jwt_claims(token["access_token"])
    assert claims["aud"] == uri and claims["ver"] == "1.0"
    assert claims["iss"] == f"https://sts.windows.net/{running.info['tenant_id']}/"
    versioned = {"api": {"requestedAccessTokenVersion": 2}}
    assert admin.patch(f"/applications/{api['id']}", json=versioned).status_code == 204
    claims = jwt_claims(
        device_code_token(running, client["appId"], upn, [f"{uri}/Provision"])["access_token"]
    )
    assert claims["aud"] == api["appId"] and claims["ver"] == "2.0"


def test_changing_a_tenant_file_app_through_graph_keeps_its_secret(
    start_sandbox: StartSandbox,
) -> None:
    import msal

    tenant = synthetic_tenant(2, 7)
    running = start_sandbox(tenant, device_code_interval=1)
    info = running.info
    admin = graph_as(running, info["admin_upn"])
    automation_id = one(admin, "/applications", f"appId eq '{info['confidential_client_id']}'")[
        "id"
    ]
    assert admin.patch(f"/applications/{automation_id}", json={"notes": "x"}).status_code == 403
    tenant["users"][0]["entra"]["directory_roles"].append("Cloud Application Administrator")
    running = start_sandbox(tenant, device_code_interval=1)
    info = running.info
    admin = graph_as(running, info["admin_upn"])
    automation = one(admin, "/applications", f"appId eq '{info['confidential_client_id']}'")
    assert admin.patch(f"/applications/{automation['id']}", json={"notes": "x"}).status_code == 204
    added = admin.post(f"/applications/{automation['id']}/addPassword", json={}).json()
    for secret in (info["client_secret"], added["secretText"]):
        client = msal.ConfidentialClientApplication(
            info["confidential_client_id"],
            client_credential=secret,
            authority=info["authority_url"],
            instance_discovery=False,
            http_client=msal_http_client(info["ca_bundle"]),
        )
        token = client.acquire_token_for_client(["https://graph.microsoft.com/.default"])
        assert "User.Read.All" in jwt_claims(token["access_token"])["roles"]
