"""Devices created during enrollment, their configurations and polling (``defguard_devices``).

Over the enrollment proxy emulator on both server lines (reference §6).
"""

from __future__ import annotations

import pytest

from ..conftest import Running
from .conftest import new_pubkey, start_session


def test_activation_and_device(sandbox: Running) -> None:
    token = sandbox.issue("jdoe")
    start_session(sandbox, token)
    pubkey = new_pubkey()
    device = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "jdoe-laptop", "pubkey": pubkey}
    )
    assert device.status_code == 200
    body = device.json()
    assert list(body) == ["device", "configs", "instance", "token"]
    assert body["device"]["pubkey"] == pubkey and body["device"]["name"] == "jdoe-laptop"
    assert len(body["token"]) == 32
    configs = {c["network_name"]: c for c in body["configs"]}
    assert set(configs) == {"HQ", "Lab"}  # not the admins-only location
    hq = configs["HQ"]
    assert hq["allowed_ips"] == "10.10.0.0/24,192.168.10.0/24"
    assert hq["endpoint"] == "vpn.contoso.example:51820"
    assert hq["assigned_ip"] == "10.10.0.3"  # .1 is the gateway, .2 is ed-laptop
    assert "PrivateKey = YOUR_PRIVATE_KEY" in hq["config"]
    assert f"PublicKey = {hq['pubkey']}" in hq["config"]
    assert (configs["Lab"]["location_mfa_mode"], configs["Lab"]["mfa_enabled"]) == (2, True)
    assert (hq["location_mfa_mode"], hq["mfa_enabled"]) == (1, False)

    weak = sandbox.proxy.post("/api/v1/enrollment/activate_user", json={"password": "short"})
    assert (weak.status_code, weak.json()) == (400, {"error": "password not strong enough"})
    bad_phone = sandbox.proxy.post(
        "/api/v1/enrollment/activate_user",
        json={"password": "Str0ng-Passw0rd!", "phone_number": "call me"},
    )
    assert (bad_phone.status_code, bad_phone.json()) == (400, {"error": "invalid phone number"})
    done = sandbox.proxy.post(
        "/api/v1/enrollment/activate_user",
        json={"password": "Str0ng-Passw0rd!", "phone_number": None},
    )
    assert (done.status_code, done.content) == (200, b"")
    assert "defguard_proxy" not in sandbox.proxy.cookies
    user = sandbox.core.get("/api/v1/user/jdoe").json()["user"]
    assert user["enrolled"] is True


@pytest.mark.parametrize(
    ("name", "pubkey", "error"),
    [
        ("", None, "Cannot add a new device with no name"),
        ("box", "bm90IGEga2V5", "invalid pubkey"),
        ("box", "Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXs=", "invalid key"),
    ],
)
def test_create_device_errors(sandbox: Running, name: str, pubkey: str | None, error: str) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    response = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": name, "pubkey": pubkey or new_pubkey()}
    )
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_desktop_token_for_enrolled_user_and_network_info(sandbox: Running) -> None:
    token = sandbox.core.post("/api/v1/user/enrolled/start_desktop", json={}).json()
    start = start_session(sandbox, token["enrollment_token"])
    assert start.json()["user"]["enrolled"] is True
    assert start.json()["user"]["device_names"] == ["ed-laptop"]
    info = sandbox.proxy.post(
        "/api/v1/enrollment/network_info",
        json={"pubkey": "Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXs="},
    )
    assert info.status_code == 200
    assert {c["network_name"] for c in info.json()["configs"]} == {"HQ", "Lab"}
    unknown = sandbox.proxy.post("/api/v1/enrollment/network_info", json={"pubkey": new_pubkey()})
    assert unknown.status_code == 404


def test_network_info_for_another_users_device(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    response = sandbox.proxy.post(
        "/api/v1/enrollment/network_info",
        json={"pubkey": "Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXs="},
    )
    assert (response.status_code, response.json()) == (
        401,
        {"error": "enrollment token is not valid for specified device"},
    )


def test_poll_with_polling_token(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    created = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "box", "pubkey": new_pubkey()}
    ).json()
    polled = sandbox.proxy.post("/api/v1/poll", json={"token": created["token"]})
    assert polled.status_code == 200
    assert polled.json()["device_config"]["device"]["id"] == created["device"]["id"]
