"""``dist/windows/dgprov/dgprov.exe`` under Wine: the client job and the first launch as the
Wine account, with nothing but the exe's defaults deciding where files go.

The servers run on the Linux side (the sandbox, slapd, ``dgprov broker``); the exe reaches them
on 127.0.0.1 and trusts the sandbox's CA through ``--ca-bundle`` given as a ``Z:`` path.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import wine_prefix  # packaging/windows, put on the path by conftest.py
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.device_files import key_pair_from_private

from ..broker_fixtures import broker_process
from ..conftest import ADMIN_TOKEN, Running, StartSandbox
from ..product.test_enroll import PASSWORD, private_key, registered_keys
from ..product.test_enroll import tenant as enrollment_tenant
from ..product.test_fetch_config import TOKEN, VALUE, provision, slapd, stored_values
from ..slapd import PROVISIONER_DN, PROVISIONER_PASSWORD, USERS_DN, Slapd
from .conftest import run_exe

__all__ = ["slapd"]

PROVISIONING = wine_prefix.roaming_app_data() / "net.defguard" / "provisioning.json"
SIGN_IN_CACHE = wine_prefix.local_app_data() / "dgprov"


def sandbox_options(running: Running) -> list[str]:
    """What ``fetch-config`` needs to sign in at the sandbox's Entra, device code approved."""
    info = running.info
    return [
        "--tenant", info["tenant_id"], "--client-id", info["client_id"],
        "--authority", info["authority_url"], "--graph-url", info["graph_url"],
        "--ca-bundle", wine_prefix.windows_path(info["ca_bundle"]), "--auth", "device-code",
    ]  # fmt: skip


def output_of(completed: subprocess.CompletedProcess[str]) -> str:
    return completed.stdout + completed.stderr


def assert_no_secret(completed: subprocess.CompletedProcess[str], *secrets: str) -> None:
    shown = output_of(completed)
    for secret in (ADMIN_TOKEN, *secrets):
        assert secret not in shown, "a token reached the exe's output"


def provisioning_document() -> dict[str, str]:
    document: dict[str, str] = json.loads(PROVISIONING.read_bytes().decode("utf-8"))
    return document


def test_version() -> None:
    completed = run_exe("--version")
    assert completed.returncode == 0, output_of(completed)
    assert completed.stdout.startswith("dgprov, version ")


def test_entra_writes_the_users_token_where_the_client_reads_it(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(synthetic_tenant(2, 31))
    provision(running, tmp_path)
    upn = running.info["user_upns"][0]
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    completed = run_exe("fetch-config", "--source", "entra", *sandbox_options(running))
    assert completed.returncode == 0, output_of(completed)
    stored = stored_values(running, upn)
    assert provisioning_document() == {
        "enrollment_url": stored["EnrollmentUrl"],
        "enrollment_token": stored["EnrollmentToken"],
    }
    assert_no_secret(completed, stored["EnrollmentToken"])
    assert "net.defguard\\provisioning.json" in output_of(completed)  # says where, as Windows


def test_the_sign_in_cache_is_dpapi_protected(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    """msal_extensions keeps the cache encrypted with DPAPI under %LOCALAPPDATA%\\dgprov: no
    refresh token in it, no JSON at all, and a second run signs in silently from it."""
    running = start_sandbox(synthetic_tenant(2, 31))
    provision(running, tmp_path)
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = running.info["user_upns"][0]
    first = run_exe("fetch-config", "--source", "entra", *sandbox_options(running))
    assert first.returncode == 0, output_of(first)
    files = [path for path in SIGN_IN_CACHE.iterdir() if path.is_file()]
    assert files, "no sign-in cache was written"
    for path in files:
        data = path.read_bytes()
        assert b"refresh_token" not in data and b"RefreshToken" not in data, path.name
        assert b"secret" not in data and not data.lstrip().startswith(b"{"), path.name
    running.sandbox.entra.auto_approve_upn = None  # a second device-code sign-in would hang
    again = run_exe("fetch-config", "--source", "entra", *sandbox_options(running))
    assert again.returncode == 0, output_of(again)


@pytest.mark.posix_services  # slapd, or the broker fixture (POSIX signals)
def test_ad_writes_the_token_from_the_directory(slapd: Slapd) -> None:
    slapd.add_user(
        "Wine User", "wineuser", "wineuser@corp.example", defguardProvisioningConfig=VALUE
    )
    completed = run_exe(
        "fetch-config", "--source", "ad", "--ldap-url", slapd.url, "--base-dn", USERS_DN,
        "--bind-dn", PROVISIONER_DN, "--sam-account-name", "wineuser",
        environment={"DGPROV_BIND_PASSWORD": PROVISIONER_PASSWORD},
    )  # fmt: skip
    assert completed.returncode == 0, output_of(completed)
    assert provisioning_document() == {
        "enrollment_url": "https://enroll.corp.example/",
        "enrollment_token": TOKEN,
    }
    assert_no_secret(completed, TOKEN, PROVISIONER_PASSWORD)


@pytest.mark.posix_services  # slapd, or the broker fixture (POSIX signals)
def test_broker_mints_the_token(start_sandbox: StartSandbox) -> None:
    document = enrollment_tenant()
    running = start_sandbox(document)
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = "jdoe@contoso.example"
    with broker_process(running) as broker:
        completed = run_exe(
            "fetch-config", "--source", "broker", "--broker-url", broker.url,
            "--broker-scope", running.info["broker_scope"], *sandbox_options(running),
        )  # fmt: skip
        broker_output = broker.output()
    assert completed.returncode == 0, output_of(completed)
    written = provisioning_document()
    assert list(written) == ["enrollment_url", "enrollment_token"]
    assert len(running.tokens("jdoe")) == 1  # the one the broker had Defguard issue
    assert written["enrollment_token"] not in broker_output
    assert_no_secret(completed, written["enrollment_token"], running.info["broker_client_secret"])


def test_enroll_reaches_client_ready_from_the_fetched_file(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """fetch-config, then enroll with only its defaults: the file the first wrote, the
    configurations into %APPDATA%\\net.defguard\\wireguard, the spent file renamed."""
    running = start_sandbox(enrollment_tenant())
    token = running.issue("jdoe")
    PROVISIONING.parent.mkdir(parents=True)
    PROVISIONING.write_text(
        json.dumps({"enrollment_url": running.info["proxy_url"] + "/", "enrollment_token": token})
    )
    password = tmp_path / "password.txt"
    password.write_text(PASSWORD + "\n")
    completed = run_exe(
        "enroll", "--password-file", wine_prefix.windows_path(password),
        "--ca-bundle", wine_prefix.windows_path(running.info["ca_bundle"]),
    )  # fmt: skip
    assert completed.returncode == 0, output_of(completed)
    assert "enrolled jdoe at Contoso VPN" in completed.stdout
    user = running.anonymous.get("/_sandbox/users/jdoe").json()
    assert user["enrolled"] and user["has_password"] and not user["enrollment_pending"]
    configurations = sorted((PROVISIONING.parent / "wireguard").glob("*.conf"))
    assert len(configurations) == 2, "one configuration per location"
    keys = {private_key(path) for path in configurations}
    assert len(keys) == 1  # one device, one key
    (registered,) = registered_keys(running, "jdoe")
    assert key_pair_from_private(keys.pop()).public == registered
    assert not PROVISIONING.exists()  # spent: the desktop app must not use it again
    assert list(PROVISIONING.parent.glob("provisioning.json.used-*"))
    assert_no_secret(completed, token, PASSWORD)


def test_sync_lock_refuses_a_second_run() -> None:
    """The host lock (``msvcrt.locking`` on %ProgramData%\\dgprov\\dgprov-sync.lock), held by a
    Windows process, refuses ``sync``; once released, the same command gets past it."""
    holder_code = (
        "import sys\n"
        "from dgprov.host_lock import host_lock\n"
        "with host_lock():\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    sync = [
        "sync", "--url", "https://127.0.0.1:9/", "--group-name", "vpn-users",
        "--directory", "ad", "--ldap-url", "ldap://127.0.0.1:9", "--base-dn", USERS_DN,
        "--ad-attribute", "defguardProvisioningConfig",
    ]  # fmt: skip
    environment = {"DEFGUARD_API_TOKEN": ADMIN_TOKEN, "DGPROV_BIND_PASSWORD": "x"}
    holder = wine_prefix.start(
        [wine_prefix.PYTHON, "-c", holder_code],
        extra_environment={"PYTHONPATH": wine_prefix.windows_path(wine_prefix.REPO / "src")},
        keep_stdin=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        refused = run_exe(*sync, environment=environment)
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    assert refused.returncode == 2, output_of(refused)
    assert "another dgprov sync is running on this host" in refused.stderr
    assert "ProgramData\\dgprov\\dgprov-sync.lock" in refused.stderr
    released = run_exe(*sync, environment=environment)
    assert "another dgprov sync is running" not in output_of(released)
    assert released.returncode != 0  # the servers are closed ports; the lock let it through
    assert_no_secret(refused)
    assert_no_secret(released)


def test_the_exe_carries_no_emulator() -> None:
    completed = run_exe("sandbox")
    assert completed.returncode == 2
    assert "dgprov-sandbox package is not installed" in completed.stderr
