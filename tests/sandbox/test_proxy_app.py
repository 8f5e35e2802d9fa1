"""The HTTP face of the enrollment proxy emulator (``proxy_app``): cookie, shapes, info.

Over real HTTP on both server lines (proxy v1.6.2 src/handlers, src/error.rs): the sealed
``defguard_proxy`` cookie, response keys in proto order, body rejections and the proxy's own
endpoints.
"""

from __future__ import annotations

import pytest

from ..conftest import Running, StartSandbox, example_tenant
from .conftest import new_pubkey, start_session


def test_start_sets_cookie_and_describes_the_user(sandbox: Running, line: str) -> None:
    token = sandbox.issue("jdoe")
    response = start_session(sandbox, token)
    assert response.status_code == 200
    assert response.headers["set-cookie"].startswith("defguard_proxy=")
    assert token not in response.headers["set-cookie"]
    body = response.json()
    assert list(body) == [
        "admin",
        "user",
        "deadline_timestamp",
        "final_page_content",
        "instance",
        "settings",
    ]
    assert body["user"]["login"] == "jdoe" and body["user"]["enrolled"] is False
    assert body["admin"] == {
        "name": "Ada Admin",
        "phone_number": "+48123456789",
        "email": "admin@contoso.example",
    }
    assert body["instance"]["proxy_url"] == sandbox.info["proxy_url"] + "/"
    assert body["instance"]["username"] == "jdoe"
    assert body["settings"]["mfa_required"] is True  # the Lab location uses internal MFA
    (stored,) = sandbox.tokens("jdoe")
    assert stored["used_at"] is not None
    headers = response.headers
    assert headers["x-powered-by"] == "Defguard" and headers["defguard-core-connected"] == "true"


def test_forged_cookie_reads_as_no_cookie(sandbox: Running) -> None:
    """``PrivateCookieJar::get`` returns nothing for a cookie it cannot open, so core gets no
    token (proxy v1.6.2 src/handlers/enrollment.rs:113-115)."""
    sandbox.proxy.cookies.set("defguard_proxy", "not-a-sealed-value")
    response = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "x", "pubkey": new_pubkey()}
    )
    assert (response.status_code, response.json()) == (
        401,
        {"error": "Missing authorization header"},
    )


def test_create_device_body_must_be_complete(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    response = sandbox.proxy.post("/api/v1/enrollment/create_device", json={"name": "x"})
    assert response.status_code == 422
    assert response.text == (
        "Failed to deserialize the JSON body into the target type: missing field `pubkey`"
    )


def test_poll_without_licence(start_sandbox: StartSandbox) -> None:
    tenant = example_tenant()
    tenant["license"] = None
    sandbox = start_sandbox(tenant, "2.0")
    response = sandbox.proxy.post("/api/v1/poll", json={"token": "x" * 32})
    assert (response.status_code, response.json()) == (
        402,
        {"error": "Enterprise features are not enabled"},
    )


def test_proxy_info_and_health(sandbox: Running, line: str) -> None:
    assert sandbox.proxy.get("/api/v1/info").json() == {
        "version": {"1.6": "1.6.2", "2.0": "2.0.1"}[line]
    }
    assert sandbox.proxy.get("/api/v1/health").text == "alive"


@pytest.mark.parametrize("policy", [0, 1, 2])
def test_client_traffic_policy_on_both_lines(
    start_sandbox: StartSandbox, line: str, policy: int
) -> None:
    """``Some(policy as i32)`` on 1.6 too (v1.6.6 crates/defguard_core/src/grpc/mod.rs:854);
    1.6 also forces AllowedIPs under policy 2 (db/models/wireguard.rs:1501-1515), 2.0 does not."""
    tenant = example_tenant()
    tenant["instance"]["client_traffic_policy"] = policy
    sandbox = start_sandbox(tenant, line)
    start = start_session(sandbox, sandbox.issue("jdoe")).json()
    assert start["instance"]["client_traffic_policy"] == policy
    assert start["instance"]["disable_all_traffic"] is (policy == 1)
    created = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "x", "pubkey": new_pubkey()}
    ).json()
    assert created["instance"]["client_traffic_policy"] == policy
    hq = next(c for c in created["configs"] if c["network_name"] == "HQ")
    forced = line == "1.6" and policy == 2
    expected = "0.0.0.0/0,::/0" if forced else "10.10.0.0/24,192.168.10.0/24"
    assert hq["allowed_ips"] == expected
    assert f"AllowedIPs = {expected}\n" in hq["config"]


@pytest.mark.parametrize(("stated", "reported"), [(None, True), (False, False), (True, True)])
def test_mfa_required_as_the_tenant_states_it(
    start_sandbox: StartSandbox, stated: bool | None, reported: bool
) -> None:
    tenant = example_tenant()
    tenant["instance"]["mfa_required"] = stated  # the Lab location uses internal MFA
    sandbox = start_sandbox(tenant)
    settings = start_session(sandbox, sandbox.issue("jdoe")).json()["settings"]
    assert settings["mfa_required"] is reported
