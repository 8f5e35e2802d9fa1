"""The Entra sign-in emulator, driven by the real ``msal`` library over HTTPS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import msal
import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import (
    ADMIN_SCOPES,
    Running,
    StartSandbox,
    confidential_client,
    graph_client,
    msal_http_client,
    public_client,
    sign_in,
    trust,
)

WAIT_SECONDS = 20.0


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


@pytest.fixture
def entra(start_sandbox: StartSandbox) -> Running:
    return start_sandbox(synthetic_tenant(5, 3), device_code_interval=1)


def wait_for(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def device_codes(running: Running) -> list[dict[str, Any]]:
    authority = running.info["authority_url"].rsplit("/", 1)[0]
    response = httpx.get(f"{authority}/_sandbox/device-codes", verify=trust(running.info))
    codes: list[dict[str, Any]] = response.json()["device_codes"]
    return codes


def control(running: Running, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    authority = running.info["authority_url"].rsplit("/", 1)[0]
    return httpx.post(f"{authority}/_sandbox/{path}", json=body or {}, verify=trust(running.info))


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


def test_device_code_auto_approved_as_admin(entra: Running) -> None:
    token = sign_in(entra, entra.info["admin_upn"])
    claims = jwt_claims(token)
    assert claims["upn"] == entra.info["admin_upn"]
    assert claims["tid"] == entra.info["tenant_id"]
    assert claims["aud"] == "https://graph.microsoft.com"
    assert set(claims["scp"].split()) == set(ADMIN_SCOPES)
    me = graph_client(entra.info, token).get("/me", params={"$select": "userPrincipalName"})
    assert me.json()["userPrincipalName"] == entra.info["admin_upn"]


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


INTERACTIVE = """
import json, sys, msal, requests
client_id, authority, ca, hint = sys.argv[1:5]
session = requests.Session(); session.trust_env = False; session.verify = ca
app = msal.PublicClientApplication(client_id, authority=authority, instance_discovery=False,
                                   http_client=session)
result = app.acquire_token_interactive(["User.Read"], timeout=60, login_hint=hint or None)
claims = result.get("id_token_claims", {})
print(json.dumps({"upn": claims.get("preferred_username"), "error": result.get("error"),
                  "nonce": bool(claims.get("nonce")), "token": "access_token" in result}))
"""


@pytest.mark.parametrize("hint_index", [None, 3])
def test_interactive_flow_with_a_headless_browser(entra: Running, hint_index: int | None) -> None:
    """MSAL's own loopback server, form_post and PKCE, with BROWSER as the browser."""
    info = entra.info
    assert entra.sandbox.entra is not None
    entra.sandbox.entra.auto_approve_upn = info["user_upns"][0]
    hint = info["user_upns"][hint_index] if hint_index is not None else ""
    browser = f"{sys.executable} -m dgprov_sandbox.headless_browser --cafile {info['ca_bundle']} %s"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            INTERACTIVE,
            info["client_id"],
            info["authority_url"],
            info["ca_bundle"],
            hint,
        ],
        env={**os.environ, "BROWSER": browser},
        capture_output=True,
        text=True,
        timeout=90,
    )
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome == {
        "upn": hint or info["user_upns"][0],
        "error": None,
        "nonce": True,
        "token": True,
    }


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


def test_auto_approve_can_be_switched_while_running(entra: Running) -> None:
    target = entra.info["user_upns"][4]
    assert control(entra, "auto-approve", {"upn": target}).json() == {"auto_approve_as": target}
    app = public_client(entra.info)
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=["User.Read"]))
    assert result["id_token_claims"]["preferred_username"] == target
    assert control(entra, "auto-approve", {"upn": "nobody@example.com"}).status_code == 404


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
