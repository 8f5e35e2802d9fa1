"""``dgprov fetch-config --source broker``: the real MSAL against the sandbox's authority.

The broker here is a recording stand-in (``hostile.py``) so each test can prove what the client
sent and choose what the broker answers; the same path against the real ``dgprov broker`` is in
``test_fetch_config_broker_service.py``.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.cli import main
from dgprov.client_files import read

from ..conftest import REPO, Running, StartSandbox, example_tenant
from .hostile import Exchange, HostileServer, hostile, replying
from .test_fetch_config import LocalUser, data_file, local_user, provision, tenant_for, upn_of
from .test_fetch_config import fetch as directory_fetch

__all__ = ["local_user"]

BINARY = REPO / "dist" / "dgprov"

ENROLLMENT_TOKEN = "MintedByTheBrokerForThisUser000001"
ANSWER = {"enrollment_url": "https://enroll.contoso.example/", "enrollment_token": ENROLLMENT_TOKEN}


def claims(access_token: str) -> dict[str, Any]:
    """The access token's payload, read without checking it (the broker checks it)."""
    payload = access_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def broker_fetch(
    running: Running,
    tmp_path: Path,
    upn: str | None,
    *extra: str,
    broker_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    info = running.info
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    args = [
        "fetch-config", "--tenant", info["tenant_id"], "--client-id", info["client_id"],
        "--authority", info["authority_url"], "--ca-bundle", info["ca_bundle"],
        "--auth", "device-code", "--broker-scope", info["broker_scope"], *extra,
    ]  # fmt: skip
    if broker_url is not None:
        args += ["--broker-url", broker_url]
    environment = {"DGPROV_CACHE_DIR": str(tmp_path / "user-cache"), **(env or {})}
    return CliRunner().invoke(main, args, env=environment)


@pytest.fixture
def running(start_sandbox: StartSandbox) -> Running:
    return start_sandbox(example_tenant())


def jdoe(running: Running) -> str:
    assert running.sandbox.entra is not None
    (upn,) = [
        u.user_principal_name
        for u in running.sandbox.entra.users.values()
        if u.user_principal_name.startswith("jdoe@")
    ]
    return upn


def test_signs_in_for_the_broker_scope_and_writes_the_answer(
    running: Running, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "provisioning.json"
    log = tmp_path / "fetch.log"
    with hostile(replying(200, ANSWER)) as broker:
        result = broker_fetch(
            running, tmp_path, jdoe(running), "--source", "broker", "--output", str(output),
            "--log-file", str(log), broker_url=broker.url,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "from the broker" in result.output
    (request,) = broker.received
    token = request.headers["authorization"].removeprefix("Bearer ")
    granted = claims(token)
    assert granted["aud"] == running.info["broker_client_id"]
    assert granted["scp"] == "Provision" and granted["upn"] == jdoe(running)
    assert json.loads(output.read_text("utf-8")) == ANSWER
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    for secret in (token, ENROLLMENT_TOKEN):
        assert secret not in result.output and secret not in log.read_text("utf-8")


def test_the_file_has_the_shape_the_directory_path_writes(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """The same writer: byte for byte the same layout as --source entra, only other values."""
    running = start_sandbox(synthetic_tenant(3, 21))
    provision(running, tmp_path)
    reader = running.info["user_upns"][0]  # holds Attribute Assignment Reader
    from_directory = tmp_path / "directory.json"
    done = directory_fetch(running, tmp_path / "d", reader, "--output", str(from_directory))
    assert done.exit_code == 0, done.output
    stored = read(from_directory)
    same = {"enrollment_url": stored.enrollment_url, "enrollment_token": stored.enrollment_token}
    with hostile(replying(200, same)) as broker:
        from_broker = tmp_path / "broker.json"
        result = broker_fetch(
            running, tmp_path / "b", reader, "--source", "broker", "--output", str(from_broker),
            broker_url=broker.url,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert from_broker.read_bytes() == from_directory.read_bytes()
    assert stat.S_IMODE(from_broker.stat().st_mode) == stat.S_IMODE(from_directory.stat().st_mode)


def test_a_second_run_signs_in_silently(running: Running, tmp_path: Path) -> None:
    assert running.sandbox.entra is not None
    with hostile(replying(200, ANSWER)) as broker:
        first = broker_fetch(
            running, tmp_path, jdoe(running), "--source", "broker",
            "--output", str(tmp_path / "a.json"), broker_url=broker.url,
        )  # fmt: skip
        assert first.exit_code == 0, first.output
        codes = len(running.sandbox.entra.device_codes)
        again = broker_fetch(
            running, tmp_path, None, "--source", "broker",
            "--output", str(tmp_path / "b.json"), broker_url=broker.url,
        )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert len(running.sandbox.entra.device_codes) == codes and "To sign in" not in again.output
    tokens = [r.headers["authorization"] for r in broker.received]
    assert len(tokens) == 2 and tokens[0] == tokens[1]  # the cached access token, still valid


def test_auto_prefers_the_broker_from_the_environment(running: Running, tmp_path: Path) -> None:
    """DGPROV_BROKER_URL alone makes --source auto use the broker on an unjoined machine."""
    with hostile(replying(200, ANSWER)) as broker:
        result = broker_fetch(
            running, tmp_path, jdoe(running), "--output", str(tmp_path / "p.json"),
            env={"DGPROV_BROKER_URL": broker.url},
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(broker.received) == 1 and read(tmp_path / "p.json").enrollment_token
    unset = CliRunner().invoke(main, ["fetch-config", "--output", str(tmp_path / "q.json")])
    assert unset.exit_code == 0 and "nothing to do" in unset.output  # no broker: the join


def test_the_option_wins_over_the_environment(running: Running, tmp_path: Path) -> None:
    with hostile(replying(200, ANSWER)) as chosen, hostile(replying(200, ANSWER)) as other:
        result = broker_fetch(
            running, tmp_path, jdoe(running), "--output", str(tmp_path / "p.json"),
            broker_url=chosen.url, env={"DGPROV_BROKER_URL": other.url},
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(chosen.received) == 1 and other.received == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--source", "broker"], "--source broker needs --broker-url"),
        (["--broker-url", "http://broker.contoso.example"], "use https"),
        (["--broker-url", "https://b.example", "--broker-scope", "Provision"], "names no API"),
    ],
)
def test_usage_errors(tmp_path: Path, arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(
        main,
        ["fetch-config", "--tenant", "t", "--client-id", "c", *arguments,
         "--output", str(tmp_path / "p.json")],
    )  # fmt: skip
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "p.json").exists()


def test_an_app_sign_in_is_refused(tmp_path: Path) -> None:
    """The broker wants a person's token; an app-only one is refused before anything is sent."""
    result = CliRunner().invoke(
        main,
        ["fetch-config", "--tenant", "t", "--client-id", "c", "--broker-url", "https://b.example",
         "--broker-scope", "api://b/Provision", "--auth", "client-secret",
         "--output", str(tmp_path / "p.json")],
        env={"DGPROV_CLIENT_SECRET": "a-secret-the-broker-path-must-not-use"},
    )  # fmt: skip
    assert result.exit_code == 2 and "--source broker signs a person in" in result.output


@pytest.mark.parametrize(
    ("status", "exit_status", "fix"),
    [
        (401, 2, "check that --broker-scope"),
        (403, 1, "add you to the Defguard group"),
        (404, 1, "create your Defguard account"),
        (409, 1, "unique in Defguard"),
        (429, 1, "wait a minute"),
        (503, 1, "run again later"),
    ],
)
def test_broker_refusals_on_the_command_line(
    running: Running, tmp_path: Path, status: int, exit_status: int, fix: str
) -> None:
    body = {"error": "refused", "message": "because\x1b[31m"}
    output = tmp_path / "p.json"
    with hostile(replying(status, body)) as broker:
        result = broker_fetch(
            running, tmp_path, jdoe(running), "--source", "broker", "--output", str(output),
            broker_url=broker.url,
        )  # fmt: skip
    assert result.exit_code == exit_status, result.output
    (line,) = [line for line in result.output.splitlines() if "error:" in line]
    assert line.startswith(f"dgprov fetch-config: error: the broker answered {status}: ")
    assert fix in line and "(refused: because [31m)" in line and "\x1b" not in result.output
    token = broker.received[0].headers["authorization"].removeprefix("Bearer ")
    assert token not in result.output
    assert not output.exists()


def test_a_redirect_to_another_origin_gets_no_token(running: Running, tmp_path: Path) -> None:
    with hostile(replying(200, ANSWER)) as elsewhere:

        def redirect(exchange: Exchange) -> None:
            exchange.reply(307, b"", {"Location": elsewhere.url + "/v1/provisioning"})

        with hostile(redirect) as broker:
            result = broker_fetch(
                running, tmp_path, jdoe(running), "--source", "broker",
                "--output", str(tmp_path / "p.json"), broker_url=broker.url,
            )  # fmt: skip
    assert result.exit_code == 1 and "redirect" in result.output
    assert elsewhere.received == [] and not (tmp_path / "p.json").exists()


def for_user_fetch(
    running: Running, tmp_path: Path, upn: str, for_user: str
) -> tuple[Result, HostileServer]:
    """As root, ``--for-user for_user`` with ``upn`` signing in; the stand-in broker answers."""
    with hostile(replying(200, ANSWER)) as broker:
        result = broker_fetch(
            running, tmp_path, upn, "--source", "broker", "--for-user", for_user,
            broker_url=broker.url,
        )  # fmt: skip
    return result, broker


def test_for_user_as_root_writes_that_users_file(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    """The same writer and the same checks as the directory path under root or SYSTEM."""
    user = local_user()
    running = start_sandbox(tenant_for(user.pw_name))
    result, broker = for_user_fetch(running, tmp_path, upn_of(user), user.pw_name)
    assert result.exit_code == 0, result.output
    token = broker.received[0].headers["authorization"].removeprefix("Bearer ")
    assert claims(token)["upn"] == upn_of(user)
    path = data_file(user)
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert read(path).enrollment_token == ENROLLMENT_TOKEN


def test_for_user_signed_in_as_someone_else_asks_the_broker_nothing(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    a, b = local_user(), local_user()
    running = start_sandbox(tenant_for(a.pw_name, b.pw_name))
    wrong, broker = for_user_fetch(running, tmp_path, upn_of(a), b.pw_name)
    assert wrong.exit_code == 2, wrong.output
    assert f"signed in as {upn_of(a)}, but --for-user is {b.pw_name}" in wrong.output
    assert broker.received == [] and not data_file(b).exists()


WAM_ON_THIS_MACHINE = """
import sys, msal
from dgprov import entra_auth
from dgprov.cli import main

def as_on_windows(auth):
    return entra_auth.platform_broker_options("win32", msal.__version__, True, auth)

entra_auth._platform_broker = as_on_windows
interactive = msal.PublicClientApplication.acquire_token_interactive

def recorded(self, scopes, **options):
    if options.get("parent_window_handle") is self.CONSOLE_WINDOW_HANDLE:
        print("interactive sign-in with the console window handle", file=sys.stderr)
    return interactive(self, scopes, **options)

msal.PublicClientApplication.acquire_token_interactive = recorded
main(sys.argv[1:], prog_name="dgprov")
"""


def test_the_platform_broker_branch_with_the_installed_msal(
    running: Running, tmp_path: Path
) -> None:
    """What Windows would do, on this machine: the decision says WAM, the installed msal takes
    ``enable_broker_on_windows`` (and, not being on Windows, signs in through the browser), and
    the sign-in passes the console window handle WAM needs; no device code is asked for."""
    info = running.info
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = jdoe(running)
    browser = f"{sys.executable} -m dgprov_sandbox.headless_browser --cafile {info['ca_bundle']} %s"
    with hostile(replying(200, ANSWER)) as broker:
        args = [
            "fetch-config", "--source", "broker", "--broker-url", broker.url,
            "--broker-scope", info["broker_scope"], "--tenant", info["tenant_id"],
            "--client-id", info["client_id"], "--authority", info["authority_url"],
            "--ca-bundle", info["ca_bundle"], "--output", str(tmp_path / "p.json"),
        ]  # fmt: skip
        completed = subprocess.run(
            [sys.executable, "-c", WAM_ON_THIS_MACHINE, *args],
            env={**os.environ, "DGPROV_CACHE_DIR": str(tmp_path / "cache"), "BROWSER": browser},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert completed.returncode == 0, completed.stderr
    assert "interactive sign-in with the console window handle" in completed.stderr
    assert "To sign in" not in completed.stderr
    assert claims(broker.received[0].headers["authorization"].split()[1])["upn"] == jdoe(running)
    assert read(tmp_path / "p.json").enrollment_token == ENROLLMENT_TOKEN


@pytest.mark.skipif(not BINARY.exists(), reason="build it first with: make dist (make test does)")
def test_the_single_file_binary_asks_the_broker(running: Running, tmp_path: Path) -> None:
    """What installers ship: the broker client is in the binary, with no web server in it."""
    info = running.info
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = jdoe(running)
    args = [
        str(BINARY), "fetch-config", "--broker-scope", info["broker_scope"],
        "--tenant", info["tenant_id"], "--client-id", info["client_id"],
        "--authority", info["authority_url"], "--ca-bundle", info["ca_bundle"],
        "--auth", "device-code", "--output", str(tmp_path / "p.json"),
    ]  # fmt: skip
    with hostile(replying(200, ANSWER)) as broker:
        completed = subprocess.run(
            [*args, "--broker-url", broker.url],
            env={**os.environ, "DGPROV_CACHE_DIR": str(tmp_path / "cache")},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert completed.returncode == 0, completed.stderr
    assert len(broker.received) == 1 and read(tmp_path / "p.json").enrollment_token
    assert ENROLLMENT_TOKEN not in completed.stdout + completed.stderr
