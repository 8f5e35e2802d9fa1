"""``dgprov fetch-config``: real MSAL against the sandbox, a real slapd for AD, real files."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.cli import main
from dgprov.client_files import read

from ..conftest import Running, StartSandbox, graph_client, sign_in
from ..slapd import PROVISIONER_DN, PROVISIONER_PASSWORD, USERS_DN, Slapd, slapd
from .test_generate_tokens import cli_args, environment

__all__ = ["slapd"]


def provision(running: Running, tmp_path: Path, *extra: str) -> None:
    """The admin job, so there is something to fetch."""
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
    result = CliRunner().invoke(
        main, cli_args(running, *extra), env=environment(running, tmp_path / "admin")
    )
    assert result.exit_code == 0, result.output


def fetch(running: Running, tmp_path: Path, upn: str | None, *extra: str) -> Result:
    info = running.info
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    args = [
        "fetch-config", "--source", "entra",
        "--tenant", info["tenant_id"], "--client-id", info["client_id"],
        "--authority", info["authority_url"], "--graph-url", info["graph_url"],
        "--ca-bundle", info["ca_bundle"], "--auth", "device-code", *extra,
    ]  # fmt: skip
    return CliRunner().invoke(main, args, env={"DGPROV_CACHE_DIR": str(tmp_path / "user-cache")})


def stored_values(running: Running, upn: str, set_name: str = "Defguard") -> dict[str, Any]:
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    body = admin.get(f"/users/{upn}", params={"$select": "customSecurityAttributes"}).json()
    values: dict[str, Any] = body["customSecurityAttributes"][set_name]
    return values


@pytest.fixture
def provisioned(start_sandbox: StartSandbox, tmp_path: Path) -> Running:
    running = start_sandbox(synthetic_tenant(3, 21))
    provision(running, tmp_path)
    return running


def test_reader_gets_the_file_the_admin_job_wrote(provisioned: Running, tmp_path: Path) -> None:
    upn = provisioned.info["user_upns"][0]  # holds Attribute Assignment Reader
    output = tmp_path / "out" / "provisioning.json"
    log = tmp_path / "fetch.log"
    result = fetch(provisioned, tmp_path, upn, "--output", str(output), "--log-file", str(log))
    assert result.exit_code == 0, result.output
    expected = stored_values(provisioned, upn)
    text = output.read_text("utf-8")
    assert not text.startswith("\ufeff")
    assert json.loads(text) == {
        "enrollment_url": expected["EnrollmentUrl"],
        "enrollment_token": expected["EnrollmentToken"],
    }
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    config = read(output)
    assert config.enrollment_token == expected["EnrollmentToken"]
    assert expected["EnrollmentToken"] not in result.output
    assert expected["EnrollmentToken"] not in log.read_text() and "wrote" in log.read_text()
    assert expected["EnrollmentToken"] not in repr(config)


def test_user_without_read_rights_is_told_both_causes(provisioned: Running, tmp_path: Path) -> None:
    result = fetch(
        provisioned,
        tmp_path,
        provisioned.info["user_upns"][1],
        "--output",
        str(tmp_path / "p.json"),
    )
    assert result.exit_code == 1
    assert "no enrollment token was issued yet" in result.output
    assert "Attribute Assignment Reader" in result.output
    assert not (tmp_path / "p.json").exists()


def test_custom_attribute_set_name(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    tenant = synthetic_tenant(2, 22)
    tenant["entra"]["attribute_sets"][0]["id"] = "VpnProvisioning"
    running = start_sandbox(tenant)
    provision(running, tmp_path, "--attribute-set-name", "VpnProvisioning")
    upn = running.info["user_upns"][0]
    output = tmp_path / "p.json"
    default = fetch(running, tmp_path, upn, "--output", str(output))
    assert default.exit_code == 1  # the Defguard set does not exist here
    custom = fetch(
        running, tmp_path, upn, "--output", str(output), "--attribute-set-name", "VpnProvisioning"
    )
    assert custom.exit_code == 0, custom.output
    assert (
        read(output).enrollment_url
        == stored_values(running, upn, "VpnProvisioning")["EnrollmentUrl"]
    )


def test_expired_sign_in_refreshes_silently(provisioned: Running, tmp_path: Path) -> None:
    upn = provisioned.info["user_upns"][0]
    assert fetch(provisioned, tmp_path, upn, "--output", str(tmp_path / "a.json")).exit_code == 0
    assert provisioned.sandbox.entra is not None
    codes = len(provisioned.sandbox.entra.device_codes)
    provisioned.advance_clock(2 * 3600)  # Graph now rejects the cached access token
    again = fetch(provisioned, tmp_path, None, "--output", str(tmp_path / "b.json"))
    assert again.exit_code == 0, again.output
    assert len(provisioned.sandbox.entra.device_codes) == codes  # no new sign-in
    assert "To sign in" not in again.output


def test_default_path_is_the_client_data_directory(
    provisioned: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    me = getpass.getuser()  # as root, naming the user is required (no graphical session here)
    result = fetch(provisioned, tmp_path, provisioned.info["user_upns"][0], "--for-user", me)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "xdg" / "net.defguard" / "provisioning.json").exists()


def test_unjoined_machine(tmp_path: Path) -> None:
    relaxed = CliRunner().invoke(main, ["fetch-config", "--output", str(tmp_path / "p.json")])
    assert relaxed.exit_code == 0 and "nothing to do" in relaxed.output
    strict = CliRunner().invoke(
        main, ["fetch-config", "--strict", "--output", str(tmp_path / "p.json")]
    )
    assert strict.exit_code == 3
    assert not (tmp_path / "p.json").exists()


def test_client_reading_rules(tmp_path: Path) -> None:
    path = tmp_path / "provisioning.json"
    path.write_bytes(
        "\ufeff".encode() + b'{"enrollment_url": "https://e/", "enrollment_token": "T", "extra": 1}'
    )
    assert read(path).enrollment_url == "https://e/"
    path.write_text('{"enrollmentUrl": "https://e/", "enrollmentToken": "T"}')
    with pytest.raises(Exception, match="expected a JSON object with enrollment_url"):
        read(path)


# --------------------------------------------------------------------------------------- AD


def ad_fetch(
    server: Slapd, tmp_path: Path, account: str, *extra: str, password: str = PROVISIONER_PASSWORD
) -> Result:
    args = [
        "fetch-config", "--source", "ad", "--ldap-url", server.url, "--base-dn", USERS_DN,
        "--bind-dn", PROVISIONER_DN, "--sam-account-name", account,
        "--output", str(tmp_path / "provisioning.json"), *extra,
    ]  # fmt: skip
    return CliRunner().invoke(main, args, env={"DGPROV_BIND_PASSWORD": password})


TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
VALUE = json.dumps({"enrollmentUrl": "https://enroll.corp.example/", "enrollmentToken": TOKEN})


def test_ad_attribute_and_description(slapd: Slapd, tmp_path: Path) -> None:
    slapd.add_user("John Doe", "jdoe", "jdoe@corp.example", defguardProvisioningConfig=VALUE)
    slapd.add_user("Ann Desc", "adesc", "ann@corp.example", description=VALUE)
    result = ad_fetch(slapd, tmp_path, "jdoe")
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "provisioning.json").enrollment_token == TOKEN
    assert TOKEN not in result.output
    described = ad_fetch(slapd, tmp_path, "adesc", "--ad-attribute", "description")
    assert described.exit_code == 0, described.output


@pytest.mark.parametrize(
    ("value", "account", "message"),
    [
        ('{"enrollmentUrl": "https://e/", ', "jdoe", "is not the expected JSON"),
        (json.dumps({"url": "https://e/", "token": TOKEN}), "jdoe", "is not the expected JSON"),
        (None, "jdoe", "has no value in"),
        (VALUE, "nobody", "no user with sAMAccountName 'nobody'"),
        (
            json.dumps({"enrollmentUrl": "http://e.corp.example/", "enrollmentToken": TOKEN}),
            "jdoe",
            "must use https",
        ),
    ],
)
def test_ad_problems(
    slapd: Slapd, tmp_path: Path, value: str | None, account: str, message: str
) -> None:
    attributes = {"defguardProvisioningConfig": value} if value is not None else {}
    slapd.add_user("John Doe", "jdoe", "jdoe@corp.example", **attributes)
    result = ad_fetch(slapd, tmp_path, account)
    assert result.exit_code == 1 and message in result.output
    assert TOKEN not in result.output and (value is None or value not in result.output)
    if "expected JSON" in message:
        assert '{"enrollmentUrl": "https://…", "enrollmentToken": "…"}' in result.output
    assert not (tmp_path / "provisioning.json").exists()


def test_ad_wrong_bind_password(slapd: Slapd, tmp_path: Path) -> None:
    result = ad_fetch(slapd, tmp_path, "jdoe", password="wrong-password")
    assert result.exit_code == 2 and "refused the bind" in result.output


# ------------------------------------------------------------------------------ --for-user


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a throwaway user needs root")
def test_for_user_as_root_writes_into_that_users_home(provisioned: Running, tmp_path: Path) -> None:
    name = f"dgp{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", name], check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        result = fetch(provisioned, tmp_path, provisioned.info["user_upns"][0], "--for-user", name)
        assert result.exit_code == 0, result.output
        path = Path(entry.pw_dir) / ".local" / "share" / "net.defguard" / "provisioning.json"
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (entry.pw_uid, entry.pw_gid)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert path.parent.stat().st_uid == entry.pw_uid
        assert read(path).enrollment_url.startswith("http://127.0.0.1:")
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def test_for_user_unknown(provisioned: Running, tmp_path: Path) -> None:
    result = fetch(
        provisioned, tmp_path, provisioned.info["user_upns"][0], "--for-user", "no-such-user-xyz"
    )
    assert result.exit_code == 2
