"""``fetch-config --source broker`` against the real ``dgprov broker`` and the sandbox.

Everything real: MSAL signs the user in at the sandbox's authority; the broker (in this process
through ``commands.demo.sandbox_broker``, or as its own ``dgprov broker`` process) validates the
token against the published keys, maps the user through Graph and asks Defguard core for the
token; each refusal the broker can give reaches the command line as its one line and exit status.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result

from dgprov.client_files import read
from dgprov.commands.demo import sandbox_broker

from ..broker_fixtures import broker_process
from ..conftest import Running, StartSandbox, example_tenant, trust
from .hostile import closed_port
from .test_fetch_config_broker import broker_fetch

NOBODY = {
    "username": None,
    "first_name": "No",
    "last_name": "Body",
    "entra": {
        "object_id": "a0000000-0000-4000-8000-0000000000f1",
        "user_principal_name": "nobody@contoso.example",
        "mail": "nobody@contoso.example",
        "account_enabled": True,
    },
}


def tenant(**changes: Any) -> dict[str, Any]:
    """The example tenant, without the MFA setup at activation, plus a user with no Defguard
    account; ``not_in_group`` takes that Defguard user out of ``vpn-users``."""
    loaded = example_tenant()
    loaded["instance"]["mfa_required"] = False
    loaded["users"].append(NOBODY)
    leaver = changes.get("not_in_group")
    for group in loaded["groups"]:
        if group["name"] == "vpn-users" and leaver:
            group["members"].remove(leaver)
    return loaded


def run(running: Running, tmp_path: Path, upn: str | None, broker_url: str, *extra: str) -> Result:
    return broker_fetch(
        running, tmp_path, upn, "--source", "broker", "--output", str(tmp_path / "p.json"),
        *extra, broker_url=broker_url,
    )  # fmt: skip


def issued_hashes(running: Running, username: str) -> set[str]:
    return {token["token_sha256"] for token in running.tokens(username)}


def test_the_broker_mints_the_users_token_and_the_file_is_the_usual_one(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    with sandbox_broker(running.info) as broker_url:
        result = run(running, tmp_path, "jdoe@contoso.example", broker_url)
    assert result.exit_code == 0, result.output
    output = tmp_path / "p.json"
    document = json.loads(output.read_text("utf-8"))
    assert list(document) == ["enrollment_url", "enrollment_token"]
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    config = read(output)
    digest = hashlib.sha256(config.enrollment_token.encode()).hexdigest()
    assert digest in issued_hashes(running, "jdoe")  # a token Defguard issued, for jdoe
    assert config.enrollment_token not in result.output


def test_the_attribute_set_stays_untouched(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    """Nothing is stored: the directory holds no token after the broker path."""
    running = start_sandbox(tenant())
    with sandbox_broker(running.info) as broker_url:
        assert run(running, tmp_path, "jdoe@contoso.example", broker_url).exit_code == 0
    assert running.sandbox.entra is not None
    for user in running.sandbox.entra.users.values():
        assert "Defguard" not in (user.custom_security_attributes or {}), user.user_principal_name


REFUSALS = [
    # (what, tenant changes, who signs in, broker overrides, scope, status, exit, words)
    ("a Graph token", {}, "jdoe@contoso.example", {}, "https://graph.microsoft.com/User.Read",
     401, 2, "your sign-in was not accepted"),
    ("not in the group", {"not_in_group": "jdoe"}, "jdoe@contoso.example", {}, None,
     403, 1, "add you to the Defguard group"),
    ("no Defguard user", {}, "nobody@contoso.example", {}, None,
     404, 1, "create your Defguard account"),
    ("two Entra users on one address", {}, "tess@contoso.example", {}, None,
     409, 1, "unique"),
    ("enrolled, refused", {}, "ed@contoso.example", {"enrolled_users": "refuse"}, None,
     403, 1, "add this device from the Defguard desktop client"),
    ("Defguard down", {}, "jdoe@contoso.example", {"defguard_url": closed_port()}, None,
     503, 1, "run again later"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "upn", "overrides", "scope", "status", "exit_status", "words"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_each_refusal_of_the_real_broker(
    start_sandbox: StartSandbox,
    tmp_path: Path,
    changes: dict[str, str],
    upn: str,
    overrides: dict[str, Any],
    scope: str | None,
    status: int,
    exit_status: int,
    words: str,
) -> None:
    running = start_sandbox(tenant(**changes))
    extra = ["--broker-scope", scope] if scope else []
    with sandbox_broker(running.info, **overrides) as broker_url:
        result = run(running, tmp_path, upn, broker_url, *extra)
    assert result.exit_code == exit_status, result.output
    (line,) = [line for line in result.output.splitlines() if "error:" in line]
    assert line.startswith(f"dgprov fetch-config: error: the broker answered {status}: "), line
    assert words in line
    assert not (tmp_path / "p.json").exists()
    assert "eyJ" not in result.output  # no access token


def test_asking_again_at_once_is_refused_and_issues_nothing(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    with sandbox_broker(running.info) as broker_url:
        first = run(running, tmp_path / "1", "jdoe@contoso.example", broker_url)
        assert first.exit_code == 0, first.output
        issued = issued_hashes(running, "jdoe")
        again = run(running, tmp_path / "1", "jdoe@contoso.example", broker_url)
    assert again.exit_code == 1, again.output
    assert "the broker answered 429: you asked for a token moments ago" in again.output
    assert "s and run again" in again.output
    assert issued_hashes(running, "jdoe") == issued  # no second token


def test_through_the_dgprov_broker_command(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    """The broker as deployed: its own process, secrets from the environment; neither side
    prints the access token or the enrollment token."""
    running = start_sandbox(tenant())
    with broker_process(running) as broker:
        result = run(running, tmp_path, "jdoe@contoso.example", broker.url)
        assert result.exit_code == 0, result.output
        token = read(tmp_path / "p.json").enrollment_token
        (audit,) = broker.audit_lines()
        logged = broker.output()
    assert audit["upn"] == "jdoe@contoso.example" and audit["outcome"] == "provisioned"
    assert token not in result.output and token not in logged
    assert "eyJ" not in result.output and "eyJ" not in logged


def test_a_cached_token_from_before_a_key_rotation_is_replaced_silently(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """The authority rotates its signing key and a broker starts that never saw the old one: it
    refuses the cached access token, and fetch-config gets a fresh one through the refresh
    token, with no new sign-in."""
    running = start_sandbox(tenant())
    assert running.sandbox.entra is not None
    info = running.info
    with sandbox_broker(info) as broker_url:
        first = run(running, tmp_path, "jdoe@contoso.example", broker_url)
    assert first.exit_code == 0, first.output
    origin = "/".join(info["authority_url"].split("/")[:3])
    rotated = httpx.post(f"{origin}/_sandbox/rotate-keys", verify=trust(info))
    assert rotated.status_code == 200, rotated.text
    codes = len(running.sandbox.entra.device_codes)
    before = issued_hashes(running, "jdoe")
    with sandbox_broker(info) as broker_url:  # a new replica: only the new key
        again = run(running, tmp_path, None, broker_url)
    assert again.exit_code == 0, again.output
    assert len(running.sandbox.entra.device_codes) == codes and "To sign in" not in again.output
    assert issued_hashes(running, "jdoe") - before  # a new token, minted for the fresh sign-in
