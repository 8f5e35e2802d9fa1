"""``dgprov fetch-config``: real MSAL against the sandbox, a real slapd for AD, real files."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
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
    (line,) = [shown for shown in result.output.splitlines() if "error:" in shown]
    assert "no enrollment token was issued yet" in line and "may not read the set" in line
    assert "(README's Permissions table)" in line and len(line) <= 200
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("csa_read_role", ["reader", "administrator"])
def test_both_delegated_read_rules(
    start_sandbox: StartSandbox, tmp_path: Path, csa_read_role: str
) -> None:
    """G2: Graph's docs disagree on the role a delegated read needs; dgprov works under both
    and, where Reader is not enough, says which role and consent the tenant needs."""
    tenant = synthetic_tenant(3, 23)
    administrator = tenant["users"][3]
    administrator["entra"]["directory_roles"] = ["Attribute Assignment Administrator"]
    running = start_sandbox(tenant, csa_read_role=csa_read_role)
    provision(running, tmp_path)
    reader_upn = running.info["user_upns"][0]  # holds Attribute Assignment Reader only
    administrator_upn = administrator["entra"]["user_principal_name"]

    as_administrator = fetch(
        running, tmp_path / "administrator", administrator_upn, "--output", str(tmp_path / "a")
    )
    assert as_administrator.exit_code == 0, as_administrator.output
    expected = stored_values(running, administrator_upn)["EnrollmentToken"]
    assert read(tmp_path / "a").enrollment_token == expected

    as_reader = fetch(running, tmp_path / "reader", reader_upn, "--output", str(tmp_path / "r"))
    if csa_read_role == "reader":
        assert as_reader.exit_code == 0, as_reader.output
        expected = stored_values(running, reader_upn)["EnrollmentToken"]
        assert read(tmp_path / "r").enrollment_token == expected
        return
    assert as_reader.exit_code == 1
    message = " ".join(as_reader.output.split())
    for needed in ("may not read the set 'Defguard'", "(README's Permissions table)"):
        assert needed in message, message
    assert stored_values(running, reader_upn)["EnrollmentToken"] not in as_reader.output
    assert not (tmp_path / "r").exists()


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

LocalUser = Callable[[], pwd.struct_passwd]


@pytest.fixture
def local_user() -> Iterator[LocalUser]:
    """Makes throwaway local users (useradd), removed with their homes when the test ends."""
    if os.geteuid() != 0:
        pytest.skip("creating a throwaway local user needs root")
    made: list[str] = []

    def make() -> pwd.struct_passwd:
        name = f"dgp{uuid.uuid4().hex[:8]}"
        subprocess.run(["useradd", "--create-home", name], check=True, capture_output=True)
        made.append(name)
        return pwd.getpwnam(name)

    yield make
    for name in made:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def tenant_for(*logins: str) -> dict[str, Any]:
    """A synthetic tenant whose members are ``login@example.com``, each allowed to read their
    own token, so a local login and its Entra account belong together as on a joined machine."""
    tenant = synthetic_tenant(len(logins), 23)
    for person, login in zip(tenant["users"][1:], logins, strict=True):  # users[0] is the admin
        upn = f"{login}@example.com"
        person["email"] = upn
        person["entra"].update(
            user_principal_name=upn, mail=upn, directory_roles=["Attribute Assignment Reader"]
        )
    return tenant


def provisioned_for(
    start_sandbox: StartSandbox, tmp_path: Path, *users: pwd.struct_passwd
) -> Running:
    running = start_sandbox(tenant_for(*(user.pw_name for user in users)))
    provision(running, tmp_path)
    return running


def data_file(user: pwd.struct_passwd) -> Path:
    return Path(user.pw_dir) / ".local" / "share" / "net.defguard" / "provisioning.json"


def upn_of(user: pwd.struct_passwd) -> str:
    return f"{user.pw_name}@example.com"


def test_for_user_as_root_writes_into_that_users_home(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    user = local_user()
    running = provisioned_for(start_sandbox, tmp_path, user)
    result = fetch(running, tmp_path, upn_of(user), "--for-user", user.pw_name)
    assert result.exit_code == 0, result.output
    path = data_file(user)
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o600
    for directory in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert directory.stat().st_uid == user.pw_uid, directory  # created, then handed over
    assert read(path).enrollment_token == stored_values(running, upn_of(user))["EnrollmentToken"]


def test_for_user_unknown(provisioned: Running, tmp_path: Path) -> None:
    result = fetch(
        provisioned, tmp_path, provisioned.info["user_upns"][0], "--for-user", "no-such-user-xyz"
    )
    assert result.exit_code == 2


def test_each_user_gets_their_own_sign_in(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    """Root provisions A, then B: B's file holds B's token from B's sign-in, never A's."""
    a, b = local_user(), local_user()
    running = provisioned_for(start_sandbox, tmp_path, a, b)
    assert running.sandbox.entra is not None
    first = fetch(running, tmp_path, upn_of(a), "--for-user", a.pw_name)
    assert first.exit_code == 0, first.output
    codes = len(running.sandbox.entra.device_codes)
    second = fetch(running, tmp_path, upn_of(b), "--for-user", b.pw_name)
    assert second.exit_code == 0, second.output
    b_signed_in = len(running.sandbox.entra.device_codes) == codes + 1
    again = fetch(running, tmp_path, None, "--for-user", a.pw_name)  # A's own cache: silent
    assert again.exit_code == 0, again.output
    a_silent = len(running.sandbox.entra.device_codes) == codes + 1
    tokens = {u.pw_name: stored_values(running, upn_of(u))["EnrollmentToken"] for u in (a, b)}
    assert tokens[a.pw_name] != tokens[b.pw_name]
    assert read(data_file(b)).enrollment_token == tokens[b.pw_name], "B's file holds A's token"
    assert read(data_file(a)).enrollment_token == tokens[a.pw_name]
    assert b_signed_in and a_silent


def test_signed_in_as_someone_else_is_refused(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    a, b = local_user(), local_user()
    running = provisioned_for(start_sandbox, tmp_path, a, b)
    wrong = fetch(running, tmp_path, upn_of(a), "--for-user", b.pw_name)
    assert wrong.exit_code == 2, wrong.output
    assert f"signed in as {upn_of(a)}, but --for-user is {b.pw_name}" in wrong.output
    assert not (Path(b.pw_dir) / ".local" / "share" / "net.defguard").exists()
    for cache in (tmp_path / "user-cache").iterdir():
        assert upn_of(a) not in cache.read_text("utf-8", errors="replace"), cache  # discarded
    right = fetch(running, tmp_path, upn_of(b), "--for-user", b.pw_name)
    assert right.exit_code == 0, right.output
    assert (
        read(data_file(b)).enrollment_token == stored_values(running, upn_of(b))["EnrollmentToken"]
    )


def test_a_cached_sign_in_of_someone_else_is_never_picked(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    """Even when B's cache holds A's account (here: copied in), B's run signs B in."""
    a, b = local_user(), local_user()
    running = provisioned_for(start_sandbox, tmp_path, a, b)
    assert running.sandbox.entra is not None
    assert fetch(running, tmp_path, upn_of(a), "--for-user", a.pw_name).exit_code == 0
    caches = tmp_path / "user-cache"
    (only,) = caches.iterdir()
    (caches / only.name.replace(a.pw_name, b.pw_name)).write_bytes(only.read_bytes())
    codes = len(running.sandbox.entra.device_codes)
    result = fetch(running, tmp_path, upn_of(b), "--for-user", b.pw_name)
    assert result.exit_code == 0, result.output
    assert len(running.sandbox.entra.device_codes) == codes + 1
    assert (
        read(data_file(b)).enrollment_token == stored_values(running, upn_of(b))["EnrollmentToken"]
    )


def test_ad_account_of_someone_else_is_refused(
    slapd: Slapd, tmp_path: Path, local_user: LocalUser
) -> None:
    b = local_user()
    slapd.add_user("John Doe", "jdoe", "jdoe@corp.example", defguardProvisioningConfig=VALUE)
    args = [
        "fetch-config", "--source", "ad", "--ldap-url", slapd.url, "--base-dn", USERS_DN,
        "--bind-dn", PROVISIONER_DN, "--sam-account-name", "jdoe", "--for-user", b.pw_name,
    ]  # fmt: skip
    result = CliRunner().invoke(main, args, env={"DGPROV_BIND_PASSWORD": PROVISIONER_PASSWORD})
    assert result.exit_code == 2, result.output
    assert f"--sam-account-name is jdoe, but --for-user is {b.pw_name}" in result.output
    assert not data_file(b).exists()


# -------------------------------------------------------------------------------- --log-file


def test_log_file_is_private_and_holds_no_secret(provisioned: Running, tmp_path: Path) -> None:
    upn = provisioned.info["user_upns"][0]
    log = tmp_path / "fetch.log"
    output = tmp_path / "p.json"
    result = fetch(provisioned, tmp_path, upn, "--output", str(output), "--log-file", str(log))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text("utf-8")
    assert "wrote" in text
    config = read(output)
    assert config.enrollment_token not in text and config.enrollment_url not in text


def test_log_file_link_is_refused(provisioned: Running, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("unrelated\n")
    victim.chmod(0o644)
    log = tmp_path / "fetch.log"
    log.symlink_to(victim)
    output = tmp_path / "p.json"
    upn = provisioned.info["user_upns"][0]
    result = fetch(provisioned, tmp_path, upn, "--output", str(output), "--log-file", str(log))
    assert result.exit_code == 2, result.output
    assert f"{log} is a symbolic link" in result.output
    assert victim.read_text() == "unrelated\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not output.exists()


# ------------------------------------------------------------------------- child processes

SECRETS = {
    "DGPROV_BIND_PASSWORD": PROVISIONER_PASSWORD,
    "DEFGUARD_API_TOKEN": "dg-AnApiTokenThatMustNotLeak000001",
    "DGPROV_CLIENT_SECRET": "a-client-secret-that-must-not-leak",
    "DGPROV_CLIENT_CERTIFICATE_PASSWORD": "a-certificate-password-not-to-leak",
}


def fake_tool(directory: Path, name: str, dump: Path, output: str) -> None:
    """A stand-in for a platform tool: records the environment it got, prints ``output``."""
    directory.mkdir(exist_ok=True)
    script = directory / name
    script.write_text(f"#!/bin/sh\nenv >> '{dump}'\ncat <<'EOF'\n{output}\nEOF\n")
    script.chmod(0o755)


def assert_no_secret_in(dump: Path) -> None:
    text = dump.read_text()
    assert "PATH=" in text  # the tool ran and recorded its environment
    for name, value in SECRETS.items():
        assert name not in text and value not in text, name


def realm_joined(slapd: Slapd, tmp_path: Path) -> tuple[Path, Path]:
    """A fake ``realm`` saying the machine is joined to corp.example.com; (bin dir, dump)."""
    dump = tmp_path / "realm.env"
    fake_tool(tmp_path / "bin", "realm", dump, (SAMPLES / "realm_list_joined.txt").read_text())
    return tmp_path / "bin", dump


SAMPLES = Path(__file__).parent / "samples"


def ad_auto_args(slapd: Slapd, *extra: str) -> list[str]:
    return [
        "fetch-config", "--ldap-url", slapd.url, "--base-dn", USERS_DN,
        "--bind-dn", PROVISIONER_DN, *extra,
    ]  # fmt: skip


def test_realm_gets_no_secrets(slapd: Slapd, tmp_path: Path) -> None:
    slapd.add_user("John Doe", "jdoe", "jdoe@corp.example", defguardProvisioningConfig=VALUE)
    tools, dump = realm_joined(slapd, tmp_path)
    args = ad_auto_args(slapd, "--sam-account-name", "jdoe", "--output", str(tmp_path / "p.json"))
    path = f"{tools}{os.pathsep}{os.environ['PATH']}"
    result = CliRunner().invoke(main, args, env={**SECRETS, "PATH": path})
    assert result.exit_code == 0, result.output  # joined (realm), read over LDAP with the secret
    assert read(tmp_path / "p.json").enrollment_token == TOKEN
    assert_no_secret_in(dump)


def test_loginctl_gets_no_secrets(slapd: Slapd, tmp_path: Path, local_user: LocalUser) -> None:
    """As root with no --for-user: loginctl names the session's user, realm the domain."""
    user = local_user()
    slapd.add_user("Local User", user.pw_name, None, defguardProvisioningConfig=VALUE)
    tools, realm_dump = realm_joined(slapd, tmp_path)
    loginctl_dump = tmp_path / "loginctl.env"
    session = f"Name={user.pw_name}\nType=wayland\nActive=yes\nClass=user"
    script = tools / "loginctl"
    script.write_text(
        f"#!/bin/sh\nenv >> '{loginctl_dump}'\n"
        f'if [ "$1" = list-sessions ]; then echo "2 {user.pw_uid} {user.pw_name} seat0 tty2"; '
        f"else printf '{session}\\n'; fi\n"
    )
    script.chmod(0o755)
    path = f"{tools}{os.pathsep}{os.environ['PATH']}"
    result = CliRunner().invoke(main, ad_auto_args(slapd), env={**SECRETS, "PATH": path})
    assert result.exit_code == 0, result.output
    assert f"provisioning {user.pw_name}" in result.output
    assert read(data_file(user)).enrollment_token == TOKEN
    assert_no_secret_in(loginctl_dump)
    assert_no_secret_in(realm_dump)


def test_browser_gets_no_secrets(provisioned: Running, tmp_path: Path) -> None:
    """The browser MSAL opens (here the sandbox's headless one, behind a recorder)."""
    info = provisioned.info
    assert provisioned.sandbox.entra is not None
    provisioned.sandbox.entra.auto_approve_upn = info["user_upns"][0]
    dump = tmp_path / "browser.env"
    browser = tmp_path / "browser"
    browser.write_text(
        f"#!/bin/sh\nenv >> '{dump}'\nexec '{sys.executable}' -m dgprov_sandbox.headless_browser "
        f"--cafile '{info['ca_bundle']}' \"$1\"\n"
    )
    browser.chmod(0o755)
    args = [
        "fetch-config", "--source", "entra", "--auth", "browser",
        "--tenant", info["tenant_id"], "--client-id", info["client_id"],
        "--authority", info["authority_url"], "--graph-url", info["graph_url"],
        "--ca-bundle", info["ca_bundle"], "--output", str(tmp_path / "p.json"),
    ]  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-m", "dgprov", *args],
        env={
            **os.environ,
            **SECRETS,
            "DGPROV_CACHE_DIR": str(tmp_path / "cache"),
            "BROWSER": f"{browser} %s",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert read(tmp_path / "p.json").enrollment_url
    assert_no_secret_in(dump)
