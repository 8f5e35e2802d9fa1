"""The OAuth grants of the Entra emulator (``entra_grants``), driven by the real ``msal`` library.

Device code (pending, approved, declined, expired, slow_down, single use), authorization code
with PKCE, refresh tokens (rotated), and client credentials with a secret or a certificate.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from ..conftest import (
    Running,
    StartSandbox,
    confidential_client,
    graph_client,
    public_client,
    trust,
)
from .conftest import WAIT_SECONDS, control, device_codes, jwt_claims, wait_for


def test_device_code_pending_then_approved_over_the_control_api(entra: Running) -> None:
    app = public_client(entra.info)
    flow = app.initiate_device_flow(scopes=["User.Read"])
    assert flow["interval"] == 1 and flow["expires_in"] == 900
    assert flow["user_code"] in flow["message"]
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(app.acquire_token_by_device_flow(flow)))
    worker.start()
    wait_for(lambda: any(c["polled"] for c in device_codes(entra)), "the first (pending) poll")
    assert not result
    upn = entra.info["user_upns"][2]
    assert (
        control(entra, f"device-codes/{flow['user_code']}/approve", {"upn": upn}).status_code == 200
    )
    worker.join(WAIT_SECONDS)
    assert result["id_token_claims"]["preferred_username"] == upn
    assert app.get_accounts()[0]["username"] == upn


def test_device_code_declined(entra: Running) -> None:
    app = public_client(entra.info)
    flow = app.initiate_device_flow(scopes=["User.Read"])
    control(entra, f"device-codes/{flow['user_code']}/decline")
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "authorization_declined"


def test_device_code_expired(entra: Running) -> None:
    app = public_client(entra.info)
    flow = app.initiate_device_flow(scopes=["User.Read"])
    entra.advance_clock(16 * 60)
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "expired_token"


def test_device_code_slow_down_and_single_use(entra: Running) -> None:
    info = entra.info
    token_url = f"{info['authority_url']}/oauth2/v2.0/token"
    start = httpx.post(
        f"{info['authority_url']}/oauth2/v2.0/devicecode",
        data={"client_id": info["client_id"], "scope": "User.Read offline_access"},
        verify=trust(info),
    ).json()
    poll = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "client_id": info["client_id"],
        "device_code": start["device_code"],
    }
    first = httpx.post(token_url, data=poll, verify=trust(info))
    second = httpx.post(token_url, data=poll, verify=trust(info))
    assert (first.status_code, first.json()["error"]) == (400, "authorization_pending")
    assert second.json()["error"] == "slow_down"
    control(entra, f"device-codes/{start['user_code']}/approve", {"upn": info["admin_upn"]})
    assert "access_token" in httpx.post(token_url, data=poll, verify=trust(info)).json()
    again = httpx.post(token_url, data=poll, verify=trust(info)).json()
    assert again["error"] == "invalid_grant"


def _pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    return verifier, challenge


def test_authorization_code_with_query_redirect_and_pkce(entra: Running) -> None:
    info = entra.info
    verifier, challenge = _pkce()
    redirect = "http://localhost:8765"
    response = httpx.get(
        f"{info['authority_url']}/oauth2/v2.0/authorize",
        params={
            "client_id": info["client_id"],
            "response_type": "code",
            "redirect_uri": redirect,
            "scope": "User.Read offline_access openid",
            "state": "xyz",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": info["user_upns"][1],
        },
        verify=trust(info),
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == redirect
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    token_url = f"{info['authority_url']}/oauth2/v2.0/token"
    form = {
        "grant_type": "authorization_code",
        "client_id": info["client_id"],
        "code": query["code"][0],
        "redirect_uri": redirect,
    }
    wrong = httpx.post(token_url, data=form | {"code_verifier": "x" * 43}, verify=trust(info))
    assert wrong.json()["error"] == "invalid_grant" and "PKCE" in wrong.json()["error_description"]
    tokens = httpx.post(
        token_url, data=form | {"code_verifier": verifier}, verify=trust(info)
    ).json()
    assert jwt_claims(tokens["access_token"])["upn"] == info["user_upns"][1]
    refreshed = httpx.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": info["client_id"],
            "refresh_token": tokens["refresh_token"],
            "scope": "User.Read offline_access",
        },
        verify=trust(info),
    ).json()
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    reused = httpx.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": info["client_id"],
            "refresh_token": tokens["refresh_token"],
        },
        verify=trust(info),
    ).json()
    assert reused["error"] == "invalid_grant"


def test_silent_refresh_through_msal(entra: Running) -> None:
    entra.sandbox.entra.auto_approve_upn = entra.info["admin_upn"]  # type: ignore[union-attr]
    app = public_client(entra.info)
    first = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=["User.Read"]))
    account = app.get_accounts()[0]
    cached = app.acquire_token_silent(["User.Read"], account=account)
    assert cached["token_source"] == "cache" and cached["access_token"] == first["access_token"]
    refreshed = app.acquire_token_silent(["User.Read"], account=account, force_refresh=True)
    assert refreshed["token_source"] == "identity_provider"
    assert refreshed["access_token"] != first["access_token"]


def test_client_credentials(entra: Running) -> None:
    info = entra.info
    app = confidential_client(info, info["client_secret"])
    result = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    claims = jwt_claims(result["access_token"])
    assert (
        claims["idtyp"] == "app" and "CustomSecAttributeAssignment.ReadWrite.All" in claims["roles"]
    )
    assert "scp" not in claims
    users = graph_client(info, result["access_token"]).get("/users", params={"$select": "id"})
    assert users.status_code == 200 and len(users.json()["value"]) == 6
    me = graph_client(info, result["access_token"]).get("/me")
    assert me.status_code == 400
    wrong = confidential_client(info, "wrong").acquire_token_for_client(
        ["https://graph.microsoft.com/.default"]
    )
    assert wrong["error"] == "invalid_client" and "AADSTS7000215" in wrong["error_description"]


def test_client_certificate_credentials(start_sandbox: StartSandbox) -> None:
    from ..conftest import example_tenant, make_certificate

    key, certificate = make_certificate()
    tenant = example_tenant()
    tenant["entra"]["applications"][1]["certificates"].append(certificate)
    running = start_sandbox(tenant)
    info = running.info

    def app_token(credential: dict[str, str]) -> dict[str, Any]:
        app = confidential_client(info, credential)
        result: dict[str, Any] = app.acquire_token_for_client(
            ["https://graph.microsoft.com/.default"]
        )
        return result

    accepted = app_token({"private_key": key, "public_certificate": certificate})
    assert jwt_claims(accepted["access_token"])["idtyp"] == "app"
    other_key, other_certificate = make_certificate("not registered")
    refused = app_token({"private_key": other_key, "public_certificate": other_certificate})
    assert refused["error"] == "invalid_client" and "AADSTS700027" in refused["error_description"]
    mismatched = app_token({"private_key": other_key, "public_certificate": certificate})
    assert (
        mismatched["error"] == "invalid_client" and "signature" in mismatched["error_description"]
    )
