"""The HTTP face of the Entra sign-in emulator (``authority_app``): discovery, authorize, control.

Over real HTTPS: the discovery document and keys, the authorize endpoint's redirect checks and
chooser, and the ``/_sandbox/`` control API of the sign-in port.
"""

from __future__ import annotations

import httpx

from ..conftest import Running, graph_client, public_client, sign_in, trust
from .conftest import control, jwt_header, verify_with_jwks


def test_discovery_document(entra: Running) -> None:
    authority = entra.info["authority_url"]
    config = httpx.get(
        f"{authority}/v2.0/.well-known/openid-configuration", verify=trust(entra.info)
    ).json()
    assert config["issuer"].endswith(f"/{entra.info['tenant_id']}/v2.0")
    for key in ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint"):
        assert config[key].startswith("https://127.0.0.1:")
    keys = httpx.get(config["jwks_uri"], verify=trust(entra.info)).json()["keys"]
    assert keys[0]["kty"] == "RSA"
    unknown = httpx.get(
        authority.rsplit("/", 1)[0] + "/not-a-tenant/v2.0/.well-known/openid-configuration",
        verify=trust(entra.info),
    )
    assert unknown.status_code == 400 and "AADSTS90002" in unknown.json()["error_description"]


def authorize_without_user(entra: Running, redirect_uri: str) -> httpx.Response:
    """An authorize request that names no user: no login_hint, no auto-approve."""
    return httpx.get(
        f"{entra.info['authority_url']}/oauth2/v2.0/authorize",
        params={
            "client_id": entra.info["client_id"],
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "User.Read",
        },
        verify=trust(entra.info),
    )


def test_authorize_rejects_unregistered_redirect(entra: Running) -> None:
    response = authorize_without_user(entra, "https://evil.example/cb")
    assert response.status_code == 400 and "AADSTS50011" in response.text


def test_authorize_without_a_chosen_user_shows_a_chooser(entra: Running) -> None:
    response = authorize_without_user(entra, "http://localhost:1")
    assert response.status_code == 200 and "sandbox_upn" in response.text


def test_auto_approve_can_be_switched_while_running(entra: Running) -> None:
    target = entra.info["user_upns"][4]
    assert control(entra, "auto-approve", {"upn": target}).json() == {"auto_approve_as": target}
    app = public_client(entra.info)
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=["User.Read"]))
    assert result["id_token_claims"]["preferred_username"] == target
    assert control(entra, "auto-approve", {"upn": "nobody@example.com"}).status_code == 404


def test_rotate_keys_publishes_only_the_new_key(entra: Running) -> None:
    """``POST /_sandbox/rotate-keys``: a new ``kid`` signs from now on, the old one leaves the
    JWKS; Graph (Microsoft's own service) still takes a token signed before the rotation."""
    info = entra.info
    before = sign_in(entra, info["user_upns"][0], [info["broker_scope"]])
    old_kid = httpx.get(f"{info['authority_url']}/discovery/v2.0/keys", verify=trust(info)).json()[
        "keys"
    ][0]["kid"]
    assert jwt_header(before)["kid"] == old_kid
    rotated = control(entra, "rotate-keys")
    assert rotated.status_code == 200
    new_kid = rotated.json()["kid"]
    keys = httpx.get(f"{info['authority_url']}/discovery/v2.0/keys", verify=trust(info)).json()
    assert [k["kid"] for k in keys["keys"]] == [new_kid] and new_kid != old_kid
    after = sign_in(entra, info["user_upns"][0], [info["broker_scope"]])
    assert jwt_header(after)["kid"] == new_kid
    assert verify_with_jwks(entra, after)["scp"] == "Provision"
    graph_token = sign_in(entra, info["admin_upn"], ["User.Read"])
    control(entra, "rotate-keys")
    assert graph_client(info, graph_token).get("/me").status_code == 200
