"""``--dry-run`` as a whole preflight that tells the truth, for ``generate-tokens`` and ``sync``:
the plan as a report, exit 1 when the plan already fails members, the lifetime and expiry the
tokens would get, and the write access checked where it can be without writing. Through the
real CLI against the sandbox (Entra) and a real slapd (AD)."""

from __future__ import annotations

import csv
import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import Running, StartSandbox, example_tenant
from ..slapd import (
    PROVISIONER_DN,
    PROVISIONER_PASSWORD,
    READER_DN,
    READER_PASSWORD,
    Slapd,
    effective_rights_slapd,
    slapd,
)
from .test_generate_tokens import Invoker, token_hashes
from .test_generate_tokens_ad import populate, run
from .test_sync import Sync, tenant

__all__ = ["effective_rights_slapd", "slapd"]  # the fixtures
ISSUED_NOW = re.compile(
    r"^lifetime: (\d+) (start_enrollment|start_desktop) tokens? (.*?) (\S+) \((.*)\); issued "
    r"now, (?:it|they) expires? at (\S+)$"
)
ATTRIBUTE = "defguardProvisioningConfig"


@pytest.fixture
def invoke(tmp_path: Path) -> Invoker:
    return Invoker(tmp_path / "cache")


def lifetimes(output: str) -> dict[str, tuple[int, str, str, str, datetime.datetime]]:
    """Per kind of token: (count, what the line says of it, lifetime, source, expiry)."""
    found = {}
    for line in output.splitlines():
        if match := ISSUED_NOW.match(line):
            expiry = datetime.datetime.fromisoformat(match[6].replace("Z", "+00:00"))
            found[match[2]] = (int(match[1]), match[3], match[4], match[5], expiry)
    return found


def near(moment: datetime.datetime, expected: datetime.datetime) -> bool:
    return abs((moment - expected).total_seconds()) < 300


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_a_dry_run_writes_the_plan_as_a_report_and_exits_1_on_failed_members(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path, kind: str
) -> None:
    """The example tenant's twin is ambiguous: the run would fail it, so the dry run exits 1;
    the report has the run's columns, each member to do ``planned`` with its action."""
    running = start_sandbox(example_tenant())
    plan = tmp_path / f"plan.{kind}"
    result = invoke(running, "--dry-run", "--report", str(plan))
    assert result.exit_code == 1, result.output
    assert "failed: twin: ambiguous" in result.output
    if kind == "json":
        document = json.loads(plan.read_text())
        rows = {r["username"]: r for r in document["members"]}
        assert document["run"]["dry_run"] is True and "in_progress" not in document["run"]
        assert document["summary"] == {
            "provisioned": 0,
            "skipped": 4,
            "failed": 1,
            "not_processed": 0,
            "planned": 5,
        }
    else:
        with plan.open(newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == [
                "username", "email", "directory_id", "upn", "action", "outcome", "reason",
                "expires_at",
            ]  # fmt: skip
            rows = {r["username"]: r for r in reader}
    outcomes = {name: (row["action"], row["outcome"]) for name, row in rows.items()}
    assert outcomes["jdoe"] == ("start_enrollment", "planned")
    assert outcomes["pfetch"] == ("start_desktop", "planned")
    assert outcomes["twin"] == ("none", "failed") and "ambiguous" in rows["twin"]["reason"]
    assert outcomes["ghost"] == ("none", "skipped")
    assert not any("in progress" in (row["reason"] or "") for row in rows.values())
    assert token_hashes(running) == {}


def test_a_dry_run_of_a_plan_without_failures_exits_0(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(synthetic_tenant(4, 2))
    result = invoke(running, "--dry-run", "--report", str(tmp_path / "plan.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "plan.json").read_text())["summary"]["planned"] == 4


def test_a_dry_run_shows_the_lifetime_and_the_expiry_the_tokens_get(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path, line: str
) -> None:
    """``start_enrollment`` tokens get the lifetime asked for; ``start_desktop`` tokens get
    Defguard's default instead, which 2.0's settings state (72h here) and 1.6 does not show."""
    document = example_tenant()
    document["settings"]["enrollment_token_timeout_hours"] = 72
    running = start_sandbox(document, line)
    plan = tmp_path / "plan.json"
    result = invoke(
        running, "--dry-run", "--enrollment-token-expiration-time", "2w", "--report", str(plan)
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    assert result.exit_code == 1, result.output
    shown = lifetimes(result.output)
    count, says, lifetime, source, expiry = shown["start_enrollment"]
    assert (count, says, lifetime) == (3, "last", "2w")
    assert source == "--enrollment-token-expiration-time"
    assert near(expiry, now + datetime.timedelta(weeks=2))
    count, says, lifetime, source, desktop_expiry = shown["start_desktop"]
    assert count == 2 and "get Defguard's default lifetime instead of" in says
    if line == "2.0":
        assert (lifetime, source) == ("3d", "Defguard's settings")
        assert near(desktop_expiry, now + datetime.timedelta(hours=72))
    else:
        assert lifetime == "1d" and "does not show" in source
    rows = {r["username"]: r for r in json.loads(plan.read_text())["members"]}
    assert rows["jdoe"]["expires_at"] == expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert rows["pfetch"]["expires_at"] == desktop_expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert token_hashes(running) == {}


def test_on_entra_the_dry_run_says_the_canary_checks_the_write_access(
    start_sandbox: StartSandbox, invoke: Invoker
) -> None:
    running = start_sandbox(example_tenant())
    result = invoke(running, "--dry-run")
    assert (
        "write access: not checked; Entra ID has no way to prove it without writing, so a run "
        "writes its first member alone (the canary) and stops there if refused"
    ) in result.output


# ------------------------------------------------------------------------------------- AD


def ad(
    running: Running,
    server: Slapd,
    *extra: str,
    command: str = "generate-tokens",
    bind_dn: str = PROVISIONER_DN,
    password: str = PROVISIONER_PASSWORD,
    dry_run: bool = True,
) -> Result:
    """``command --directory ad`` in-process, by default a dry run."""
    dry = ["--dry-run"] if dry_run else []
    return run(running, server, *dry, *extra, command=command, bind_dn=bind_dn, password=password)


@pytest.mark.parametrize("command", ["generate-tokens", "sync"])
def test_where_the_directory_cannot_answer_the_dry_run_says_the_run_will_check(
    start_sandbox: StartSandbox, slapd: Slapd, command: str
) -> None:
    """OpenLDAP computes no ``allowedAttributesEffective``: not even an account that may not
    write can be told apart without writing, and the dry run says who will check, and how."""
    running = start_sandbox(example_tenant())
    dns = populate(slapd)
    for bind_dn, password in ((PROVISIONER_DN, PROVISIONER_PASSWORD), (READER_DN, READER_PASSWORD)):
        result = ad(running, slapd, command=command, bind_dn=bind_dn, password=password)
        assert result.exit_code == 0, result.output
        assert (
            f"write access to '{ATTRIBUTE}': not checked; this directory does not answer "
            "allowedAttributesEffective (Active Directory does), so a run checks it before its "
            f"first token, with a write that changes nothing on {dns['jdoe']}"
        ) in " ".join(result.output.split())
    assert token_hashes(running) == {}


@pytest.mark.parametrize("command", ["generate-tokens", "sync"])
def test_where_the_directory_answers_the_dry_run_reads_the_effective_rights(
    start_sandbox: StartSandbox, effective_rights_slapd: Slapd, tmp_path: Path, command: str
) -> None:
    """As Active Directory does: the provisioning account reads that it may write the
    attribute on the first member's object; an account that may not is refused, exit 2, with
    no report and nothing written anywhere."""
    server = effective_rights_slapd
    running = start_sandbox(example_tenant())
    dns = populate(server)
    for dn in dns.values():
        server.answer_effective_rights(dn, ["description", ATTRIBUTE])
    allowed = ad(running, server, command=command)
    assert allowed.exit_code == 0, allowed.output
    assert (
        f"write access to '{ATTRIBUTE}': allowedAttributesEffective on {dns['jdoe']} lists it"
        in allowed.output
    )
    plan = tmp_path / "plan.json"
    refused = ad(
        running,
        server,
        "--report",
        str(plan),
        command=command,
        bind_dn=READER_DN,
        password=READER_PASSWORD,
    )
    assert refused.exit_code == 2, refused.output
    assert (
        f"error: the bind account may not write '{ATTRIBUTE}' (allowedAttributesEffective on "
        f"{dns['jdoe']} omits it): grant it that right on the user objects"
    ) in " ".join(refused.output.split())
    assert not plan.exists()
    assert token_hashes(running) == {}
    assert all(server.read(dn, ATTRIBUTE) is None for dn in dns.values())


# ----------------------------------------------------------------------------------- sync


def test_a_sync_dry_run_writes_its_decisions_as_a_report(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    plan = tmp_path / "plan.json"
    result = sync("--dry-run", "--report", str(plan), "--enrollment-token-expiration-time", "3d")
    now = datetime.datetime.now(datetime.timezone.utc)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(plan.read_text())
    assert document["run"]["dry_run"] is True and document["run"]["command"] == "sync"
    assert {(r["decision"], r["outcome"]) for r in document["members"]} == {("issue", "planned")}
    assert document["summary"]["outcome"]["planned"] == 4
    assert document["summary"]["outcome"]["failed"] == 0
    count, _, lifetime, _, expiry = lifetimes(result.output)["start_enrollment"]
    assert (count, lifetime) == (4, "3d") and near(expiry, now + datetime.timedelta(days=3))
    assert token_hashes(running) == {}


def test_a_sync_dry_run_exits_1_when_the_plan_fails_members(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    document = tenant()
    users = {u["username"]: u for u in document["users"]}
    users["user0002"]["email"] = users["user0001"]["email"]  # two members, one Entra object
    running = start_sandbox(document)
    result = Sync(running, tmp_path)("--dry-run")
    assert result.exit_code == 1, result.output
    assert "failed: user0001: Defguard members user0001 and user0002 map to the same" in (
        result.output
    )
    assert token_hashes(running) == {}
