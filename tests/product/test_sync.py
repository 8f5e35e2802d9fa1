"""``dgprov sync`` end to end on both Defguard lines: the real CLI, real HTTP, real MSAL, the
Entra and Graph emulators, and real enrollment through the sandbox proxy."""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov import client_files
from dgprov.cli import main
from dgprov.host_lock import host_lock

from ..conftest import Running, StartSandbox, example_tenant, graph_client, sign_in, trust

MEMBERS = [f"user000{n}" for n in range(1, 6)]
U1, U2, U3, U4, U5 = MEMBERS
PASSWORD = "Str0ng-Passw0rd!"
HOUR = 3600.0


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def tenant() -> dict[str, Any]:
    """Five active members, none enrolled, each with an Entra account; the fifth not yet in the
    group (tests add it later)."""
    document: dict[str, Any] = synthetic_tenant(5, seed=12)
    group = next(g for g in document["groups"] if g["name"] == "vpn-users")
    group["members"] = MEMBERS[:4]
    return document


def entra_args(running: Running, command: str, *extra: str) -> list[str]:
    info = running.info
    return [
        command,
        "--url", info["defguard_url"],
        "--group-name", "vpn-users",
        "--authority", info["authority_url"],
        "--graph-url", info["graph_url"],
        "--ca-bundle", info["ca_bundle"],
        "--tenant", info["tenant_id"],
        "--client-id", info["confidential_client_id"],
        "--auth", "client-secret",
        "--yes",
        *extra,
    ]  # fmt: skip


class Sync:
    """Runs ``dgprov sync`` in-process against one sandbox, unattended (client secret)."""

    def __init__(self, running: Running, tmp_path: Path) -> None:
        self.running = running
        self.tmp_path = tmp_path
        self.runs = 0

    def env(self) -> dict[str, str]:
        return {
            "DEFGUARD_API_TOKEN": self.running.info["api_token"],
            "DGPROV_CLIENT_SECRET": self.running.info["client_secret"],
            "DGPROV_CACHE_DIR": str(self.tmp_path / "cache"),
            "DGPROV_LOCK_FILE": str(self.tmp_path / "sync.lock"),
        }

    def __call__(self, *extra: str, command: str = "sync") -> Result:
        return CliRunner().invoke(main, entra_args(self.running, command, *extra), env=self.env())

    def report(self, *extra: str) -> dict[str, Any]:
        """One run with a JSON report; the report."""
        self.runs += 1
        path = self.tmp_path / f"report{self.runs}.json"
        result = self(*extra, "--report", str(path))
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(path.read_text())
        return document


def rows(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """(decision, outcome) per username, or per directory object for a row without one."""
    return {r["username"] or r["upn"]: (r["decision"], r["outcome"]) for r in report["members"]}


def token_hashes(running: Running) -> dict[str, set[str]]:
    hashes: dict[str, set[str]] = {}
    for token in running.anonymous.get("/_sandbox/tokens").json()["tokens"]:
        hashes.setdefault(token["username"], set()).add(token["token_sha256"])
    return hashes


def graph_writes(running: Running) -> int:
    """PATCHes Graph has answered, alone or inside $batch: every write is one."""
    root = running.info["graph_url"].removesuffix("/v1.0")
    counts = httpx.get(f"{root}/_sandbox/requests", verify=trust(running.info)).json()["requests"]
    return sum(count for route, count in counts.items() if "PATCH" in route)


def stored(running: Running, username: str) -> dict[str, Any]:
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    upn = f"{username}@example.com"
    values = admin.get(f"/users/{upn}", params={"$select": "customSecurityAttributes"}).json()
    found: dict[str, Any] = (values["customSecurityAttributes"] or {}).get("Defguard", {})
    return found


def enroll(running: Running, tmp_path: Path, url: str, token: str) -> None:
    """The member enrolls with the stored value, as dgprov's client job does (through the
    sandbox proxy: activation, a device, its configuration)."""
    where = tmp_path / "enroll"
    where.mkdir(exist_ok=True)
    path = where / "provisioning.json"
    client_files.write(path, client_files.ProvisioningConfig(url, token))
    (where / "password").write_text(PASSWORD + "\n")
    args = ["enroll", "--provisioning-file", str(path), "--output-dir", str(where / "wg")]
    result = CliRunner().invoke(main, [*args, "--password-file", str(where / "password")])
    assert result.exit_code == 0, result.output


def move_group(running: Running, username: str, *, add: bool) -> None:
    if add:
        response = running.anonymous.post(
            "/_sandbox/groups/vpn-users/members", json={"username": username}
        )
    else:
        response = running.anonymous.delete(f"/_sandbox/groups/vpn-users/members/{username}")
    assert response.status_code == 200, response.text


def test_sync_lifecycle_entra(start_sandbox: StartSandbox, line: str, tmp_path: Path) -> None:
    running = start_sandbox(tenant(), line=line)
    sync = Sync(running, tmp_path)

    # First run: a token for everyone, its expiry stored beside it.
    first = sync.report()
    assert rows(first) == {name: ("issue", "provisioned") for name in MEMBERS[:4]}
    assert first["summary"]["decision"]["issue"] == 4
    assert first["summary"]["outcome"]["provisioned"] == 4
    issued = token_hashes(running)
    assert {name: len(h) for name, h in issued.items()} == dict.fromkeys(MEMBERS[:4], 1)
    values = stored(running, U1)
    assert sha(values["EnrollmentToken"]) in issued[U1]
    expires = datetime.datetime.fromisoformat(values["EnrollmentTokenExpiresAt"])
    token = running.tokens(U1)[0]
    real = datetime.datetime.fromisoformat(token["expires_at"])
    # Taken just before the request, to the second: never later than the server's expiry.
    assert datetime.timedelta(0) <= real - expires.replace(tzinfo=None) < datetime.timedelta(5)
    assert first["members"][0]["expires_at"] == values["EnrollmentTokenExpiresAt"]

    # Second run: nothing issued, nothing written.
    writes = graph_writes(running)
    second = sync.report()
    assert rows(second) == {name: ("keep", "kept") for name in MEMBERS[:4]}
    assert token_hashes(running) == issued
    assert graph_writes(running) == writes

    used_enrolls_moves_and_expires(
        running,
        tmp_path,
        sync.report,
        (values["EnrollmentUrl"], values["EnrollmentToken"]),
        lambda name: bool(stored(running, name)),
        f"{U2}@example.com",
    )
    assert sha(stored(running, U3)["EnrollmentToken"]) in token_hashes(running)[U3]


def used_enrolls_moves_and_expires(
    running: Running,
    tmp_path: Path,
    report: Callable[[], dict[str, Any]],
    first_value: tuple[str, str],
    holds: Callable[[str], bool],
    left_row: str,
) -> None:
    """After a first run that issued to the first four members: the first enrolls with its
    stored token, the second leaves the group, time passes; what each next run decides."""
    issued = token_hashes(running)
    # The first member enrolls with the stored token: the next run clears it, issues nothing.
    enroll(running, tmp_path, *first_value)
    assert rows(report())[U1] == ("clear", "cleared")
    assert not holds(U1)
    assert token_hashes(running) == issued
    assert rows(report())[U1] == ("skip", "skipped")  # enrolled, with a device

    # The second leaves the group: its stored value is cleared, nobody gets a token.
    move_group(running, U2, add=False)
    assert rows(report())[left_row] == ("clear", "cleared")
    assert not holds(U2)
    assert token_hashes(running) == issued

    # Half a day later the fifth joins and gets a token; after 11 more hours the third's and
    # fourth's expire within --renew-before (2h): they are renewed, the fifth's is not.
    running.advance_clock(12 * HOUR)
    move_group(running, U5, add=True)
    assert rows(report())[U5] == ("issue", "provisioned")
    fifth = token_hashes(running)[U5]
    running.advance_clock(11 * HOUR)
    assert rows(report()) == {
        U1: ("skip", "skipped"),
        U3: ("renew", "provisioned"),
        U4: ("renew", "provisioned"),
        U5: ("keep", "kept"),
    }
    after = token_hashes(running)
    assert after[U5] == fifth
    assert len(after[U3]) == 1 and after[U3] != issued[U3] and after[U4] != issued[U4]
    assert holds(U3) and holds(U5)


def test_concurrent_runs_are_refused(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    running = start_sandbox(tenant(), line=line)
    sync = Sync(running, tmp_path)
    with host_lock(tmp_path / "sync.lock"):
        result = sync()
    assert result.exit_code == 2
    assert "another dgprov sync is running on this host" in result.output
    assert "pid" in result.output and "sync.lock" in result.output
    assert token_hashes(running) == {}  # the refused run did nothing
    assert sync().exit_code == 0  # once the lock is free


def test_state_file_when_the_set_has_no_expiry_attribute(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    document = tenant()
    attribute_set = document["entra"]["attribute_sets"][0]
    attribute_set["attributes"] = attribute_set["attributes"][:2]
    running = start_sandbox(document)
    sync = Sync(running, tmp_path)
    refused = sync()
    assert refused.exit_code == 2 and "--state FILE" in refused.output
    assert token_hashes(running) == {}
    state = tmp_path / "state.json"
    assert rows(sync.report("--state", str(state))) == {
        name: ("issue", "provisioned") for name in MEMBERS[:4]
    }
    assert state.stat().st_mode & 0o777 == 0o600
    text = state.read_text()
    assert stored(running, U1)["EnrollmentToken"] not in text
    before = state.stat().st_mtime_ns
    assert rows(sync.report("--state", str(state))) == {
        name: ("keep", "kept") for name in MEMBERS[:4]
    }
    assert state.stat().st_mtime_ns == before  # nothing changed, nothing rewritten


def test_dry_run_and_generate_tokens_count_what_would_be_replaced(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    dry = sync("--dry-run")
    assert dry.exit_code == 0 and "4 issue, 0 renew, 0 clear" in dry.output
    header = next(line for line in dry.output.splitlines() if line.startswith("username"))
    assert header.split()[:2] == ["username", "decision"]
    assert token_hashes(running) == {}
    assert sync().exit_code == 0
    plan = sync("--dry-run", command="generate-tokens")
    assert plan.exit_code == 0
    assert "4 tokens would be issued; 4 members hold an unused token that it will replace" in (
        plan.output
    )


def test_generate_tokens_after_sync_stores_the_new_tokens_expiry(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """generate-tokens (``--member`` to re-issue one person's) stores its token's expiry where
    the set holds one, in sync's terms: the next sync keeps that token instead of renewing a
    value it cannot date, and never judges it by the old token's date."""
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    assert sync().exit_code == 0
    old = stored(running, U1)
    running.advance_clock(3600)  # an hour later, jdoe's install needs a new token
    report = tmp_path / "reissued.json"
    assert sync("--member", U1, "--report", str(report), command="generate-tokens").exit_code == 0
    (row,) = json.loads(report.read_text())["members"]
    values = stored(running, U1)
    assert values["EnrollmentToken"] != old["EnrollmentToken"]
    assert values["EnrollmentTokenExpiresAt"] == row["expires_at"]
    assert values["EnrollmentTokenExpiresAt"] != old["EnrollmentTokenExpiresAt"]
    again = sync.report()
    assert rows(again)[U1] == ("keep", "kept")
    assert stored(running, U1)["EnrollmentToken"] == values["EnrollmentToken"]


def test_sync_has_the_options_of_generate_tokens() -> None:
    from dgprov.commands.generate_tokens import generate_tokens_command
    from dgprov.commands.sync import sync_command

    def names(command: Any) -> set[str]:
        return {option for param in command.params for option in param.opts}

    assert names(sync_command) == (names(generate_tokens_command) - {"--resume"}) | {
        "--renew-before",
        "--desktop-token-lifetime",
        "--state",
    }


@pytest.mark.parametrize(
    ("renew_before", "expected"),
    [("1d", "not shorter than the token lifetime"), ("soon", "--renew-before 'soon'")],
)
def test_bad_renew_before(tmp_path: Path, renew_before: str, expected: str) -> None:
    args = [
        "sync", "--url", "http://127.0.0.1:9", "--group-name", "g", "--directory", "ad",
        "--ldap-url", "ldap://127.0.0.1:9", "--base-dn", "dc=x", "--ad-attribute", "a",
        "--bind-dn", "cn=x", "--renew-before", renew_before,
    ]  # fmt: skip
    env = {"DEFGUARD_API_TOKEN": "dg-x", "DGPROV_BIND_PASSWORD": "p"}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2 and expected in result.output


def test_members_disabled_in_defguard_are_cleared(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    assert sync().exit_code == 0
    assert stored(running, U3) != {}
    response = running.anonymous.post(f"/_sandbox/users/{U3}", json={"active": False})
    assert response.status_code == 200
    issued = token_hashes(running)
    report = sync.report()
    assert rows(report)[U3] == ("clear", "cleared")
    assert (
        "disabled in Defguard"
        in next(r for r in report["members"] if r["username"] == U3)["reason"]
    )
    assert stored(running, U3) == {}
    assert token_hashes(running) == issued


def test_desktop_tokens_record_their_issue_time_and_are_renewed_once_expired(
    start_sandbox: StartSandbox, line: str, tmp_path: Path
) -> None:
    """pfetch is enrolled (prefetched from Entra) without a device: a start_desktop token,
    whose lifetime is Defguard's default whatever is asked (36h here). sync stores when it was
    issued, learns the lifetime from 2.0's settings (1.6 shows none: --desktop-token-lifetime),
    keeps the token while it is valid and renews it once expired."""
    document = example_tenant()
    document["settings"]["enrollment_token_timeout_hours"] = 36
    running = start_sandbox(document, line=line)
    sync = Sync(running, tmp_path)
    extra = ["--desktop-token-lifetime", "36h"] if line == "1.6" else []

    def pfetch(name: str) -> dict[str, Any]:
        path = tmp_path / name
        assert sync(*extra, "--report", str(path)).exit_code == 1  # its "twin" members fail
        found: dict[str, Any] = next(
            r for r in json.loads(path.read_text())["members"] if r["username"] == "pfetch"
        )
        return found

    row = pfetch("first.json")
    assert (row["action"], row["decision"], row["outcome"]) == (
        "start_desktop",
        "issue",
        "provisioned",
    )
    issued_at = running.tokens("pfetch")[0]["created_at"]
    assert row["expires_at"].startswith("start_desktop issued ")
    assert row["expires_at"].removeprefix("start_desktop issued ")[:16] == issued_at[:16]
    running.sandbox.entra.auto_approve_upn = None  # type: ignore[union-attr]
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    values = admin.get(
        "/users/paula@contoso.example", params={"$select": "customSecurityAttributes"}
    ).json()["customSecurityAttributes"]["Defguard"]
    assert values["EnrollmentTokenExpiresAt"] == row["expires_at"]
    issued = token_hashes(running)["pfetch"]

    running.advance_clock(30 * HOUR)  # past 24h, not past 36h - 2h: still valid, kept
    row = pfetch("later.json")
    assert (row["decision"], row["outcome"]) == ("keep", "kept")
    assert token_hashes(running)["pfetch"] == issued

    running.advance_clock(7 * HOUR)  # expired in Defguard: renewed, the new token is live
    row = pfetch("expired.json")
    assert (row["decision"], row["outcome"]) == ("renew", "provisioned")
    assert "expired at" in row["reason"]
    (token,) = running.tokens("pfetch")
    assert token["token_sha256"] not in issued and token["issued_by"] == "start_desktop"


def test_library_sync_and_the_replacement_count(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    from dgprov import api
    from dgprov.errors import Cancelled

    running = start_sandbox(tenant())
    info = running.info
    settings = api.EntraSettings(
        tenant=info["tenant_id"],
        client_id=info["confidential_client_id"],
        authority=info["authority_url"],
        graph_url=info["graph_url"],
        ca_bundle=info["ca_bundle"],
        auth="client-secret",
        client_secret=info["client_secret"],
        persist_cache=False,
    )
    common = {
        "url": info["defguard_url"],
        "group_name": "vpn-users",
        "api_token": info["api_token"],
        "entra": settings,
    }
    asked: list[dict[str, int]] = []

    def agree(changes: dict[str, int], directory_name: str) -> bool:
        asked.append(changes)
        return True

    record = api.sync(**common, lock_file=tmp_path / "lock", confirm=agree)
    assert asked == [{"issue": 4, "renew": 0, "clear": 0}]
    assert record.exit_status == 0 and record.summary["outcome"]["provisioned"] == 4
    assert repr(record) == "SyncRecord(4 members, dry_run=False)"  # never the members
    assert {m.decision.value for m in record.members if m.decision} == {"issue"}
    issued = token_hashes(running)
    replacing: list[int] = []

    def decline(pending: int, directory_name: str, count: int) -> bool:
        replacing.append(count)
        return False

    with pytest.raises(Cancelled):
        api.generate_tokens(**common, confirm_replacing=decline)
    assert replacing == [4]  # every member holds the unused token sync stored
    assert token_hashes(running) == issued


def test_csv_report_has_the_decision_column(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(tenant())
    path = tmp_path / "sync.csv"
    assert Sync(running, tmp_path)("--report", str(path)).exit_code == 0
    lines = path.read_text().splitlines()
    assert lines[0] == "username,email,directory_id,upn,action,decision,outcome,reason,expires_at"
    assert len(lines) == 5 and all(",issue,provisioned," in line for line in lines[1:])
    assert path.stat().st_mode & 0o777 == 0o600
