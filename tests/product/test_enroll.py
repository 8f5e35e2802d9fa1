"""``dgprov enroll`` against the sandbox's enrollment proxy, on both server lines."""

from __future__ import annotations

import getpass
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dgprov import client_files
from dgprov.cli import main
from dgprov.enrollment import key_pair_from_private

from ..conftest import Running, StartSandbox, example_tenant

PASSWORD = "Str0ng-Passw0rd!"


def provisioning_file(tmp_path: Path, running: Running, token: str) -> Path:
    path = tmp_path / "provisioning.json"
    config = client_files.ProvisioningConfig(running.info["proxy_url"] + "/", token)
    client_files.write(path, config)
    return path


def enroll(tmp_path: Path, *extra: str, password: str | None = PASSWORD) -> Result:
    args = [
        "enroll",
        "--provisioning-file",
        str(tmp_path / "provisioning.json"),
        "--output-dir",
        str(tmp_path / "wg"),
        *extra,
    ]
    if password is not None:
        (tmp_path / "password").write_text(password + "\n")
        args += ["--password-file", str(tmp_path / "password")]
    return CliRunner().invoke(main, args)


def desktop_token(running: Running, username: str) -> str:
    """A start_desktop token, as generate-tokens issues for enrolled users."""
    response = running.core.post(f"/api/v1/user/{username}/start_desktop", json={})
    token: str = response.json()["enrollment_token"]
    return token


def private_key(path: Path) -> str:
    line = next(line for line in path.read_text().splitlines() if line.startswith("PrivateKey"))
    return line.split("=", 1)[1].strip()


def registered_keys(running: Running, username: str) -> list[str]:
    devices = running.anonymous.get(f"/_sandbox/users/{username}").json()["devices"]
    return [d["wireguard_pubkey"] for d in devices]


def test_enrollment_token_with_activation(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant(), line)
    token = running.issue("jdoe")
    provisioning_file(tmp_path, running, token)
    result = enroll(tmp_path, "--device-name", "jdoe-laptop", "--phone", "+48123456789")
    assert result.exit_code == 0, result.output
    assert "HQ:" in result.output and "Lab:" in result.output
    assert "needs internal MFA" in result.output  # the Lab location
    configs = {p.name: p for p in (tmp_path / "wg").glob("*.conf")}
    assert set(configs) == {"HQ.conf", "Lab.conf"}
    for path in configs.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "YOUR_PRIVATE_KEY" not in path.read_text()
    keys = key_pair_from_private(private_key(configs["HQ.conf"]))
    assert registered_keys(running, "jdoe") == [keys.public]
    user = running.core.get("/api/v1/user/jdoe").json()["user"]
    assert user["enrolled"] is True and user["phone"] == "+48123456789"
    state = tmp_path / "wg" / "dgprov-enrollment.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert (
        keys.private not in state.read_text()
        and json.loads(state.read_text())["device"]["public_key"] == keys.public
    )
    assert keys.private not in result.output and token not in result.output


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools (wg) is not installed")
def test_wg_agrees_on_the_public_key(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    assert enroll(tmp_path).exit_code == 0
    private = private_key(tmp_path / "wg" / "HQ.conf")
    public = subprocess.run(
        ["wg", "pubkey"], input=private, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert registered_keys(running, "jdoe") == [public]


def test_desktop_token_for_an_enrolled_user(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant(), line)
    provisioning_file(tmp_path, running, desktop_token(running, "enrolled"))
    result = enroll(tmp_path, password=None)  # no password needed: the account is active
    assert result.exit_code == 0, result.output
    assert len(registered_keys(running, "enrolled")) == 2  # ed-laptop and this one


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            "expired",
            "has expired; ask your administrator to issue a new one with `dgprov generate-tokens`",
        ),
        ("unknown", "unknown, or was used and its session is over"),
        ("disabled", "your Defguard account is disabled"),
    ],
)
def test_token_states(
    start_sandbox: StartSandbox, line: str, tmp_path: Path, setup: str, message: str
) -> None:
    running = start_sandbox(example_tenant(), line)
    token = running.issue("jdoe", token_expiration_time="1h")
    if setup == "expired":
        running.advance_clock(3601)
    elif setup == "unknown":
        token = "x" * 32
    else:
        with running.state.lock:
            running.state.users["jdoe"].is_active = False
    provisioning_file(tmp_path, running, token)
    result = enroll(tmp_path)
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "wg").exists()


def test_invalid_device_name(start_sandbox: StartSandbox, line: str, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant(), line)
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, "--device-name", "  ")
    assert result.exit_code == 1 and "Cannot add a new device with no name" in result.output


def test_reuse_inside_and_outside_the_session_window(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant(), line)
    provisioning_file(tmp_path, running, desktop_token(running, "enrolled"))
    assert enroll(tmp_path, password=None).exit_code == 0
    running.advance_clock(5 * 60)
    again = enroll(tmp_path, "--output-dir", str(tmp_path / "second"), password=None)
    assert again.exit_code == 0, again.output
    running.advance_clock(6 * 60)
    late = enroll(tmp_path, "--output-dir", str(tmp_path / "third"), password=None)
    assert late.exit_code == 1 and "was used and its session is over" in late.output


def test_refresh_keeps_the_key(start_sandbox: StartSandbox, line: str, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant(), line)
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    assert enroll(tmp_path).exit_code == 0
    before = private_key(tmp_path / "wg" / "HQ.conf")
    state_before = json.loads((tmp_path / "wg" / "dgprov-enrollment.json").read_text())
    (tmp_path / "wg" / "HQ.conf").write_text(
        (tmp_path / "wg" / "HQ.conf").read_text().replace("Endpoint", "#Endpoint")
    )
    result = CliRunner().invoke(main, ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg")])
    assert result.exit_code == 0, result.output
    assert "refreshed jdoe" in result.output
    assert private_key(tmp_path / "wg" / "HQ.conf") == before
    assert "#Endpoint" not in (tmp_path / "wg" / "HQ.conf").read_text()
    state_after = json.loads((tmp_path / "wg" / "dgprov-enrollment.json").read_text())
    assert state_after["polling_token"] != state_before["polling_token"]
    assert before not in result.output


def test_weak_password_is_refused_before_any_device(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, password="weakpass")
    assert result.exit_code == 2 and "an upper-case letter" in result.output
    assert registered_keys(running, "jdoe") == []


def test_usage_errors(tmp_path: Path) -> None:
    missing = CliRunner().invoke(
        main, ["enroll", "--provisioning-file", str(tmp_path / "nope.json")]
    )
    assert missing.exit_code == 2 and "run dgprov fetch-config first" in missing.output
    (tmp_path / "bad.json").write_text('{"enrollmentUrl": "x"}')
    malformed = CliRunner().invoke(
        main, ["enroll", "--provisioning-file", str(tmp_path / "bad.json")]
    )
    assert (
        malformed.exit_code == 2
        and "expected a JSON object with enrollment_url" in malformed.output
    )
    no_state = CliRunner().invoke(
        main, ["enroll", "--refresh", "--output-dir", str(tmp_path / "wg")]
    )
    assert no_state.exit_code == 2 and "enroll first" in no_state.output


def test_password_needed_without_a_terminal(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe"))
    result = enroll(tmp_path, password=None)
    assert result.exit_code == 2 and "--password-file" in result.output
    assert registered_keys(running, "jdoe") == []


def test_whole_chain(
    start_sandbox: StartSandbox, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """generate-tokens -> fetch-config -> enroll, from an empty sandbox to WireGuard files."""
    from dgprov_sandbox.tenant import synthetic_tenant

    from .test_fetch_config import fetch, provision

    running = start_sandbox(synthetic_tenant(3, 41), line)
    assert running.anonymous.get("/_sandbox/tokens").json()["tokens"] == []
    provision(running, tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    me = getpass.getuser()
    fetched = fetch(running, tmp_path, running.info["user_upns"][0], "--for-user", me)
    assert fetched.exit_code == 0, fetched.output
    (tmp_path / "password").write_text(PASSWORD)
    result = CliRunner().invoke(
        main, ["enroll", "--password-file", str(tmp_path / "password"), "--device-name", "box"]
    )
    assert result.exit_code == 0, result.output
    config = tmp_path / "xdg" / "net.defguard" / "wireguard" / "HQ.conf"
    keys = key_pair_from_private(private_key(config))
    assert registered_keys(running, "user0001") == [keys.public]
    assert running.anonymous.get("/_sandbox/users/user0001").json()["enrolled"] is True
    text = fetched.output + result.output
    assert keys.private not in text
    token = json.loads((tmp_path / "xdg" / "net.defguard" / "provisioning.json").read_text())[
        "enrollment_token"
    ]
    assert token not in text
