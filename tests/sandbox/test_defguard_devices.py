"""Devices created during enrollment, their configurations and polling (``defguard_devices``).

Over the enrollment proxy emulator on both server lines: create_device and network_info as core's
enrollment server decides them (v2.0.1 crates/defguard_proxy_manager/src/servers/enrollment.rs,
v1.6.6 crates/defguard_core/src/grpc/enrollment.rs), /poll as enterprise/grpc/polling.rs does.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..conftest import Running, StartSandbox, example_tenant
from .conftest import new_pubkey, sha, start_session

ED_LAPTOP = "Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXs="
NO_NAME = (
    "Cannot add a new device with no name. You may be trying to add a new user device as a "
    "network device. Defguard CLI supports only network devices."
)


def create_device(sandbox: Running, name: str = "box", pubkey: str | None = None) -> dict[str, Any]:
    response = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": name, "pubkey": pubkey or new_pubkey()}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_activation_and_device(sandbox: Running) -> None:
    token = sandbox.issue("jdoe")
    start_session(sandbox, token)
    pubkey = new_pubkey()
    body = create_device(sandbox, "jdoe-laptop", pubkey)
    assert list(body) == ["device", "configs", "instance", "token"]
    assert body["device"]["pubkey"] == pubkey and body["device"]["name"] == "jdoe-laptop"
    assert len(body["token"]) == 32
    configs = {c["network_name"]: c for c in body["configs"]}
    assert set(configs) == {"HQ", "Lab"}  # not the admins-only location
    hq = configs["HQ"]
    assert hq["allowed_ips"] == "10.10.0.0/24,192.168.10.0/24"
    assert hq["endpoint"] == "vpn.contoso.example:51820"
    assert hq["assigned_ip"] == "10.10.0.3"  # .1 is the gateway, .2 is ed-laptop
    assert (configs["Lab"]["location_mfa_mode"], configs["Lab"]["mfa_enabled"]) == (2, True)
    assert (hq["location_mfa_mode"], hq["mfa_enabled"]) == (1, False)
    done = sandbox.proxy.post(
        "/api/v1/enrollment/activate_user",
        json={"password": "Str0ng-Passw0rd!", "phone_number": None},
    )
    assert (done.status_code, done.content) == (200, b"")
    assert "defguard_proxy" not in sandbox.proxy.cookies
    assert sandbox.core.get("/api/v1/user/jdoe").json()["user"]["enrolled"] is True


def test_config_text_as_core_renders_it(sandbox: Running) -> None:
    """``Device::create_config``: a blank line for a missing DNS, no final newline."""
    start_session(sandbox, sandbox.issue("jdoe"))
    configs = {c["network_name"]: c for c in create_device(sandbox)["configs"]}
    hq, lab = configs["HQ"], configs["Lab"]
    assert hq["config"] == (
        "[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = 10.10.0.3\nDNS = 10.10.0.1\n\n"
        f"[Peer]\nPublicKey = {hq['pubkey']}\nAllowedIPs = 10.10.0.0/24,192.168.10.0/24\n"
        "Endpoint = vpn.contoso.example:51820\nPersistentKeepalive = 25"
    )
    assert lab["dns"] is None
    assert lab["config"] == (
        "[Interface]\nPrivateKey = YOUR_PRIVATE_KEY\nAddress = 10.20.0.3\n\n\n"
        f"[Peer]\nPublicKey = {lab['pubkey']}\nAllowedIPs = 10.20.0.0/24\n"
        "Endpoint = lab.contoso.example:51821\nPersistentKeepalive = 25"
    )


def test_config_without_allowed_ips_has_no_allowed_ips_line(start_sandbox: StartSandbox) -> None:
    tenant = example_tenant()
    tenant["locations"][0]["allowed_ips"] = []
    sandbox = start_sandbox(tenant)
    start_session(sandbox, sandbox.issue("jdoe"))
    hq = next(c for c in create_device(sandbox)["configs"] if c["network_name"] == "HQ")
    assert hq["allowed_ips"] == "" and "AllowedIPs" not in hq["config"]
    assert f"PublicKey = {hq['pubkey']}\nEndpoint = " in hq["config"]


@pytest.mark.parametrize(
    ("name", "pubkey", "error"),
    [
        ("", None, NO_NAME),
        ("box", "bm90IGEga2V5", "invalid pubkey"),
        ("box", "Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXt=", "invalid pubkey"),  # trailing bits
        ("box", "Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXs", "invalid pubkey"),  # no padding
        ("box", ED_LAPTOP, "invalid key"),
        ("", ED_LAPTOP, "invalid key"),  # the duplicate key is found before the empty name
        ("", "bm90IGEga2V5", "invalid pubkey"),
    ],
)
def test_create_device_errors(sandbox: Running, name: str, pubkey: str | None, error: str) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    response = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": name, "pubkey": pubkey or new_pubkey()}
    )
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_create_device_checks_the_owner_first_and_only_an_empty_name(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    assert create_device(sandbox, name="   ")["device"]["name"] == "   "  # is_empty, not trim
    with sandbox.state.lock:
        sandbox.state.users["jdoe"].is_active = False
    response = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "", "pubkey": "bad"}
    )
    assert (response.status_code, response.json()) == (
        400,
        {"error": "can't add device to disabled user"},
    )


def test_desktop_token_for_enrolled_user_and_network_info(sandbox: Running) -> None:
    token = sandbox.core.post("/api/v1/user/enrolled/start_desktop", json={}).json()
    start = start_session(sandbox, token["enrollment_token"])
    assert start.json()["user"]["enrolled"] is True
    assert start.json()["user"]["device_names"] == ["ed-laptop"]
    info = sandbox.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": ED_LAPTOP})
    assert info.status_code == 200
    assert {c["network_name"] for c in info.json()["configs"]} == {"HQ", "Lab"}
    assert len(info.json()["token"]) == 32


def test_network_info_checks_the_key_before_looking_it_up(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    bad = sandbox.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": "nope"})
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid pubkey"})
    unknown = sandbox.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": new_pubkey()})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "status: 'Some requested entity was not found', self: \"device not found\""
    }


def test_network_info_for_another_users_device(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    response = sandbox.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": ED_LAPTOP})
    assert (response.status_code, response.json()) == (
        401,
        {"error": "enrollment token is not valid for specified device"},
    )


def test_poll_answers_without_a_new_token(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    created = create_device(sandbox)
    for _ in range(2):  # the polling token stays valid: polling never replaces it
        polled = sandbox.proxy.post("/api/v1/poll", json={"token": created["token"]})
        assert polled.status_code == 200
        config = polled.json()["device_config"]
        assert config["device"]["id"] == created["device"]["id"]
        assert config["token"] is None
        assert list(config) == ["device", "configs", "instance", "token"]


def test_network_info_replaces_the_devices_polling_token(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    created = create_device(sandbox, pubkey=(pubkey := new_pubkey()))
    info = sandbox.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": pubkey}).json()
    assert info["token"] != created["token"]
    old = sandbox.proxy.post("/api/v1/poll", json={"token": created["token"]})
    assert (old.status_code, old.json()) == (403, {"error": "invalid token"})
    assert sandbox.proxy.post("/api/v1/poll", json={"token": info["token"]}).status_code == 200
    (device,) = sandbox.anonymous.get("/_sandbox/users/jdoe").json()["devices"]
    assert device["polling_tokens_sha256"] == [sha(info["token"])]


def test_poll_refusals(sandbox: Running) -> None:
    unknown = sandbox.proxy.post("/api/v1/poll", json={"token": "x" * 32})
    assert (unknown.status_code, unknown.json()) == (403, {"error": "invalid token"})
    start_session(sandbox, sandbox.issue("jdoe"))
    created = create_device(sandbox)
    with sandbox.state.lock:
        sandbox.state.users["jdoe"].is_active = False
    inactive = sandbox.proxy.post("/api/v1/poll", json={"token": created["token"]})
    assert (inactive.status_code, inactive.json()) == (403, {"error": "user inactive"})
