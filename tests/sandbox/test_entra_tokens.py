"""The tokens the Entra emulator mints (``entra_tokens``), read back by Graph.

Driven by the real ``msal`` library over HTTPS.
"""

from __future__ import annotations

from ..conftest import (
    ADMIN_SCOPES,
    Running,
    graph_client,
    public_client,
    sign_in,
)
from .conftest import broker_app_only_token, jwt_claims, verify_with_jwks


def test_device_code_auto_approved_as_admin(entra: Running) -> None:
    token = sign_in(entra, entra.info["admin_upn"])
    claims = jwt_claims(token)
    assert claims["upn"] == entra.info["admin_upn"]
    assert claims["tid"] == entra.info["tenant_id"]
    assert claims["aud"] == "https://graph.microsoft.com"
    assert set(claims["scp"].split()) == set(ADMIN_SCOPES)
    me = graph_client(entra.info, token).get("/me", params={"$select": "userPrincipalName"})
    assert me.json()["userPrincipalName"] == entra.info["admin_upn"]


# ------------------------------------------------------------- tokens for the broker's web API


def test_broker_scope_gives_a_v2_token_for_the_broker(entra: Running) -> None:
    """Device code for ``api://{broker}/Provision``: Microsoft's v2.0 claim shapes, RS256 signed
    with the published key, and Graph refuses it (wrong audience)."""
    info = entra.info
    assert info["broker_scope"] == f"api://{info['broker_client_id']}/Provision"
    upn = info["user_upns"][1]
    token = sign_in(entra, upn, [info["broker_scope"]])
    claims = verify_with_jwks(entra, token)
    user = entra.sandbox.entra.find_user(upn) if entra.sandbox.entra else None
    assert user is not None
    assert claims["aud"] == info["broker_client_id"]
    assert claims["iss"] == f"{info['authority_url']}/v2.0"
    assert claims["scp"] == "Provision"
    assert claims["ver"] == "2.0" and claims["idtyp"] == "user"
    assert claims["oid"] == user.object_id and claims["tid"] == info["tenant_id"]
    assert claims["upn"] == claims["preferred_username"] == upn
    assert claims["azp"] == info["client_id"] and "roles" not in claims
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    me = graph_client(info, token).get("/me")
    assert me.status_code == 401 and "audience" in me.json()["error"]["message"]


def test_broker_token_refreshes_silently(entra: Running) -> None:
    """MSAL's silent path: the cached refresh token redeems for a new broker token."""
    info = entra.info
    assert entra.sandbox.entra is not None
    entra.sandbox.entra.auto_approve_upn = info["user_upns"][0]
    app = public_client(info)
    first = app.acquire_token_by_device_flow(
        app.initiate_device_flow(scopes=[info["broker_scope"]])
    )
    assert "access_token" in first, first
    (account,) = app.get_accounts()
    again = app.acquire_token_silent([info["broker_scope"]], account, force_refresh=True)
    assert again is not None and again["access_token"] != first["access_token"]
    claims = verify_with_jwks(entra, again["access_token"])
    assert claims["aud"] == info["broker_client_id"] and claims["scp"] == "Provision"


def test_app_only_token_for_the_broker_has_roles_and_no_scope(tenant: Running) -> None:
    """Client credentials for ``api://{broker}/.default``: the roles granted, ``idtyp`` app."""
    info = tenant.info
    claims = verify_with_jwks(tenant, broker_app_only_token(tenant))
    assert claims["aud"] == info["broker_client_id"] and claims["idtyp"] == "app"
    assert claims["roles"] == ["Provision.All"] and "scp" not in claims
    assert claims["azp"] == info["confidential_client_id"] and "upn" not in claims


def test_one_request_names_one_resource(entra: Running) -> None:
    """Graph and the broker in one request: AADSTS28000; an unexposed scope: AADSTS70011."""
    app = public_client(entra.info)
    mixed = app.initiate_device_flow(scopes=["User.Read", entra.info["broker_scope"]])
    assert "user_code" not in mixed and "AADSTS28000" in mixed["error_description"]
    resource = entra.info["broker_scope"].rsplit("/", 1)[0]
    unknown = app.initiate_device_flow(scopes=[f"{resource}/Admin"])
    assert "user_code" not in unknown and "AADSTS70011" in unknown["error_description"]
