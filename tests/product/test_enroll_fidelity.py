"""``dgprov enroll`` as the desktop client behaves on first launch and when it polls, against the
sandbox that follows upstream (audit rows D1-D5, C4-C9; docs/sandbox.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from dgprov.account_rules import check_password, check_phone
from dgprov.cli import main
from dgprov.errors import UsageError
from dgprov.proxy_client import CLIENT_VERSION

from ..conftest import Running, StartSandbox, example_tenant
from .hostile import Exchange, hostile, replying
from .test_enroll import (
    desktop_token,
    enroll,
    forwarded,
    provisioning_file,
    registered_keys,
    tenant,
    through,
)


def refresh(tmp_path: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        main, ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg"), *extra]
    )


def state(tmp_path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((tmp_path / "wg" / "dgprov-enrollment.json").read_text())
    return loaded


def server_polling_tokens(running: Running, username: str) -> list[str]:
    devices = running.anonymous.get(f"/_sandbox/users/{username}").json()["devices"]
    return [digest for device in devices for digest in device["polling_tokens_sha256"]]


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def peer_lines(path: Path, key: str) -> list[str]:
    return [
        line.split("=", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith(f"{key} ")
    ]


# ---------------------------------------------------------------- point 5: --refresh (D1-D3)


def test_refresh_three_times_in_a_row(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    """A poll answers ``token: null``; the polling token held stays the one core knows."""
    running = start_sandbox(tenant(), line)
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    assert enroll(tmp_path).exit_code == 0
    issued = state(tmp_path)["polling_token"]
    assert server_polling_tokens(running, "jdoe") == [sha256(issued)]
    for _ in range(3):
        result = refresh(tmp_path)
        assert result.exit_code == 0, result.output
        assert state(tmp_path)["polling_token"] == issued
    assert server_polling_tokens(running, "jdoe") == [sha256(issued)]
    assert issued not in result.output


def test_rotation_by_network_info_is_saved(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    """A re-run that finds its device through ``network_info`` gets a new polling token (the old
    one is deleted upstream); the new one is saved and the next refreshes use it."""
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    (tmp_path / "wg" / "HQ.conf").mkdir(parents=True)  # the first write fails
    assert enroll(tmp_path).exit_code == 1
    first = state(tmp_path)["polling_token"]
    (tmp_path / "wg" / "HQ.conf").rmdir()
    assert enroll(tmp_path, password=None).exit_code == 0  # provisioning.json kept on failure
    rotated = state(tmp_path)["polling_token"]
    assert rotated != first and server_polling_tokens(running, "jdoe") == [sha256(rotated)]
    for _ in range(2):
        assert refresh(tmp_path).exit_code == 0


def test_refresh_of_a_disabled_user_names_the_fix(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(tenant(), line)
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    assert enroll(tmp_path).exit_code == 0
    disabled = running.anonymous.post("/_sandbox/users/jdoe", json={"active": False})
    assert disabled.json()["is_active"] is False
    result = refresh(tmp_path)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "403: user inactive" in text
    assert "polling token is no longer valid or your Defguard account is disabled" in text
    assert "enroll again with a new token from your administrator" in text
    assert "not an enrollment token" not in text


def test_refresh_with_an_unknown_polling_token_names_the_fix(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    assert enroll(tmp_path).exit_code == 0
    document = state(tmp_path)
    document["polling_token"] = "x" * 32
    (tmp_path / "wg" / "dgprov-enrollment.json").write_text(json.dumps(document))
    result = refresh(tmp_path)
    assert result.exit_code == 1 and "403: invalid token" in result.output


# ------------------------------------------------------- point 11: first launch (C4-C9)


def test_session_goes_on_at_the_proxy_url_of_the_same_origin(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """``instance.proxy_url`` (same origin, another path) is where the session goes on, with the
    session cookie, and where the state file sends the polls."""
    running = start_sandbox(tenant())
    proxy = running.info["proxy_url"]
    seen: list[tuple[str, str]] = []

    def route(exchange: Exchange) -> None:
        seen.append((exchange.path, exchange.request.headers.get("cookie", "")))
        own = f"http://{exchange.request.headers['host']}"
        if exchange.path.startswith("/edge/"):
            exchange.request = dataclasses.replace(
                exchange.request, path=exchange.request.path.removeprefix("/edge")
            )
        forwarded(proxy, proxy_url=lambda path: f"{own}/edge/")(exchange)

    with hostile(route) as forwarder:
        through(forwarder.url, tmp_path, running.issue("jdoe"))
        result = enroll(tmp_path)
        assert result.exit_code == 0, result.output
        assert refresh(tmp_path).exit_code == 0
    paths = [path for path, _ in seen]
    assert paths == [
        "/api/v1/enrollment/start",
        "/edge/api/v1/enrollment/create_device",
        "/edge/api/v1/enrollment/activate_user",
        "/edge/api/v1/poll",
    ]
    assert all("defguard_proxy=" in cookie for path, cookie in seen[1:3])
    assert state(tmp_path)["instance"]["proxy_url"] == forwarder.url + "/edge/"
    assert state(tmp_path)["enrollment_url"] == forwarder.url + "/"


def test_proxy_url_of_another_origin_is_refused(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    proxy = running.info["proxy_url"]
    with hostile(replying(200, {})) as elsewhere:
        route = forwarded(proxy, proxy_url=lambda path: elsewhere.url + "/")
        with hostile(route) as forwarder:
            through(forwarder.url, tmp_path, running.issue("jdoe"))
            result = enroll(tmp_path)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert f"public proxy URL ({elsewhere.url})" in text
    assert f"enrollment URL ({forwarder.url})" in text
    assert "make Defguard's public proxy URL and the enrollment URL agree" in text
    assert elsewhere.received == []
    assert registered_keys(running, "jdoe") == []
    assert (tmp_path / "provisioning.json").exists()


def test_client_headers_are_sent(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(tenant())
    proxy = running.info["proxy_url"]
    headers: list[dict[str, str]] = []

    def route(exchange: Exchange) -> None:
        headers.append(exchange.request.headers)
        forwarded(proxy)(exchange)

    with hostile(route) as forwarder:
        through(forwarder.url, tmp_path, running.issue("jdoe"))
        assert enroll(tmp_path).exit_code == 0
        assert refresh(tmp_path).exit_code == 0
    assert len(headers) == 4
    for sent in headers:
        assert sent["defguard-client-version"] == CLIENT_VERSION
        assert sent["defguard-client-platform"] in ("linux", "windows", "macos")


@pytest.mark.parametrize(
    ("policy", "flag", "all_traffic"),
    [(0, None, False), (0, "--route-all-traffic", True), (1, None, False), (2, None, True)],
)
def test_client_traffic_policy_and_keepalive(
    start_sandbox: StartSandbox, tmp_path: Path, policy: int, flag: str | None, all_traffic: bool
) -> None:
    document = tenant(client_traffic_policy=policy)
    for location in document["locations"]:
        location["keepalive_interval"] = 7
    running = start_sandbox(document, "2.0")  # 2.0 leaves forcing all traffic to the client
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, *([flag] if flag else []))
    assert result.exit_code == 0, result.output
    configs = sorted((tmp_path / "wg").glob("*.conf"))
    assert configs
    for path in configs:
        assert peer_lines(path, "PersistentKeepalive") == ["25"]
        allowed = peer_lines(path, "AllowedIPs")
        assert (allowed == ["0.0.0.0/0, ::/0"]) is all_traffic, allowed
    assert refresh(tmp_path).exit_code == 0  # the choice is kept
    for path in configs:
        assert (peer_lines(path, "AllowedIPs") == ["0.0.0.0/0, ::/0"]) is all_traffic


def test_route_all_traffic_refused_where_the_policy_disables_it(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant(client_traffic_policy=1))
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, "--route-all-traffic")
    assert result.exit_code == 2, result.output
    assert "disabled routing all traffic" in result.output
    assert registered_keys(running, "jdoe") == []
    assert (tmp_path / "provisioning.json").exists()


@pytest.mark.parametrize("stated", [True, None])
def test_mfa_required_leaves_activation_to_the_desktop_app(
    start_sandbox: StartSandbox, line: str, tmp_path: Path, stated: bool | None
) -> None:
    """Stated by the tenant, or derived (the example tenant's Lab uses internal MFA): refused
    after ``start``, before the password is sent or a device registered; the file stays."""
    document = example_tenant()
    document["instance"]["mfa_required"] = stated
    running = start_sandbox(document, line)
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path)
    assert result.exit_code == 1, result.output
    (line_shown,) = result.output.splitlines()
    assert line_shown.startswith("dgprov enroll: error: Defguard requires multi-factor")
    assert "Nothing was registered: finish in the Defguard desktop app before " in line_shown
    assert len(line_shown) <= 200  # the next step fits on one screen line
    assert registered_keys(running, "jdoe") == []
    user = running.anonymous.get("/_sandbox/users/jdoe").json()
    assert user["has_password"] is False
    assert (tmp_path / "provisioning.json").exists()
    assert not (tmp_path / "wg").exists()


def test_mfa_required_does_not_stop_an_enrolled_user(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())  # MFA required, but no activation needed
    provisioning_file(tmp_path, running, desktop_token(running, "enrolled"))
    result = enroll(tmp_path, password=None)
    assert result.exit_code == 0, result.output


def test_provisioning_file_renamed_after_success_only(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, "x" * 32)
    refused = enroll(tmp_path)
    assert refused.exit_code == 1 and (tmp_path / "provisioning.json").exists()
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "provisioning.json").exists()
    (used,) = tmp_path.glob("provisioning.json.used-*")
    assert stat.S_IMODE(used.stat().st_mode) == 0o600
    assert f"to {used.name}" in " ".join(result.output.split())
    assert "desktop app will not reuse it" in " ".join(result.output.split())


# ---------------------------------------------- point 12: the server's rules, before anything


PASSWORDS = [
    "Abcdef1!",  # 8 ASCII: strong
    "Abcde1!",  # 7: short
    "Abcdé1!",  # 7 characters, 8 bytes: long enough
    "Aa1!" + "é" * 62,  # 66 characters, 128 bytes: accepted
    "Aa1!" + "é" * 63,  # 130 bytes: too long
    "ÄBCDEFG1!",  # no ASCII lower-case letter
    "äbcdefg1!",  # no ASCII upper-case letter
    "Abcdefg\u0661!",  # an Arabic-Indic digit is not an ASCII digit
    "Abcdefg1«",  # Unicode punctuation, not ASCII
    "Abcdefg1 ",  # a space is not punctuation
    "\uff21Bcdefg1!",  # fullwidth letter, and the ASCII ones
    "abcdefg1!",
]
PHONES = [
    "+48123456789",
    "+48 123 456 789",
    "(123) 456-7890",
    "123",
    "12",
    "123\n",
    "\u0661\u0662\u0663\u0664\u0665\u0666",  # Unicode digits: Rust's \d takes them
    "555\x1c1234",  # not White_Space in Rust, though Python's \s takes it
    "+1\u00a0555 1234",  # no-break space is White_Space
    "+48123456789012345",
    "abc",
    "123-4567-89",
]


def server_verdicts(running: Running, passwords: list[str], phones: list[str]) -> dict[str, bool]:
    """The proxy's own verdicts: ``activate_user`` checks phone, then password, then "already
    activated"; in a session of an enrolled user nothing is ever changed."""
    with httpx.Client(base_url=running.info["proxy_url"]) as proxy:
        started = proxy.post(
            "/api/v1/enrollment/start", json={"token": desktop_token(running, "enrolled")}
        )
        assert started.status_code == 200
        verdicts = {}
        for password in passwords:
            answer = proxy.post(
                "/api/v1/enrollment/activate_user",
                json={"password": password, "phone_number": None},
            )
            assert answer.status_code == 400
            verdicts[f"password {password!r}"] = answer.json()["error"] == "user already activated"
        for phone in phones:
            answer = proxy.post(
                "/api/v1/enrollment/activate_user",
                json={"password": "Abcdef1!", "phone_number": phone},
            )
            assert answer.status_code == 400
            verdicts[f"phone {phone!r}"] = answer.json()["error"] != "invalid phone number"
    return verdicts


def local_verdict(check: Any, value: str) -> bool:
    try:
        check(value)
    except UsageError:
        return False
    return True


def test_password_and_phone_verdicts_match_the_server(
    start_sandbox: StartSandbox, line: str
) -> None:
    running = start_sandbox(example_tenant(), line)
    server = server_verdicts(running, PASSWORDS, PHONES)
    local = {f"password {p!r}": local_verdict(check_password, p) for p in PASSWORDS}
    local |= {f"phone {p!r}": local_verdict(check_phone, p) for p in PHONES}
    assert local == server
    assert set(server.values()) == {True, False}  # the sets hold both verdicts


def test_refused_phone_registers_nothing(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, "--phone", "555\x1c1234")
    assert result.exit_code == 2 and "--phone" in result.output
    assert registered_keys(running, "jdoe") == []
    assert running.tokens("jdoe")[0]["used_at"] is None
