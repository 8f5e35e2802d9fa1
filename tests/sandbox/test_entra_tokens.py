"""The tokens the Entra emulator mints (``entra_tokens``), read back by Graph.

Driven by the real ``msal`` library over HTTPS.
"""

from __future__ import annotations

from ..conftest import ADMIN_SCOPES, Running, graph_client, sign_in
from .conftest import jwt_claims


def test_device_code_auto_approved_as_admin(entra: Running) -> None:
    token = sign_in(entra, entra.info["admin_upn"])
    claims = jwt_claims(token)
    assert claims["upn"] == entra.info["admin_upn"]
    assert claims["tid"] == entra.info["tenant_id"]
    assert claims["aud"] == "https://graph.microsoft.com"
    assert set(claims["scp"].split()) == set(ADMIN_SCOPES)
    me = graph_client(entra.info, token).get("/me", params={"$select": "userPrincipalName"})
    assert me.json()["userPrincipalName"] == entra.info["admin_upn"]
