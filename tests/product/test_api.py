"""The library API against the sandbox over HTTP: typed results, callbacks, the README example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dgprov import api
from dgprov.client_files import read
from dgprov.errors import Cancelled, DgprovError, UsageError

from ..conftest import REPO, Running, StartSandbox, example_tenant
from .hostile import hostile, replying
from .test_generate_tokens import token_hashes


def settings_for(running: Running, upn: str) -> api.EntraSettings:
    """Device-code sign-in that the sandbox approves as ``upn``; the cache stays in memory."""
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn
    info = running.info
    return api.EntraSettings(
        tenant=info["tenant_id"],
        client_id=info["client_id"],
        authority=info["authority_url"],
        graph_url=info["graph_url"],
        ca_bundle=info["ca_bundle"],
        auth="device-code",
        persist_cache=False,
    )


def admin_options(running: Running) -> dict[str, Any]:
    return {
        "url": running.info["defguard_url"],
        "group_name": "vpn-users",
        "api_token": running.info["api_token"],
        "entra": settings_for(running, running.info["admin_upn"]),
        "ca_bundle": running.info["ca_bundle"],
    }


def test_readme_example_runs_as_written(start_sandbox: StartSandbox) -> None:
    """The README's library example, executed with the names it leaves to the reader."""
    running = start_sandbox(example_tenant())
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme[readme.index("## Library API") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    printed: list[str] = []
    namespace: dict[str, Any] = {
        "defguard_url": running.info["defguard_url"],
        "api_token": running.info["api_token"],
        "entra_settings": settings_for(running, running.info["admin_upn"]),
        "print": lambda *values: printed.append(" ".join(map(str, values))),
    }
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    record = namespace["record"]
    assert isinstance(record, api.RunRecord)
    assert record.summary["provisioned"] > 0 and record.summary["failed"] == 1  # the ambiguous
    assert any(line.startswith("jdoe start_enrollment provisioned") for line in printed)
    assert set(token_hashes(running)) >= {"jdoe"}


def test_dry_run_returns_the_plan_and_changes_nothing(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    messages: list[str] = []
    record = api.generate_tokens(**admin_options(running), dry_run=True, notify=messages.append)
    assert record.dry_run and record.exit_status == 1  # the plan fails the ambiguous twin
    assert record.pending == sum(1 for m in record.members if m.outcome is None) > 0
    assert record.run["group"] == "vpn-users" and record.run["directory"] == "Entra ID"
    assert any("tokens would be issued" in m for m in messages)
    assert token_hashes(running) == {}


def test_declined_confirmation_issues_nothing(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    asked: list[tuple[int, str]] = []

    def decline(pending: int, directory_name: str) -> bool:
        asked.append((pending, directory_name))
        return False

    with pytest.raises(Cancelled) as caught:
        api.generate_tokens(**admin_options(running), confirm=decline)
    assert caught.value.exit_status == 1
    assert len(asked) == 1 and asked[0][0] > 0 and asked[0][1] == "Entra ID"
    assert token_hashes(running) == {}


def test_progress_reaches_the_total_and_rows_hold_no_token(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    seen: list[tuple[int, int]] = []
    record = api.generate_tokens(
        **admin_options(running), progress=lambda done, total: seen.append((done, total))
    )
    assert seen and seen[-1][0] == seen[-1][1]
    rows = record.rows()
    assert len(rows) == len(record.members)
    assert all("enrollment_token" not in row for row in rows)
    assert record.exit_status == 1  # the deliberate ambiguous member


def test_the_client_side_returns_the_file_and_the_enrolment(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    tenant = example_tenant()
    tenant["instance"]["mfa_required"] = False  # MFA setup at activation needs the desktop app
    running = start_sandbox(tenant)
    api.generate_tokens(**admin_options(running))
    assert running.sandbox.entra is not None
    reader = next(
        u
        for u in running.sandbox.entra.users.values()
        if "Attribute Assignment Reader" in u.directory_roles
    )
    fetched = api.fetch_config(
        source="entra",
        entra=settings_for(running, reader.user_principal_name),
        output=tmp_path / "provisioning.json",
    )
    assert fetched.path == tmp_path / "provisioning.json" and fetched.source == "entra"
    enrolled = api.enroll(
        provisioning_file=fetched.path,
        output_dir=tmp_path / "wg",
        device_name="api-test",
        password=lambda: "Api-Passw0rd!",
        ca_bundle=running.info["ca_bundle"],
    )
    assert enrolled.username == "jdoe"
    assert {c.path.name for c in enrolled.configs} == {"HQ.conf", "Lab.conf"}


def test_errors_carry_the_exit_status_the_cli_would_use() -> None:
    with pytest.raises(UsageError) as caught:
        api.generate_tokens(
            url="http://defguard.example.com", group_name="g", api_token="x", dry_run=True
        )
    assert caught.value.exit_status == 2 and "use https" in str(caught.value)
    with pytest.raises(DgprovError, match="no Entra tenant"):
        api.fetch_config(source="entra", output=Path("/nonexistent/p.json"))


def test_fetch_config_asks_a_broker(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    """``source="broker"``, and ``auto`` with a broker given, without detecting the join."""
    running = start_sandbox(example_tenant())
    answer = {"enrollment_url": "https://enroll.contoso.example/", "enrollment_token": "T0ken"}

    def never() -> Any:
        raise AssertionError("the join was detected although a broker was given")

    with hostile(replying(200, answer)) as broker:
        for source in ("broker", "auto"):
            fetched = api.fetch_config(
                source=source,
                entra=settings_for(running, "jdoe@contoso.example"),
                broker_url=broker.url,
                broker_scope=running.info["broker_scope"],
                output=tmp_path / f"{source}.json",
                detect_join=never,
            )
            assert fetched.source == "broker" and fetched.path == tmp_path / f"{source}.json"
            assert read(fetched.path).enrollment_token == "T0ken"
    assert len(broker.received) == 2
    with pytest.raises(UsageError, match="needs --broker-url") as caught:
        api.fetch_config(source="broker", output=tmp_path / "none.json")
    assert caught.value.exit_status == 2 and not (tmp_path / "none.json").exists()
