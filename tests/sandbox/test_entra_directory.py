"""Applications and their consent in the emulated Entra directory (``entra_directory``).

Driven by the real ``msal`` library over HTTPS.
"""

from __future__ import annotations

import msal

from ..conftest import Running, msal_http_client, public_client


def test_unconsented_scope_and_unknown_client(entra: Running) -> None:
    app = public_client(entra.info)
    flow = app.initiate_device_flow(scopes=["Mail.Send"])
    assert "user_code" not in flow and "AADSTS65001" in flow["error_description"]
    stranger = msal.PublicClientApplication(
        "00000000-0000-4000-8000-00000000dead",
        authority=entra.info["authority_url"],
        instance_discovery=False,
        http_client=msal_http_client(entra.info["ca_bundle"]),
    )
    assert (
        "AADSTS700016" in stranger.initiate_device_flow(scopes=["User.Read"])["error_description"]
    )


def test_default_scope_cannot_be_mixed_with_named_scopes(entra: Running) -> None:
    """Audit G6 (Learn Q&A 886876): AADSTS70011 from the authority; .default alone is fine."""
    app = public_client(entra.info)
    mixed = app.initiate_device_flow(
        scopes=["https://graph.microsoft.com/.default", "User.Read.All"]
    )
    assert "user_code" not in mixed
    assert mixed["error"] == "invalid_scope" and "AADSTS70011" in mixed["error_description"]
    assert "user_code" in app.initiate_device_flow(scopes=["https://graph.microsoft.com/.default"])
