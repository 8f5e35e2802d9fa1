"""The enrollment proxy emulator over real HTTP, on both server lines (reference §6)."""

from __future__ import annotations

import base64
import os

import httpx
import pytest

from ..conftest import Running, StartSandbox, example_tenant


def new_pubkey() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def start_session(sandbox: Running, token: str) -> httpx.Response:
    return sandbox.proxy.post("/api/v1/enrollment/start", json={"token": token})


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


def test_token_states(sandbox: Running) -> None:
    def start(token: str) -> tuple[int, object]:
        response = start_session(sandbox, token)
        return response.status_code, response.json().get("error")

    assert start("x" * 32) == (401, "invalid token")

    used = sandbox.issue("jdoe")
    first = start_session(sandbox, used).json()["deadline_timestamp"]
    sandbox.advance_clock(5 * 60)
    again = start_session(sandbox, used)
    assert again.status_code == 200 and again.json()["deadline_timestamp"] == first
    sandbox.advance_clock(6 * 60)
    assert start(used) == (401, "invalid token")

    expired = sandbox.issue("obrien", token_expiration_time="1h")
    sandbox.advance_clock(3601)
    assert start(expired) == (401, "token expired")

    disabled = sandbox.issue("mlopez")
    with sandbox.state.lock:
        sandbox.state.users["mlopez"].is_active = False
    assert start(disabled) == (403, "user is disabled")


def test_wrong_token_type(sandbox: Running) -> None:
    token = sandbox.issue("jdoe")
    with sandbox.state.lock:
        sandbox.state.tokens[token].kind = "PASSWORD_RESET"
    response = start_session(sandbox, token)
    assert (response.status_code, response.json()) == (403, {"error": "invalid token"})


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


def test_activation_errors(sandbox: Running) -> None:
    missing = sandbox.proxy.post("/api/v1/enrollment/activate_user", json={"password": "x"})
    assert (missing.status_code, missing.json()) == (401, {"error": "Missing authorization header"})
    token = sandbox.core.post("/api/v1/user/enrolled/start_desktop", json={}).json()
    start_session(sandbox, token["enrollment_token"])
    again = sandbox.proxy.post(
        "/api/v1/enrollment/activate_user", json={"password": "Str0ng-Passw0rd!"}
    )
    assert (again.status_code, again.json()) == (400, {"error": "user already activated"})
    sandbox.advance_clock(11 * 60)
    late = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "x", "pubkey": new_pubkey()}
    )
    assert (late.status_code, late.json()) == (401, {"error": "Session expired"})


def test_forged_cookie_is_refused(sandbox: Running) -> None:
    sandbox.proxy.cookies.set("defguard_proxy", "not-a-sealed-value")
    response = sandbox.proxy.post(
        "/api/v1/enrollment/create_device", json={"name": "x", "pubkey": new_pubkey()}
    )
    assert (response.status_code, response.json()) == (401, {"error": "Session expired"})


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


def test_create_device_body_must_be_complete(sandbox: Running) -> None:
    start_session(sandbox, sandbox.issue("jdoe"))
    response = sandbox.proxy.post("/api/v1/enrollment/create_device", json={"name": "x"})
    assert response.status_code == 422
    assert response.text == (
        "Failed to deserialize the JSON body into the target type: missing field `pubkey`"
    )


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
