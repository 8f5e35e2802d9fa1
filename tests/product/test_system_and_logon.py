"""``fetch-config`` as SYSTEM, and as the per-user logon action (``--at-logon``).

Wine runs no SYSTEM process, so the decisions are tested here with the Windows calls behind
their seams: as SYSTEM an Entra or broker sign-in is never tried; with the logon action
registered the job is deferred to each user's logon (exit 0), without it the error names the fix
(exit 2); the AD source still runs. ``--at-logon`` works for real against the sandbox.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov import api, fetch, logon_action, windows_accounts
from dgprov.cli import main
from dgprov.client_files import read
from dgprov.entra_auth import EntraSettings
from dgprov.errors import UsageError

from ..conftest import Running, StartSandbox, trust
from .test_fetch_config import fetch as fetch_as
from .test_fetch_config import provision, stored_values

UNREACHABLE = EntraSettings(
    tenant="t", client_id="c", authority="https://127.0.0.1:9/t", auth="device-code"
)


def as_system(registered: bool) -> dict[str, object]:
    return {"as_system": lambda: True, "logon_action_registered": lambda: registered}


@pytest.mark.parametrize("source", ["entra", "broker"])
def test_system_never_signs_in_and_names_the_fix(source: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"running as SYSTEM.*install dgprov's MSI"):
        api.fetch_config(
            source=source,  # type: ignore[arg-type]
            entra=UNREACHABLE,
            broker_url="https://broker.example",
            broker_scope="api://b/Provision",
            output=tmp_path / "p.json",
            **as_system(registered=False),  # type: ignore[arg-type]
        )
    assert not (tmp_path / "p.json").exists()


def test_system_defers_to_the_logon_action(tmp_path: Path) -> None:
    said: list[str] = []
    result = api.fetch_config(
        source="entra",
        entra=UNREACHABLE,  # a sign-in would fail loudly: there is none
        output=tmp_path / "p.json",
        notify=said.append,
        **as_system(registered=True),  # type: ignore[arg-type]
    )
    assert result.source == "deferred" and result.path is None
    assert said == [fetch.DEFERRED_TO_LOGON]


def test_system_decisions_through_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(windows_accounts, "running_as_system", lambda: True)
    monkeypatch.setattr(logon_action, "registered", lambda: True)
    arguments = [
        "fetch-config", "--source", "entra", "--tenant", "t", "--client-id", "c",
        "--authority", "https://127.0.0.1:9/t", "--output", str(tmp_path / "p.json"),
    ]  # fmt: skip
    deferred = CliRunner().invoke(main, arguments)
    assert deferred.exit_code == 0, deferred.output
    assert "left to each user's logon" in deferred.output
    monkeypatch.setattr(logon_action, "registered", lambda: False)
    refused = CliRunner().invoke(main, arguments)
    assert refused.exit_code == 2
    assert refused.output.count("\n") == 1 and "install dgprov's MSI" in refused.output


def test_system_with_the_ad_source_still_reads(tmp_path: Path) -> None:
    """AD reads through the computer account, so SYSTEM goes on (here to the missing options)."""
    with pytest.raises(UsageError) as refused:
        api.fetch_config(source="ad", output=tmp_path / "p.json", **as_system(registered=False))  # type: ignore[arg-type]
    assert "SYSTEM" not in str(refused.value)


def requests_of(running: Running) -> Counter[str]:
    sandbox = running.sandbox
    return sandbox.core_requests + sandbox.authority_requests + graph_requests(running)


def graph_requests(running: Running) -> Counter[str]:
    origin = running.info["graph_url"].rsplit("/", 1)[0]
    routes = httpx.get(f"{origin}/_sandbox/requests", verify=trust(running.info))
    return Counter(routes.json()["requests"])


def test_at_logon_provisions_once_then_sends_nothing(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(synthetic_tenant(2, 31))
    provision(running, tmp_path)
    upn = running.info["user_upns"][0]
    output = tmp_path / "p.json"
    first = fetch_as(running, tmp_path, upn, "--at-logon", "--output", str(output))
    assert first.exit_code == 0, first.output
    assert read(output).enrollment_token == stored_values(running, upn)["EnrollmentToken"]
    marker = tmp_path / "user-cache" / fetch.MARKER_NAME
    assert marker.exists()
    log = tmp_path / "user-cache" / "logs" / "fetch-config.log"
    assert "wrote" in log.read_text("utf-8")
    assert read(output).enrollment_token not in log.read_text("utf-8")
    output.unlink()
    before = requests_of(running)
    second = fetch_as(running, tmp_path, upn, "--at-logon", "--output", str(output))
    assert second.exit_code == 0, second.output
    assert "provisioned before" in second.output
    assert requests_of(running) == before  # not one request anywhere
    assert not output.exists()
