"""``dgprov generate-tokens`` end to end: the real CLI, real HTTP, real MSAL, the sandbox."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from dgprov_sandbox.http_common import FaultSettings
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.cli import main

from ..conftest import (
    DISABLED_ADMIN_TOKEN,
    Running,
    StartSandbox,
    example_tenant,
    graph_client,
    sign_in,
)

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9]{32}")
EXPECTED = {
    "jdoe": ("start_enrollment", "provisioned"),
    "obrien": ("start_enrollment", "provisioned"),  # apostrophe, + and mixed case
    "mlopez": ("start_enrollment", "provisioned"),  # found only through otherMails
    "ghost": ("none", "skipped"),  # no Entra user
    "twin": ("none", "failed"),  # two Entra users share the address
    "dora": ("none", "skipped"),  # disabled in Defguard
    "nomail": ("none", "skipped"),  # no e-mail in Defguard
    "pfetch": ("start_desktop", "provisioned"),  # prefetched from Entra: enrolled
    "enrolled": ("start_desktop", "provisioned"),
    "ldapuser": ("none", "skipped"),
}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cli_args(running: Running, *extra: str, group: str = "vpn-users") -> list[str]:
    info = running.info
    return [
        "generate-tokens",
        "--url", info["defguard_url"],
        "--group-name", group,
        "--authority", info["authority_url"],
        "--graph-url", info["graph_url"],
        "--ca-bundle", info["ca_bundle"],
        "--tenant", info["tenant_id"],
        "--client-id", info["client_id"],
        "--auth", "device-code",
        "--yes",
        *extra,
    ]  # fmt: skip


def environment(running: Running, cache: Path, api_token: str | None = None) -> dict[str, str]:
    return {
        "DEFGUARD_API_TOKEN": api_token or running.info["api_token"],
        "DGPROV_CACHE_DIR": str(cache),
    }


class Invoker:
    """Runs the CLI in-process against a sandbox, signing in as its admin; one cache per test."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache

    def __call__(
        self, running: Running, *extra: str, api_token: str | None = None, group: str = "vpn-users"
    ) -> Result:
        assert running.sandbox.entra is not None
        running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
        return CliRunner().invoke(
            main,
            cli_args(running, *extra, group=group),
            env=environment(running, self.cache, api_token),
        )


@pytest.fixture
def invoke(tmp_path: Path) -> Invoker:
    return Invoker(tmp_path / "cache")


def token_hashes(running: Running) -> dict[str, set[str]]:
    hashes: dict[str, set[str]] = {}
    for token in running.anonymous.get("/_sandbox/tokens").json()["tokens"]:
        hashes.setdefault(token["username"], set()).add(token["token_sha256"])
    return hashes


def stored_attributes(running: Running, upn: str) -> Any:
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    return admin.get(f"/users/{upn}", params={"$select": "customSecurityAttributes"}).json()[
        "customSecurityAttributes"
    ]


def assert_no_token_in(text: str, running: Running) -> None:
    issued = {h for hashes in token_hashes(running).values() for h in hashes}
    leaked = [c for c in TOKEN_PATTERN.findall(text) if sha(c) in issued]
    assert not leaked, "an enrollment token appeared in the output"
    assert running.info["api_token"] not in text


def test_whole_flow_on_both_lines(
    start_sandbox: StartSandbox,
    invoke: Invoker,
    line: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    running = start_sandbox(example_tenant(), line)
    report = tmp_path / "report.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 1, result.output  # the ambiguous twin fails by design
    document = json.loads(report.read_text())
    rows = {row["username"]: row for row in document["members"]}
    assert {name: (row["action"], row["outcome"]) for name, row in rows.items()} == EXPECTED
    assert document["summary"] == {
        "provisioned": 5,
        "skipped": 4,
        "failed": 1,
        "not_processed": 0,
    }
    assert list(rows["jdoe"]) == [
        "username",
        "email",
        "directory_id",
        "upn",
        "action",
        "outcome",
        "reason",
        "expires_at",
    ]
    assert rows["mlopez"]["upn"] == "mlopez@contoso.example"
    assert "ambiguous" in rows["twin"]["reason"]
    # Tokens only for members found in Entra; Entra holds exactly what Defguard issued.
    hashes = token_hashes(running)
    assert set(hashes) == {"jdoe", "obrien", "mlopez", "pfetch", "enrolled"}
    for name in ("jdoe", "obrien", "pfetch"):
        values = stored_attributes(running, rows[name]["upn"])["Defguard"]
        assert values["EnrollmentUrl"] == running.info["proxy_url"] + "/"
        assert hashes[name] == {sha(values["EnrollmentToken"])}
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert_no_token_in(result.output + report.read_text() + caplog.text, running)
    assert caplog.records  # the scan saw the log (MSAL and dgprov log at DEBUG)


def test_csv_report_and_tokens_only_on_request(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    report = tmp_path / "report.csv"
    invoke(running, "--report", str(report))
    header = report.read_text().splitlines()[0]
    assert header == "username,email,directory_id,upn,action,outcome,reason,expires_at"
    with_tokens = tmp_path / "tokens.json"
    result = invoke(running, "--report", str(with_tokens), "--include-tokens-in-report")
    rows = {r["username"]: r for r in json.loads(with_tokens.read_text())["members"]}
    assert sha(rows["jdoe"]["enrollment_token"]) in token_hashes(running)["jdoe"]
    assert stat.S_IMODE(with_tokens.stat().st_mode) == 0o600
    assert_no_token_in(result.output, running)


def test_dry_run_changes_nothing(start_sandbox: StartSandbox, invoke: Invoker) -> None:
    running = start_sandbox(example_tenant())
    result = invoke(running, "--dry-run")
    assert result.exit_code == 1  # the ambiguous twin
    assert "jdoe" in result.stdout and "start_enrollment" in result.stdout
    assert "5 tokens would be issued" in result.output
    assert token_hashes(running) == {}


def test_enrolled_users_skip_and_custom_lifetime(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    report = tmp_path / "r.json"
    invoke(
        running,
        "--enrolled-users",
        "skip",
        "--enrollment-token-expiration-time",
        "2w",
        "--report",
        str(report),
    )
    rows = {r["username"]: r for r in json.loads(report.read_text())["members"]}
    assert rows["pfetch"]["outcome"] == rows["enrolled"]["outcome"] == "skipped"
    token = running.anonymous.get("/_sandbox/tokens", params={"username": "jdoe"}).json()["tokens"][
        0
    ]
    lifetime = time_between(token["created_at"], token["expires_at"])
    assert lifetime == 14 * 86400


def time_between(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def test_undefined_attribute_set_stops_before_any_token(
    start_sandbox: StartSandbox, invoke: Invoker
) -> None:
    tenant = example_tenant()
    tenant["entra"]["attribute_sets"] = [
        s for s in tenant["entra"]["attribute_sets"] if s["id"] != "Defguard"
    ]
    running = start_sandbox(tenant)
    result = invoke(running)
    assert result.exit_code == 2
    assert (
        "Defguard.EnrollmentUrl" in result.output
        and "Attribute Definition Administrator" in result.output
    )
    assert token_hashes(running) == {}


@pytest.mark.parametrize("empty_patch", ["checked", "unchecked", "rejected"])
def test_an_account_that_may_not_write_stops_after_one_member(
    start_sandbox: StartSandbox, invoke: Invoker, empty_patch: str
) -> None:
    """Graph has no documented write probe, so the first member, written alone, is the proof:
    an admin who can read the definitions but not assign attributes costs one token, no more,
    whatever Graph does with an empty attribute-set PATCH (the sandbox's G1 switch)."""
    running = start_sandbox(example_tenant(), empty_attribute_patch=empty_patch)
    assert running.sandbox.entra is not None
    admin = next(
        u
        for u in running.sandbox.entra.users.values()
        if u.user_principal_name == running.info["admin_upn"]
    )
    admin.directory_roles = {"User Administrator", "Attribute Assignment Reader"}
    result = invoke(running)
    assert result.exit_code == 2, result.output
    assert "refused the first write (403" in result.output
    assert "Attribute Assignment Administrator" in result.output
    assert len(token_hashes(running)) == 1
    assert_no_token_in(result.output, running)


@pytest.mark.parametrize("empty_patch", ["checked", "unchecked", "rejected"])
def test_an_account_that_may_write_is_never_stopped_by_the_preflight(
    start_sandbox: StartSandbox, invoke: Invoker, empty_patch: str
) -> None:
    running = start_sandbox(example_tenant(), empty_attribute_patch=empty_patch)
    result = invoke(running)
    assert result.exit_code == 1, result.output  # the tenant's one deliberate ambiguous member
    assert "refused the first write" not in result.output
    assert len(token_hashes(running)) == 5  # every member with a unique directory object


def test_enrollment_url_over_64_characters(start_sandbox: StartSandbox, invoke: Invoker) -> None:
    tenant = example_tenant()
    long_url = "https://enrollment-proxy.with-a-very-long-host-name.corp.contoso.example"
    tenant["settings"]["public_proxy_url"] = long_url
    running = start_sandbox(tenant)
    stated = invoke(running, "--enrollment-url", long_url + "/")
    assert stated.exit_code == 2 and "at most 64" in stated.output
    assert token_hashes(running) == {}
    discovered = invoke(running)
    assert discovered.exit_code == 2 and "at most 64" in discovered.output
    assert sum(len(h) for h in token_hashes(running).values()) == 1  # the canary only


@pytest.mark.parametrize(
    ("api_token", "message"),
    [
        (DISABLED_ADMIN_TOKEN, "refused the API token"),
        ("dg-ThisTokenWasNeverIssuedByDefguard00", "refused the API token"),
    ],
)
def test_refused_api_tokens(
    start_sandbox: StartSandbox, invoke: Invoker, api_token: str, message: str
) -> None:
    running = start_sandbox(example_tenant())
    result = invoke(running, api_token=api_token)
    assert result.exit_code == 2 and message in result.output
    assert api_token not in result.output


def test_licence_gate_is_explained(start_sandbox: StartSandbox, invoke: Invoker) -> None:
    tenant = example_tenant()
    tenant["license"] = None
    running = start_sandbox(tenant, "2.0")
    result = invoke(running)
    assert result.exit_code == 2 and "no Business licence is active" in result.output


def test_unknown_group(start_sandbox: StartSandbox, invoke: Invoker) -> None:
    running = start_sandbox(example_tenant())
    result = invoke(running, group="VPN-Users")
    assert (
        result.exit_code == 2
        and "no group named 'VPN-Users'" in result.output
        and "vpn-users" in result.output
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--enrollment-token-expiration-time", "24"], "not a duration Defguard accepts"),
        (["--report", "r.txt"], "must end in .json or .csv"),
        (["--include-tokens-in-report"], "needs --report"),
    ],
)
def test_usage_errors(
    start_sandbox: StartSandbox, invoke: Invoker, extra: list[str], message: str
) -> None:
    running = start_sandbox(example_tenant())
    result = invoke(running, *extra)
    assert result.exit_code == 2 and message in result.output
    assert token_hashes(running) == {}


def test_plain_http_only_on_loopback_and_token_required(tmp_path: Path) -> None:
    remote = CliRunner().invoke(
        main,
        [
            "generate-tokens",
            "--url",
            "http://defguard.example.com",
            "--group-name",
            "g",
            "--tenant",
            "t",
            "--client-id",
            "c",
        ],
        env={"DEFGUARD_API_TOKEN": "x"},
    )
    assert remote.exit_code == 2 and "use https" in remote.output
    missing = CliRunner().invoke(
        main,
        [
            "generate-tokens",
            "--url",
            "https://defguard.example.com",
            "--group-name",
            "g",
            "--tenant",
            "t",
            "--client-id",
            "c",
        ],
        env={"DEFGUARD_API_TOKEN": ""},
    )
    assert missing.exit_code == 2 and "set DEFGUARD_API_TOKEN" in missing.output


def test_api_token_on_the_command_line_warns(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant())
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]  # type: ignore[union-attr]
    args = cli_args(running, "--api-token", running.info["api_token"], "--dry-run")
    result = CliRunner().invoke(
        main, args, env={"DEFGUARD_API_TOKEN": "", "DGPROV_CACHE_DIR": str(tmp_path)}
    )
    assert result.exit_code == 1 and "visible to other users" in result.output


def test_second_run_signs_in_silently(start_sandbox: StartSandbox, invoke: Invoker) -> None:
    running = start_sandbox(example_tenant())
    assert invoke(running, "--dry-run").exit_code == 1  # the ambiguous twin
    assert running.sandbox.entra is not None
    codes_before = len(running.sandbox.entra.device_codes)
    second = CliRunner().invoke(
        main, cli_args(running, "--dry-run"), env=environment(running, invoke.cache)
    )
    assert second.exit_code == 1 and "To sign in" not in second.output
    assert len(running.sandbox.entra.device_codes) == codes_before


def test_client_secret_sign_in(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant())
    info = running.info
    args = [a for a in cli_args(running) if a not in ("device-code",)]
    args[args.index("--client-id") + 1] = info["confidential_client_id"]
    args[args.index("--auth") + 1 : args.index("--auth") + 1] = ["client-secret"]
    result = CliRunner().invoke(
        main,
        args,
        env={**environment(running, tmp_path), "DGPROV_CLIENT_SECRET": info["client_secret"]},
    )
    assert result.exit_code == 1, result.output
    assert "5 provisioned" in " ".join(result.stdout.split()) or " 5\n" in result.stdout
    assert info["client_secret"] not in result.output


def test_browser_sign_in_with_a_headless_browser(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    info = running.info
    running.sandbox.entra.auto_approve_upn = info["admin_upn"]  # type: ignore[union-attr]
    args = cli_args(running, "--dry-run")
    args[args.index("--auth") + 1] = "browser"
    browser = f"{sys.executable} -m dgprov_sandbox.headless_browser --cafile {info['ca_bundle']} %s"
    completed = subprocess.run(
        [sys.executable, "-m", "dgprov", *args],
        env={**os.environ, **environment(running, tmp_path), "BROWSER": browser},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 1, completed.stderr  # the ambiguous twin
    assert "5 tokens would be issued" in completed.stderr


# ----------------------------------------------------------------- resilience and interruption


def test_throttling_and_faults_still_provision_everyone(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path, line: str
) -> None:
    tenant = synthetic_tenant(120, 5)
    # Defguard's own limiter (upstream: one request per n seconds) has its own test,
    # test_defguard_rate_limit.py; here Graph's throttling and injected faults are the trouble.
    tenant["settings"].update(rate_limit_per_second=0, rate_limit_burst=0)
    running = start_sandbox(
        tenant,
        line,
        faults=FaultSettings(error_rate=0.15, drop_rate=0.1, seed=11),
        throttle="documented",
        quota_scale=0.01,
        time_scale=0.01,
    )
    report = tmp_path / "r.json"
    result = invoke(running, "--report", str(report), "--concurrency", "32")
    document = json.loads(report.read_text())
    assert result.exit_code == 0, document["summary"]
    assert document["summary"] == {
        "provisioned": 120,
        "skipped": 0,
        "failed": 0,
        "not_processed": 0,
    }
    graph_counts = httpx.get(
        running.info["graph_url"].replace("/v1.0", "/_sandbox/requests"), verify=False
    ).json()["requests"]
    assert (
        sum(v for k, v in graph_counts.items() if k.startswith("$batch PATCH")) > 120
    )  # 429s retried


def test_interrupt_and_resume(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(synthetic_tenant(60, 6), faults=FaultSettings(latency_ms=40))
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]  # type: ignore[union-attr]
    report = tmp_path / "first.json"
    env = {**os.environ, **environment(running, tmp_path / "cache")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dgprov",
            *cli_args(running, "--report", str(report), "--concurrency", "2"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while sum(len(h) for h in token_hashes(running).values()) < 6:
        assert time.monotonic() < deadline and process.poll() is None, "the run ended or stalled"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "interrupted" in stderr
    first = json.loads(report.read_text())
    assert first["run"]["interrupted"] is True
    done = {r["username"] for r in first["members"] if r["outcome"] == "provisioned"}
    assert 0 < len(done) < 60
    assert all(r["outcome"] in ("provisioned", "failed") for r in first["members"])
    before = token_hashes(running)

    second_report = tmp_path / "second.json"
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dgprov",
            *cli_args(running, "--report", str(second_report), "--resume", str(report)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    second = {r["username"]: r for r in json.loads(second_report.read_text())["members"]}
    assert {second[name]["outcome"] for name in done} == {"skipped"}
    assert all(second[n]["outcome"] == "provisioned" for n in second if n not in done)
    after = token_hashes(running)
    assert all(after[name] == before[name] for name in done)  # nobody done was re-issued
    assert_no_token_in(
        stdout + stderr + resumed.stdout + resumed.stderr + report.read_text(), running
    )


def test_certificate_sign_in(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    from ..conftest import make_certificate

    key, certificate = make_certificate()
    tenant = example_tenant()
    tenant["entra"]["applications"][1]["certificates"].append(certificate)
    running = start_sandbox(tenant)
    pem = tmp_path / "app.pem"
    pem.write_text(key + certificate)
    args = cli_args(running, "--dry-run", "--client-certificate", str(pem))
    args[args.index("--client-id") + 1] = running.info["confidential_client_id"]
    args[args.index("--auth") + 1] = "certificate"
    result = CliRunner().invoke(main, args, env=environment(running, tmp_path))
    assert result.exit_code == 1, result.output  # the ambiguous twin
    assert "5 tokens would be issued" in result.output
    broken = tmp_path / "broken.pem"
    broken.write_text(certificate)
    args[args.index("--client-certificate") + 1] = str(broken)
    refused = CliRunner().invoke(main, args, env=environment(running, tmp_path))
    assert refused.exit_code == 2 and "both the private key and the certificate" in refused.output


# ------------------------------------------------------- admin job correctness (issue 10, 5-10)


def core_requests(running: Running) -> dict[str, int]:
    """Requests Defguard core received, per route."""
    counts: dict[str, int] = running.anonymous.get("/_sandbox/requests").json()["requests"]
    return counts


START_ENROLLMENT = "POST /api/v1/user/{username}/start_enrollment"


def report_rows(path: Path) -> dict[str, dict[str, Any]]:
    return {row["username"]: row for row in json.loads(path.read_text())["members"]}


def test_members_sharing_one_entra_object_get_no_token(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    """A second Defguard account whose e-mail differs from jdoe's only in case maps to jdoe's
    Entra object: storing both tokens there would let John enroll as the other account."""
    tenant = example_tenant()
    tenant["users"].append(
        {
            "username": "jdoe.alt",
            "first_name": "J",
            "last_name": "Doe",
            "email": "JDoe@Contoso.example",
        }
    )
    tenant["groups"][1]["members"].append("jdoe.alt")
    running = start_sandbox(tenant)
    report = tmp_path / "r.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 1, result.output
    rows = report_rows(report)
    for name in ("jdoe", "jdoe.alt"):
        assert (rows[name]["action"], rows[name]["outcome"]) == ("none", "failed")
        assert rows[name]["reason"].startswith(
            "Defguard members jdoe and jdoe.alt map to the same Entra ID object "
            "a0000000-0000-4000-8000-000000000002,"
        )
    assert rows["obrien"]["outcome"] == "provisioned"
    issued = token_hashes(running)
    assert "jdoe" not in issued and "jdoe.alt" not in issued
    assert "Defguard" not in stored_attributes(running, "jdoe@contoso.example")
    assert "failed: jdoe: Defguard members jdoe and jdoe.alt" in result.output


def test_disabled_entra_accounts_are_skipped_unless_included(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    tenant = example_tenant()
    jdoe = next(u for u in tenant["users"] if u["username"] == "jdoe")
    jdoe["entra"]["account_enabled"] = False
    running = start_sandbox(tenant)
    report = tmp_path / "r.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 1, result.output  # the ambiguous twin
    rows = report_rows(report)
    assert (rows["jdoe"]["outcome"], rows["jdoe"]["reason"]) == (
        "skipped",
        "the Entra ID account is disabled; no token issued (pass "
        "--include-disabled-directory-users to provision disabled accounts too)",
    )
    assert rows["obrien"]["outcome"] == "provisioned"
    assert "jdoe" not in token_hashes(running)
    included = tmp_path / "included.json"
    invoke(running, "--include-disabled-directory-users", "--report", str(included))
    assert report_rows(included)["jdoe"]["outcome"] == "provisioned"
    assert "jdoe" in token_hashes(running)


@pytest.mark.parametrize(
    ("lifetime", "said"),
    [
        ("0", "is zero"),
        ("0s", "is zero"),
        ("1ns", "is shorter than a minute"),
        ("30s", "is shorter than a minute"),
        ("11y", "is longer than 10 years"),
    ],
)
def test_lifetimes_out_of_bounds_are_refused_before_anything_is_sent(
    start_sandbox: StartSandbox, invoke: Invoker, lifetime: str, said: str
) -> None:
    """Defguard would issue these (and panic on huge ones); dgprov refuses them locally."""
    running = start_sandbox(example_tenant())
    result = invoke(running, "--enrollment-token-expiration-time", lifetime)
    assert result.exit_code == 2, result.output
    assert f"--enrollment-token-expiration-time {lifetime!r} {said}" in result.output
    assert core_requests(running) == {}


def test_stated_enrollment_url_that_differs_stops_after_one_token(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    report = tmp_path / "r.json"
    result = invoke(
        running, "--enrollment-url", "https://vpn.contoso.example", "--report", str(report)
    )
    assert result.exit_code == 2, result.output
    actual = running.info["proxy_url"] + "/"
    assert (
        f"Defguard hands out the enrollment URL {actual}, not the --enrollment-url "
        "https://vpn.contoso.example" in result.output
    )
    issued = token_hashes(running)
    assert sum(len(h) for h in issued.values()) == 1  # the first member's only
    (first,) = issued
    rows = report_rows(report)
    assert rows[first]["outcome"] == "failed"
    assert rows[first]["reason"].endswith("the token was issued but not stored")
    assert "Defguard" not in (stored_attributes(running, rows[first]["upn"]) or {})
    untouched = [r for n, r in rows.items() if r["action"] != "none" and n != first]
    assert untouched and {r["reason"] for r in untouched} == {
        "not processed: the run stopped before this member"
    }


def test_stated_enrollment_url_without_its_trailing_slash_matches(
    start_sandbox: StartSandbox, invoke: Invoker
) -> None:
    running = start_sandbox(example_tenant())
    result = invoke(running, "--enrollment-url", running.info["proxy_url"])
    assert result.exit_code == 1, result.output  # the ambiguous twin only
    assert set(token_hashes(running)) == {"jdoe", "obrien", "mlopez", "pfetch", "enrolled"}


def test_report_under_a_file_stops_before_defguard_is_contacted(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    blocker = tmp_path / "reports"
    blocker.write_text("")
    result = invoke(running, "--report", str(blocker / "r.json"))
    assert result.exit_code == 2, result.output
    assert f"{blocker} is a file, not a directory" in result.output
    assert core_requests(running) == {}


def test_an_existing_report_is_not_overwritten_unless_asked(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    report = tmp_path / "r.json"
    report.write_text('{"the": "record of an earlier run"}')
    refused = invoke(running, "--report", str(report))
    assert refused.exit_code == 2
    assert f"--report {report} already exists" in refused.output
    assert "--overwrite-report" in refused.output
    assert core_requests(running) == {}
    assert report.read_text() == '{"the": "record of an earlier run"}'
    replaced = invoke(running, "--report", str(report), "--overwrite-report")
    assert replaced.exit_code == 1, replaced.output
    assert report_rows(report)["jdoe"]["outcome"] == "provisioned"


@pytest.fixture
def throwaway_user() -> Iterator[pwd.struct_passwd]:
    """A real unprivileged account, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a throwaway user needs root")
    name = f"dgp{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


AS_USER = """
import os, sys
import dgprov.cli, dgprov.commands.generate_tokens, tempfile  # before giving up root's files
uid, gid = int(sys.argv[1]), int(sys.argv[2])
os.setgroups([]); os.setgid(gid); os.setuid(uid)
sys.argv = ["dgprov", *sys.argv[3:]]
dgprov.cli.main()
"""


def test_report_directory_the_user_cannot_write_stops_the_run_first(
    start_sandbox: StartSandbox, throwaway_user: pwd.struct_passwd
) -> None:
    """The admin's account may not create files there: found before Defguard is contacted.

    The interpreter lives under root's private home, so the command starts as root, loads
    dgprov and drops to the throwaway user for good before it parses a single option.
    """
    running = start_sandbox(example_tenant())
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]  # type: ignore[union-attr]
    locked = Path(tempfile.mkdtemp(prefix="dgprov-locked-"))  # root's, readable by everyone
    locked.chmod(0o755)
    cache = Path(tempfile.mkdtemp(prefix="dgprov-cache-"))
    os.chown(cache, throwaway_user.pw_uid, throwaway_user.pw_gid)
    user = [str(throwaway_user.pw_uid), str(throwaway_user.pw_gid)]
    args = cli_args(running, "--report", str(locked / "r.json"))
    ca_bundle = cache / "ca.pem"  # the sandbox keeps its own in a directory only root may read
    shutil.copyfile(running.info["ca_bundle"], ca_bundle)
    args[args.index("--ca-bundle") + 1] = str(ca_bundle)
    try:
        completed = subprocess.run(
            [sys.executable, "-c", AS_USER, *user, *args],
            env={**os.environ, **environment(running, cache), "HOME": throwaway_user.pw_dir},
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(locked)
        shutil.rmtree(cache)
    assert completed.returncode == 2, completed.stderr
    assert f"cannot create files in {locked} (Permission denied)" in completed.stderr
    assert core_requests(running) == {}


def run_in_background(running: Running, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]  # type: ignore[union-attr]
    return subprocess.Popen(
        [sys.executable, "-m", "dgprov", *cli_args(running, *extra)],
        env={**os.environ, **environment(running, tmp_path / "cache")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def readable_report(path: Path) -> dict[str, Any] | None:
    """The report as it is now (each version replaces the last atomically), or None."""
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded


def test_a_killed_run_leaves_a_report_that_tells_the_truth(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """SIGKILL (or a crash, or a power cut) mid-run: the report on disk names every member
    provisioned until a moment before, the rest "in progress", and --resume from it re-issues
    nobody it names provisioned."""
    running = start_sandbox(synthetic_tenant(200, 7), faults=FaultSettings(latency_ms=40))
    report = tmp_path / "r.json"
    process = run_in_background(running, tmp_path, "--report", str(report), "--concurrency", "1")
    deadline = time.monotonic() + 60
    while True:
        current = readable_report(report)
        reasons = [(r["outcome"], r["reason"]) for r in (current or {}).get("members", [])]
        if any(o == "provisioned" for o, _ in reasons) and any(
            r.startswith("in progress") for _, r in reasons
        ):
            break
        assert process.poll() is None, "the run ended without a report showing progress"
        assert time.monotonic() < deadline, "no report on disk while the run was going"
        time.sleep(0.05)
    assert process.poll() is None, "the report showed progress only once the run had ended"
    process.kill()
    process.communicate(timeout=30)
    written = json.loads(report.read_text())
    assert written["run"]["in_progress"] is True and "finished_at" not in written["run"]
    rows = {r["username"]: r for r in written["members"]}
    assert len(rows) == 200
    provisioned = {n for n, r in rows.items() if r["outcome"] == "provisioned"}
    before = token_hashes(running)
    assert provisioned <= set(before) and len(before) < 200  # killed well before the end
    unsettled = {rows[n]["reason"] for n in rows if n not in provisioned}
    assert len(unsettled) == 1 and unsettled.pop().startswith("in progress: the run had not")
    assert written["summary"]["failed"] == 200 - len(provisioned)

    resumed = tmp_path / "resumed.json"
    result = CliRunner().invoke(
        main,
        cli_args(running, "--resume", str(report), "--report", str(resumed)),
        env=environment(running, tmp_path / "cache"),
    )
    assert result.exit_code == 0, result.output
    after = token_hashes(running)
    assert all(after[name] == before[name] for name in provisioned)
    assert len(after) == 200


def interrupt_after(process: subprocess.Popen[str], running: Running, tokens: int) -> str:
    """SIGINT once ``tokens`` users hold a token; the run's stderr."""
    deadline = time.monotonic() + 60
    while len(token_hashes(running)) < tokens:
        assert time.monotonic() < deadline and process.poll() is None, "the run ended or stalled"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    return stderr


def test_a_chain_of_interrupted_runs_never_issues_a_second_token(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """Run 1 is interrupted, run 2 resumes from it and is interrupted, run 3 resumes from run 2:
    every member gets exactly one token, and each keeps the one the run that provisioned it
    issued (run 2's report carries run 1's members forward)."""
    running = start_sandbox(synthetic_tenant(60, 6), faults=FaultSettings(latency_ms=40))
    one, two, three = (tmp_path / f"run{n}.json" for n in (1, 2, 3))
    first = run_in_background(running, tmp_path, "--report", str(one), "--concurrency", "2")
    interrupt_after(first, running, 6)
    after_one = token_hashes(running)
    second = run_in_background(
        running, tmp_path, "--resume", str(one), "--report", str(two), "--concurrency", "2"
    )
    interrupt_after(second, running, len(after_one) + 6)
    after_two = token_hashes(running)
    assert len(after_one) < len(after_two) < 60
    result = CliRunner().invoke(
        main,
        cli_args(running, "--resume", str(two), "--report", str(three)),
        env=environment(running, tmp_path / "cache"),
    )
    assert result.exit_code == 0, result.output

    final = token_hashes(running)
    assert len(final) == 60 and all(len(h) == 1 for h in final.values())
    assert sorted(n for n in after_one if after_two[n] != after_one[n]) == []  # run 2
    assert sorted(n for n in after_two if final[n] != after_two[n]) == []  # run 3
    assert core_requests(running)[START_ENROLLMENT] == 60  # one token per member, ever
    rows = report_rows(three)
    by_one = {n for n, r in report_rows(one).items() if r["outcome"] == "provisioned"}
    by_two = {n for n, r in report_rows(two).items() if r["outcome"] == "provisioned"}
    for name, row in rows.items():
        if name in by_one:
            assert row["reason"] == "already provisioned (by the run in run1.json)"
        elif name in by_two:
            assert row["reason"] == "already provisioned (by the run in run2.json)"
        else:
            assert row["outcome"] == "provisioned"


def test_resume_accepts_only_a_json_report_of_the_same_group(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    other_group = tmp_path / "contractors.json"
    assert invoke(running, "--report", str(other_group), group="contractors").exit_code == 0
    refused = invoke(running, "--resume", str(other_group))
    assert refused.exit_code == 2
    assert "its group is 'contractors', this run's is 'vpn-users'" in refused.output
    as_csv = tmp_path / "vpn.csv"
    assert invoke(running, "--report", str(as_csv), "--dry-run").exit_code == 1  # the twin
    as_csv.write_text("username,outcome\njdoe,provisioned\n")
    refused_csv = invoke(running, "--resume", str(as_csv))
    assert refused_csv.exit_code == 2
    assert "resume from the JSON report of the earlier run" in refused_csv.output
    assert token_hashes(running) == {}
