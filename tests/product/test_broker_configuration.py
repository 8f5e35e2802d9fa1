"""Broker configuration that cannot be half right (issue 21, item 6), through the real CLI.

- The client job needs only the broker's URL (and the public client's tenant and id): the
  scope comes from ``DGPROV_BROKER_SCOPE``, or from the broker's ``GET /v1/config``.
- ``dgprov broker`` reads its own client id from ``--client-id`` or ``DGPROV_BROKER_CLIENT_ID``,
  never from ``DGPROV_CLIENT_ID`` (the public client's), and refuses to start without one.
- A broker whose client id cannot be its audience (the public client's, a Microsoft app's) is
  not ready, says why on ``/readyz``, writes the reason in its audit log, and tells no client
  to sign in for it.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dgprov import policy
from dgprov.cli import main
from dgprov.client_files import read

from ..broker_fixtures import BrokerProcess, broker_command, broker_environment, broker_process
from ..conftest import Running, StartSandbox
from .hostile import Exchange, hostile
from .test_fetch_config_broker import ANSWER, claims
from .test_fetch_config_broker_service import issued_hashes, tenant

JDOE = "jdoe@contoso.example"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
DEADLINE_SECONDS = 20.0


def client_job(
    running: Running, tmp_path: Path, env: dict[str, str], *extra: str, upn: str = JDOE
) -> Result:
    """``dgprov fetch-config`` with no --source, --tenant, --client-id or --broker-*: what the
    environment says, plus where the sandbox's authority is and its CA."""
    info = running.info
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    args = [
        "fetch-config", "--authority", info["authority_url"], "--ca-bundle", info["ca_bundle"],
        "--auth", "device-code", "--output", str(tmp_path / "p.json"), *extra,
    ]  # fmt: skip
    environment = {
        "DGPROV_CACHE_DIR": str(tmp_path / "cache"),
        "DGPROV_TENANT": info["tenant_id"],
        "DGPROV_CLIENT_ID": info["client_id"],
        "DGPROV_BROKER_SCOPE": "",
        **env,
    }
    return CliRunner().invoke(main, args, env=environment)


def without_client_id(command: list[str]) -> list[str]:
    at = command.index("--client-id")
    return command[:at] + command[at + 2 :]


def with_client_id(command: list[str], client_id: str) -> list[str]:
    changed = list(command)
    changed[changed.index("--client-id") + 1] = client_id
    return changed


def waited(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (value := condition()):
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_SECONDS} s"
        time.sleep(0.05)
    return value


# ------------------------------------------------------------- the client job: the URL suffices


def test_the_broker_url_alone_makes_auto_write_provisioning_json(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """No --broker-scope anywhere: the broker's /v1/config gives it; the token is the user's."""
    running = start_sandbox(tenant())
    with broker_process(running) as broker:
        told = broker.get("/v1/config")
        result = client_job(running, tmp_path, {"DGPROV_BROKER_URL": broker.url})
        (audit,) = broker.audit_lines()
    assert told.status_code == 200 and told.headers["cache-control"] == "no-store"
    assert told.json() == {
        "scope": running.info["broker_scope"],
        "tenant": running.info["tenant_id"],
    }
    assert result.exit_code == 0, result.output
    assert "from the broker" in result.output
    config = read(tmp_path / "p.json")
    assert audit["upn"] == JDOE and audit["outcome"] == "provisioned"
    digest = hashlib.sha256(config.enrollment_token.encode()).hexdigest()
    assert issued_hashes(running, "jdoe") == {digest}  # the one token Defguard issued, jdoe's
    assert config.enrollment_token not in result.output


def test_the_scope_from_the_environment_is_used_and_the_broker_is_not_asked(
    start_sandbox: StartSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DGPROV_BROKER_SCOPE is used without asking /v1/config; --broker-scope and then machine
    policy win over it (CLI > policy > environment, as for the broker's URL)."""
    running = start_sandbox(tenant())
    scope = running.info["broker_scope"]
    with hostile(lambda exchange: exchange.reply(200, ANSWER)) as broker:
        from_variable = client_job(
            running, tmp_path / "1", {"DGPROV_BROKER_URL": broker.url, "DGPROV_BROKER_SCOPE": scope}
        )
        elsewhere = {"DGPROV_BROKER_URL": broker.url, "DGPROV_BROKER_SCOPE": "api://x/Provision"}
        from_option = client_job(running, tmp_path / "2", elsewhere, "--broker-scope", scope)
        monkeypatch.setattr(policy, "machine_defaults", lambda: {"broker_scope": scope})
        from_policy = client_job(running, tmp_path / "3", elsewhere)
    for result in (from_variable, from_option, from_policy):
        assert result.exit_code == 0, result.output
    requests = [(r.method, r.path) for r in broker.received]
    assert requests == [("POST", "/v1/provisioning")] * 3  # the broker was never asked
    for request in broker.received:
        token = request.headers["authorization"].removeprefix("Bearer ")
        assert claims(token)["aud"] == running.info["broker_client_id"]


def config_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
    """A broker whose /v1/config says ``body``; a POST to it would be answered (and seen)."""

    def route(exchange: Exchange) -> None:
        if exchange.path == "/v1/config":
            exchange.reply(status, body, headers)
        else:
            exchange.reply(200, ANSWER)

    return route


SCOPE = "api://c0000000-0000-4000-8000-000000000003/Provision"
TENANT = "b0000000-0000-4000-8000-000000000001"
OTHER_TENANT = "b0000000-0000-4000-8000-0000000000ff"
BAD_ANSWERS = [
    # (what, status, body, headers, exit, words)
    ("an older broker", 404, {"error": "not found"}, None, 2,
     "does not tell its scope (GET /v1/config answered 404): give --broker-scope or set "
     "DGPROV_BROKER_SCOPE"),
    ("a key too many", 200, {"scope": SCOPE, "tenant": TENANT, "secret": "x"}, None, 1,
     "expected an object with exactly scope and tenant"),
    ("no tenant", 200, {"scope": SCOPE}, None, 1, "exactly scope and tenant"),
    ("a Graph scope", 200, {"scope": "https://graph.microsoft.com/.default", "tenant": TENANT},
     None, 1, "not the broker's Provision scope"),
    ("a scope with spaces", 200, {"scope": f"{SCOPE} openid", "tenant": TENANT}, None, 1,
     "the scope is not one scope"),
    ("a tenant with a path", 200, {"scope": SCOPE, "tenant": "evil.example/x"}, None, 1,
     "the tenant is not a tenant id or domain"),
    ("a list", 200, [SCOPE, TENANT], None, 1, "exactly scope and tenant"),
    ("too large", 200, {"scope": SCOPE, "tenant": "a" * 5000}, None, 1, "larger than 4 KiB"),
    ("a redirect", 302, b"", {"Location": "https://evil.example/v1/config"}, 1,
     "answered with a redirect (302) to https://evil.example"),
    ("another tenant", 200, {"scope": SCOPE, "tenant": OTHER_TENANT.upper()}, None, 2,
     f"serves tenant {OTHER_TENANT}, but this machine signs in to tenant "),
    ("not ready", 503, {"error": "not_ready", "message": "keys\x1b[2J"}, None, 1,
     "the broker answered 503: GET /v1/config: not_ready: keys [2J"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "headers", "exit_status", "words"),
    [case[1:] for case in BAD_ANSWERS],
    ids=[case[0] for case in BAD_ANSWERS],
)
def test_a_bad_config_answer_is_refused_before_anyone_signs_in(
    start_sandbox: StartSandbox,
    tmp_path: Path,
    status: int,
    body: Any,
    headers: dict[str, str] | None,
    exit_status: int,
    words: str,
) -> None:
    running = start_sandbox(tenant())
    assert running.sandbox.entra is not None
    with hostile(config_answer(status, body, headers)) as broker:
        result = client_job(running, tmp_path, {"DGPROV_BROKER_URL": broker.url})
    assert result.exit_code == exit_status, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("dgprov fetch-config: error: "), line
    assert words in line and "\x1b" not in line
    assert [r.method for r in broker.received] == ["GET"]  # no token was sent
    assert not running.sandbox.entra.device_codes  # nobody was asked to sign in
    assert not (tmp_path / "p.json").exists()


# -------------------------------------------------------------- the broker's own client id


def run_until_refused(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )


def test_the_broker_does_not_take_the_public_clients_variable(
    start_sandbox: StartSandbox,
) -> None:
    running = start_sandbox(tenant())
    env = {**broker_environment(running), "DGPROV_CLIENT_ID": running.info["broker_client_id"]}
    env.pop("DGPROV_BROKER_CLIENT_ID", None)
    completed = run_until_refused(without_client_id(broker_command(running)), env)
    assert completed.returncode == 2, completed.stderr
    (line,) = completed.stderr.splitlines()
    assert line.startswith("dgprov broker: error: no client id for the broker's own app ")
    assert "--client-id" in line and "DGPROV_BROKER_CLIENT_ID" in line and len(line) <= 200
    assert completed.stdout == ""


def test_the_broker_takes_its_client_id_from_its_own_variable(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    info = running.info
    command = without_client_id(broker_command(running))
    env = {"DGPROV_BROKER_CLIENT_ID": info["broker_client_id"], "DGPROV_CLIENT_ID": "x"}
    with broker_process(running, command=command, env=env) as broker:
        assert broker.get("/v1/config").json()["scope"] == info["broker_scope"]
        result = client_job(running, tmp_path, {"DGPROV_BROKER_URL": broker.url})
    assert result.exit_code == 0, result.output
    assert len(issued_hashes(running, "jdoe")) == 1


def test_the_help_names_the_brokers_variable() -> None:
    result = CliRunner().invoke(main, ["broker", "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    assert "[env DGPROV_BROKER_CLIENT_ID]" in help_text
    assert "[env DGPROV_CLIENT_ID]" not in help_text


# ------------------------------------------------------------------ an audience that cannot be


def not_ready_line(broker: BrokerProcess) -> dict[str, Any] | None:
    return next((a for a in broker.audit_lines() if a["outcome"] == "not_ready"), None)


@pytest.mark.parametrize(
    ("client_id", "words"),
    [
        (None, "the broker's client id is the public client's (an --allowed-client-id)"),
        (AZURE_CLI, "the broker's client id is Azure CLI's, a Microsoft app"),
    ],
    ids=["the public client", "Azure CLI"],
)
def test_readyz_is_not_ready_when_the_audience_cannot_be_right(
    start_sandbox: StartSandbox, tmp_path: Path, client_id: str | None, words: str
) -> None:
    running = start_sandbox(tenant())
    chosen = client_id or running.info["client_id"]  # the public client, also allowed below
    command = with_client_id(broker_command(running), chosen)
    with broker_process(running, command=command) as broker:
        ready = broker.get("/readyz")
        told = broker.get("/v1/config")
        line = waited(lambda: not_ready_line(broker), "not_ready audit line")
        again = broker.get("/readyz")
        result = client_job(running, tmp_path, {"DGPROV_BROKER_URL": broker.url})
        lines = [a for a in broker.audit_lines() if a["outcome"] == "not_ready"]
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "not ready" and words in ready.json()["reason"]
    assert chosen not in ready.text  # anyone may probe: no id
    assert again.status_code == 503
    assert line["status"] == 503 and words in line["detail"]
    assert len(lines) == 1  # said once, not on every probe
    assert told.status_code == 503 and told.json()["error"] == "not_ready"
    assert result.exit_code == 1, result.output
    assert "dgprov fetch-config: error: the broker answered 503: GET /v1/config: not_ready" in (
        result.output
    )
    assert running.tokens("jdoe") == []


def test_readyz_is_not_ready_when_the_app_exposes_no_api(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """The admin job's confidential app given as the broker's: a real registration with a
    secret, but it exposes no API, so no user's token can ever be for it."""
    running = start_sandbox(tenant())
    command = with_client_id(broker_command(running), running.info["confidential_client_id"])
    secret = {"DGPROV_CLIENT_SECRET": running.info["client_secret"]}
    with broker_process(running, command=command, env=secret) as broker:
        line = waited(lambda: not_ready_line(broker), "not_ready audit line")
        ready = broker.get("/readyz")
        told = broker.get("/v1/config")
    assert "exposes no API" in line["detail"] and line["status"] == 503
    assert ready.status_code == 503 and "exposes no API" in ready.json()["reason"]
    assert running.info["confidential_client_id"] not in ready.text
    assert told.status_code == 503 and told.json()["error"] == "not_ready"


def test_an_app_that_exposes_its_api_is_ready(start_sandbox: StartSandbox) -> None:
    """The same check passes for the broker's own registration (the test above can fail)."""
    running = start_sandbox(tenant())
    with broker_process(running) as broker:
        ready = waited(lambda: (r := broker.get("/readyz")).status_code == 200 and r, "ready")
        assert not_ready_line(broker) is None
    assert ready.json()["status"] == "ready"
