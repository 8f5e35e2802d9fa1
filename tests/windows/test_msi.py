"""dgprov's MSI under Wine: install with properties, the logon action's recorded command line
run as the Wine user against the sandbox (once provisioning, then sending nothing), uninstall.

Wine's msiexec installs and removes for real and runs the deferred custom actions; Wine's task
service keeps a task's registration but drops its trigger and action, so the exact command the
task runs is read from what the installer recorded (``HKLM\\SOFTWARE\\dgprov\\LogonCommand``).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import wine_prefix  # packaging/windows, put on the path by conftest.py
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import StartSandbox
from ..product.test_fetch_config import provision, stored_values
from ..product.test_system_and_logon import requests_of
from .conftest import EXE_SECONDS

REPO = wine_prefix.REPO
PROGRAM = wine_prefix.PREFIX / "drive_c" / "Program Files" / "dgprov"
TASK = wine_prefix.PREFIX / "drive_c" / "windows" / "system32" / "tasks" / "dgprov"
POLICY = r"HKLM\SOFTWARE\Policies\dgprov"
INSTALLED = r"HKLM\SOFTWARE\dgprov"
PROVISIONING = wine_prefix.roaming_app_data() / "net.defguard" / "provisioning.json"
LOGS = wine_prefix.local_app_data() / "dgprov" / "logs" / "fetch-config.log"

pytestmark = pytest.mark.posix_services  # wixl's MSI; the release workflow builds none


def msi() -> Path:
    found = sorted((REPO / "dist" / "windows").glob("dgprov-*-x64.msi"))
    if not found:
        pytest.fail("no dist/windows/dgprov-<version>-x64.msi: build it with make windows")
    return found[-1]


def msiexec(*arguments: str) -> int:
    completed = wine_prefix.run(["msiexec", *arguments, "/qn"], timeout=EXE_SECONDS)
    return completed.returncode


def reg_values(key: str) -> dict[str, str] | None:
    """``reg query``'s values of ``key``, or None when the key does not exist."""
    completed = wine_prefix.run(["reg", "query", key], timeout=EXE_SECONDS)
    if completed.returncode != 0:
        return None
    values = {}
    for line in completed.stdout.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) >= 2 and parts[1].startswith("REG_"):
            values[parts[0]] = parts[2] if len(parts) == 3 else ""
    return values


def reg_set(key: str, name: str, value: str) -> None:
    completed = wine_prefix.run(
        ["reg", "add", key, "/v", name, "/t", "REG_SZ", "/d", value, "/f"], timeout=EXE_SECONDS
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.fixture
def installer() -> Iterator[Path]:
    """The MSI, with the prefix left as it was found: uninstalled, no task, no policy."""
    path = msi()
    yield path
    msiexec("/x", wine_prefix.windows_path(path))
    shutil.rmtree(PROGRAM, ignore_errors=True)


def logon_command(recorded: str) -> list[str]:
    """The recorded command line, split as Windows would: a quoted program, then arguments."""
    program, _, arguments = recorded.partition('" ')
    return [program.lstrip('"'), *shlex.split(arguments)]


def test_install_logon_action_and_uninstall(
    installer: Path, start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(synthetic_tenant(2, 31))
    provision(running, tmp_path)
    info = running.info
    upn = info["user_upns"][0]

    properties = [f"TENANT={info['tenant_id']}", f"CLIENTID={info['client_id']}", "SOURCE=entra"]
    assert msiexec("/i", wine_prefix.windows_path(installer), *properties) == 0
    assert (PROGRAM / "dgprov.exe").is_file() and (PROGRAM / "dgprov-logon.exe").is_file()
    policy = reg_values(POLICY)
    assert policy is not None
    assert (policy["Tenant"], policy["ClientId"], policy["Source"]) == (
        info["tenant_id"],
        info["client_id"],
        "entra",
    )
    assert "BrokerUrl" not in policy  # not given: not written (a repair blanks nothing)
    recorded = reg_values(INSTALLED)
    assert recorded is not None
    assert recorded["LogonTask"] == r"\dgprov\fetch-config at logon"
    assert (TASK / "fetch-config at logon").is_file()  # registered with the task service
    command = logon_command(recorded["LogonCommand"])
    assert command == [r"C:\Program Files\dgprov\dgprov-logon.exe", "fetch-config", "--at-logon"]

    # What a GPO would add for this tenant: the sandbox's sign-in, Graph and CA.
    by_policy = {
        "Authority": info["authority_url"],
        "GraphUrl": info["graph_url"],
        "CaBundle": wine_prefix.windows_path(info["ca_bundle"]),
        "Auth": "device-code",
    }
    for name, value in by_policy.items():
        reg_set(POLICY, name, value)
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    first = wine_prefix.run(command, timeout=EXE_SECONDS)
    assert first.returncode == 0, LOGS.read_text("utf-8") if LOGS.exists() else first.stderr
    stored = stored_values(running, upn)
    assert json.loads(PROVISIONING.read_text("utf-8")) == {
        "enrollment_url": stored["EnrollmentUrl"],
        "enrollment_token": stored["EnrollmentToken"],
    }
    log = LOGS.read_text("utf-8")
    assert "wrote" in log and stored["EnrollmentToken"] not in log

    PROVISIONING.unlink()  # as if the desktop client had used it
    before = requests_of(running)
    second = wine_prefix.run(command, timeout=EXE_SECONDS)
    assert second.returncode == 0
    assert requests_of(running) == before  # the next logon sends nothing
    assert not PROVISIONING.exists()
    assert "provisioned before" in LOGS.read_text("utf-8")

    PROVISIONING.parent.mkdir(parents=True, exist_ok=True)
    PROVISIONING.write_text("{}")  # a user's file, which uninstall must leave alone
    assert msiexec("/x", wine_prefix.windows_path(installer)) == 0
    assert not (PROGRAM / "dgprov.exe").exists()
    assert reg_values(POLICY) is None
    assert reg_values(INSTALLED) is None
    assert not (TASK / "fetch-config at logon").exists()
    assert PROVISIONING.read_text() == "{}"


def test_the_msi_runs_its_actions_where_windows_allows_deferred_ones() -> None:
    """A deferred action outside InstallInitialize..InstallFinalize is refused by Windows
    (error 2762), which Wine does not enforce; wixl once put the uninstall action at 1."""
    table = subprocess.run(
        ["msiinfo", "export", str(msi()), "InstallExecuteSequence"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    order = {
        row.split("\t")[0]: int(row.split("\t")[2])
        for row in table.splitlines()[3:]
        if row.count("\t") == 2
    }
    assert order["InstallInitialize"] < order["RemoveLogonAction"] < order["RemoveFiles"]
    assert order["InstallFiles"] < order["RegisterLogonAction"] < order["InstallFinalize"]
    assert order["InstallValidate"] < order["RemoveExistingProducts"]  # a major upgrade
