"""Graph's ``/groups`` and members on the emulator (``graph_groups``).

Over real HTTPS, with tokens from real MSAL sign-ins.
"""

from __future__ import annotations

import httpx

from ..conftest import Running, graph_client, sign_in


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
