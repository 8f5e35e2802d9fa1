"""Graph's ``/users`` and ``/me`` on the emulator (``graph_users``): ``$select``, lookups, scopes.

Over real HTTPS, with tokens from real MSAL sign-ins.
"""

from __future__ import annotations

import httpx

from ..conftest import Running, graph_client, sign_in


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


def test_scope_without_directory_read(tenant: Running) -> None:
    client = graph_client(tenant.info, sign_in(tenant, "sobrien@contoso.example", ["User.Read"]))
    assert client.get("/me").status_code == 200
    denied = client.get("/users")
    assert (
        denied.status_code == 403
        and denied.json()["error"]["code"] == "Authorization_RequestDenied"
    )
