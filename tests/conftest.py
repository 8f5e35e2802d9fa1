"""Fixtures that start real sandboxes on 127.0.0.1, port 0, for tests over real HTTP."""

from __future__ import annotations

import copy
import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dgprov_sandbox import Sandbox, SandboxOptions
from dgprov_sandbox.http_common import FaultSettings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_TENANT = REPO / "sandbox" / "src" / "dgprov_sandbox" / "example_tenant.json"
ADMIN_TOKEN = "dg-Exampl3TokenForTheSandbox0000001"
DISABLED_ADMIN_TOKEN = "dg-Exampl3TokenOfADisabledAdmin0002"

# The Windows lane needs the exe built under Wine; make test-windows runs it (tests/windows).
collect_ignore = ["windows"]


def example_tenant() -> dict[str, Any]:
    """A fresh copy of the example tenant, for tests to adjust."""
    loaded: dict[str, Any] = json.loads(EXAMPLE_TENANT.read_text("utf-8"))
    return copy.deepcopy(loaded)


class Running:
    """A started sandbox with clients for its core (as the admin) and its proxy."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.info = sandbox.info
        assert sandbox.state is not None
        self.state = sandbox.state
        self.core = httpx.Client(
            base_url=self.info["defguard_url"],
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "User-Agent": "dgprov-tests"},
        )
        self.anonymous = httpx.Client(base_url=self.info["defguard_url"])
        self.proxy = httpx.Client(base_url=self.info["proxy_url"])

    def issue(self, username: str, **body: Any) -> str:
        response = self.core.post(f"/api/v1/user/{username}/start_enrollment", json=body)
        assert response.status_code == 201, response.text
        token: str = response.json()["enrollment_token"]
        return token

    def tokens(self, username: str) -> list[dict[str, Any]]:
        response = self.anonymous.get("/_sandbox/tokens", params={"username": username})
        tokens: list[dict[str, Any]] = response.json()["tokens"]
        return tokens

    def advance_clock(self, seconds: float) -> None:
        response = self.anonymous.post("/_sandbox/clock", json={"advance_seconds": seconds})
        assert response.status_code == 200

    def close(self) -> None:
        for client in (self.core, self.anonymous, self.proxy):
            client.close()
        # uvicorn's shutdown sleeps 100 ms; let it happen while the next test runs.
        self.sandbox.stop(wait=False)
        _stopping.append(self.sandbox)


StartSandbox = Callable[..., Running]
_stopping: list[Sandbox] = []


@pytest.fixture(scope="session", autouse=True)
def _join_stopped_sandboxes() -> Iterator[None]:
    yield
    for sandbox in _stopping:
        sandbox.join()


@pytest.fixture
def start_sandbox() -> Iterator[StartSandbox]:
    """Start sandboxes for a test; all are stopped at its end."""
    running: list[Running] = []

    def start(
        tenant: dict[str, Any] | None = None,
        line: str = "2.0",
        faults: FaultSettings | None = None,
        **options_overrides: Any,
    ) -> Running:
        options = SandboxOptions(defguard_version="1.6" if line == "1.6" else "2.0")
        if faults is not None:
            options.faults = faults
        for name, value in options_overrides.items():
            setattr(options, name, value)
        sandbox = Sandbox(tenant or example_tenant(), options)
        sandbox.start()
        running.append(Running(sandbox))
        return running[-1]

    yield start
    for item in running:
        item.close()


@pytest.fixture(params=["1.6", "2.0"])
def line(request: pytest.FixtureRequest) -> str:
    """Run a test once per Defguard server line."""
    value: str = request.param
    return value


@pytest.fixture
def sandbox(start_sandbox: StartSandbox, line: str) -> Running:
    """The example tenant on the server line under test."""
    return start_sandbox(line=line)


# ------------------------------------------------------------------------------ Entra and MSAL

ADMIN_SCOPES = [
    "User.Read.All",
    "GroupMember.Read.All",
    "CustomSecAttributeAssignment.ReadWrite.All",
    "CustomSecAttributeDefinition.Read.All",
]


def msal_http_client(ca_bundle: str) -> Any:
    """A requests session trusting the sandbox CA.

    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` would override ``verify``; ``trust_env=False``
    stops that, which is what a product using MSAL against a private CA must do too.
    """
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle
    return session


def public_client(info: dict[str, Any]) -> Any:
    import msal

    return msal.PublicClientApplication(
        info["client_id"],
        authority=info["authority_url"],
        instance_discovery=False,
        http_client=msal_http_client(info["ca_bundle"]),
    )


def trust(info: dict[str, Any]) -> ssl.SSLContext:
    """An SSL context trusting the sandbox CA, for httpx."""
    return ssl.create_default_context(cafile=info["ca_bundle"])


def graph_client(info: dict[str, Any], access_token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    return httpx.Client(base_url=info["graph_url"], verify=trust(info), headers=headers)


def sign_in(running: Running, upn: str, scopes: list[str] | None = None) -> str:
    """An access token for ``upn`` through MSAL's device-code flow, auto-approved as ``upn``."""
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    app = public_client(running.info)
    flow = app.initiate_device_flow(scopes=scopes or ADMIN_SCOPES)
    assert "user_code" in flow, flow
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    running.sandbox.entra.auto_approve_upn = None
    token: str = result["access_token"]
    return token


def make_certificate(common_name: str = "dgprov tests") -> tuple[str, str]:
    """A fresh RSA key and self-signed certificate, as PEM ``(private_key, certificate)``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


def confidential_client(info: dict[str, Any], credential: Any) -> Any:
    """An MSAL confidential client of the sandbox's automation app, with a secret or certificate."""
    import msal

    return msal.ConfidentialClientApplication(
        info["confidential_client_id"],
        client_credential=credential,
        authority=info["authority_url"],
        instance_discovery=False,
        http_client=msal_http_client(info["ca_bundle"]),
    )
