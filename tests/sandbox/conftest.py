"""Helpers and fixtures shared by the emulator tests, one section per emulator.

The fixtures that start sandboxes in this process (``start_sandbox``, ``sandbox``, ``line``) and
the MSAL helpers are in ``tests/conftest.py``, shared with the product's tests; what only the
emulator tests need is here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import (
    Running,
    StartSandbox,
    example_tenant,
    graph_client,
    msal_http_client,
    sign_in,
    trust,
)

SANDBOX_READY_SECONDS = 20.0

# ------------------------------------------------------------------ Defguard core and proxy


UA = {"User-Agent": "dgprov-tests"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **UA}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def expiry_seconds(sandbox: Running, username: str) -> float:
    (token,) = sandbox.tokens(username)
    created = datetime.fromisoformat(token["created_at"])
    return (datetime.fromisoformat(token["expires_at"]) - created).total_seconds()


def new_pubkey() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def without_user_agent(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """Send a request with no ``User-Agent`` header at all (httpx adds one by default)."""
    request = client.build_request(method, url, **kwargs)
    del request.headers["user-agent"]
    return client.send(request)


def start_session(sandbox: Running, token: str) -> httpx.Response:
    return sandbox.proxy.post("/api/v1/enrollment/start", json={"token": token})


# ---------------------------------------------------------------------------- Entra sign-in


WAIT_SECONDS = 20.0


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def jwt_header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(_unpad(token.split(".")[0]))
    return header


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


# ------------------------------------------------------------------------------------- Graph


CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"


OBRIEN_MAIL = "siobhan.o'brien+vpn@contoso.example"


@pytest.fixture
def tenant(start_sandbox: StartSandbox) -> Running:
    return start_sandbox(example_tenant())


@pytest.fixture
def admin(tenant: Running) -> httpx.Client:
    return graph_client(tenant.info, sign_in(tenant, tenant.info["admin_upn"]))


def odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def users(client: httpx.Client, filter_text: str, **headers: str) -> httpx.Response:
    return client.get(
        "/users",
        params={"$filter": filter_text, "$select": "id,mail,userPrincipalName"},
        headers=headers,
    )


def upns(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {u["userPrincipalName"] for u in response.json()["value"]}


def set_csa(
    client: httpx.Client, user: str, values: dict[str, Any], set_name: str = "Defguard"
) -> httpx.Response:
    return client.patch(
        f"/users/{user}",
        json={"customSecurityAttributes": {set_name: {"@odata.type": CSA_TYPE, **values}}},
    )


def read_csa(client: httpx.Client, user: str) -> Any:
    response = client.get(f"/users/{user}", params={"$select": "customSecurityAttributes"})
    assert response.status_code == 200, response.text
    return response.json()["customSecurityAttributes"]


# ------------------------------------------------------------------------------ command line


@contextmanager
def sandbox_process(*args: str) -> Iterator[dict[str, Any]]:
    """``python -m dgprov_sandbox`` in its own process: yields the ready line, then stops it.

    The sandbox's own entry point, not ``dgprov sandbox`` (``tests/conftest.py``'s
    ``running_sandbox``): the emulators' tests must not need the product.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "dgprov_sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(SANDBOX_READY_SECONDS), "the sandbox printed nothing"
        yield json.loads(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.returncode == 0


def verify_with_jwks(running: Running, token: str) -> dict[str, Any]:
    """The claims of ``token`` once its RS256 signature verifies against the key the authority
    publishes (found through its OpenID configuration), as a relying party checks it."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    verify = trust(running.info)
    config = httpx.get(
        f"{running.info['authority_url']}/v2.0/.well-known/openid-configuration", verify=verify
    ).json()
    keys = httpx.get(config["jwks_uri"], verify=verify).json()["keys"]
    header_part, claims_part, signature_part = token.split(".")
    header = json.loads(_unpad(header_part))
    (jwk,) = [k for k in keys if k["kid"] == header["kid"]]
    public_key = rsa.RSAPublicNumbers(
        int.from_bytes(_unpad(jwk["e"]), "big"), int.from_bytes(_unpad(jwk["n"]), "big")
    ).public_key()
    public_key.verify(
        _unpad(signature_part),
        f"{header_part}.{claims_part}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert header["alg"] == "RS256"
    return jwt_claims(token)


def _unpad(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def broker_app_only_token(running: Running) -> str:
    """Client credentials of the tenant's confidential client for ``api://{broker}/.default``:
    an app-only token for the broker, through the real msal."""
    import msal

    info = running.info
    app = msal.ConfidentialClientApplication(
        info["confidential_client_id"],
        client_credential=info["client_secret"],
        authority=info["authority_url"],
        instance_discovery=False,
        http_client=msal_http_client(info["ca_bundle"]),
    )
    resource = info["broker_scope"].rsplit("/", 1)[0]
    result = app.acquire_token_for_client([f"{resource}/.default"])
    assert "access_token" in result, result
    token: str = result["access_token"]
    return token
