"""``--member``, ``--exclude-member`` and ``--exclude-members-file`` on ``generate-tokens`` and
``sync``, and the failures line that tells new failures from those of the previous report: the
real CLI against the sandbox, the other members' tokens and stored values compared before and
after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dgprov_sandbox.tenant import synthetic_tenant

from dgprov.cli import main

from ..conftest import StartSandbox, example_tenant
from .test_sync import HOUR, MEMBERS, Sync, move_group, rows, stored, tenant, token_hashes

U1, U2, U3, U4 = MEMBERS[:4]


def token_count(sync: Sync) -> int:
    """Every token the sandbox's Defguard holds, whoever it is for."""
    response = sync.running.anonymous.get("/_sandbox/tokens")
    return len(response.json()["tokens"])


def first_error_line(output: str) -> str:
    return next(line for line in output.splitlines() if ": error: " in line)


def test_generate_tokens_for_one_member_of_fifty(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    document = synthetic_tenant(50, seed=21)  # user0007 is jdoe here (matched by e-mail)
    next(u for u in document["users"] if u["username"] == "user0007")["username"] = "jdoe"
    group = next(g for g in document["groups"] if g["name"] == "vpn-users")
    group["members"] = ["jdoe" if m == "user0007" else m for m in group["members"]]
    assert len(group["members"]) == 50
    running = start_sandbox(document)
    sync = Sync(running, tmp_path)
    report = tmp_path / "one.json"
    result = sync("--member", "jdoe", "--report", str(report), command="generate-tokens")
    assert result.exit_code == 0, result.output
    assert token_count(sync) == 1 and set(token_hashes(running)) == {"jdoe"}
    document = json.loads(report.read_text())
    assert [row["username"] for row in document["members"]] == ["jdoe"]
    summary = document["summary"]
    assert (summary["provisioned"], summary["skipped"], summary["failed"]) == (1, 0, 0)
    assert document["run"]["only_members"] == ["jdoe"]
    assert stored(running, "user0008") == {}  # nobody else's object was written


def test_an_unknown_member_is_refused_before_anything_changes(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    for command in ("generate-tokens", "sync"):
        result = sync("--member", U1, "--member", "nosuch", command=command)
        assert result.exit_code == 2, result.output
        line = first_error_line(result.output)
        assert line.startswith(f"dgprov {command}: error: --member nosuch is not a member of")
        assert "'vpn-users'" in line and len(line) < 200
        assert "signing in" not in result.output  # refused before the directory sign-in
    wrong_case = sync("--member", U1.upper(), command="generate-tokens")
    assert wrong_case.exit_code == 2 and f"did you mean {U1}?" in wrong_case.output
    both = sync("--member", U1, "--exclude-member", U1)
    assert both.exit_code == 2 and "also excluded (--exclude-member)" in both.output
    assert token_count(sync) == 0


def test_sync_for_one_member_touches_nobody_else(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    assert sync().exit_code == 0
    # Now a whole run would renew every token (due within --renew-before), clear the member
    # disabled in Defguard and the one who left the group.
    running.advance_clock(23 * HOUR)
    assert running.anonymous.post(f"/_sandbox/users/{U3}", json={"active": False}).is_success
    move_group(running, U2, add=False)
    before = {name: stored(running, name) for name in (U1, U2, U3)}
    issued = token_hashes(running)

    only = sync.report("--member", U4)
    assert rows(only) == {U4: ("renew", "provisioned")}
    assert only["summary"]["decision"]["clear"] == 0
    assert {name: stored(running, name) for name in (U1, U2, U3)} == before
    after = token_hashes(running)
    assert {n: after[n] for n in (U1, U2, U3)} == {n: issued[n] for n in (U1, U2, U3)}
    assert after[U4] != issued[U4]

    # The same state, without --member: the others are changed (so the above could fail).
    whole = rows(sync.report())
    assert whole[U1] == ("renew", "provisioned") and whole[U3] == ("clear", "cleared")
    assert whole[f"{U2}@example.com"] == ("clear", "cleared")
    assert whole[U4] == ("keep", "kept")


def test_sync_for_one_member_records_no_one_else_in_the_state_file(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """Values generate-tokens stored have no record in a new --state: a whole run adopts them
    all (kept as if issued now); a --member run adopts only its member's."""
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    assert sync(command="generate-tokens").exit_code == 0
    state = tmp_path / "state.json"
    assert rows(sync.report("--state", str(state), "--member", U1)) == {U1: ("keep", "kept")}
    recorded = [entry["username"] for entry in json.loads(state.read_text())["objects"]]
    assert recorded == [U1]
    assert rows(sync.report("--state", str(state))) == dict.fromkeys(MEMBERS[:4], ("keep", "kept"))
    recorded = [entry["username"] for entry in json.loads(state.read_text())["objects"]]
    assert sorted(recorded) == MEMBERS[:4]


def ambiguous_tenant() -> dict[str, Any]:
    """The example tenant (whose ``twin`` is ambiguous), with ``twin2``, outside the group,
    whose address is twin's: once added, both fail as sharing one object."""
    document = example_tenant()
    document["users"].append(
        {
            "username": "twin2",
            "first_name": "Tom",
            "last_name": "Twin",
            "email": "shared@contoso.example",
            "entra": None,
        }
    )
    return document


def test_excluding_the_ambiguous_member_makes_sync_succeed(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(ambiguous_tenant())
    sync = Sync(running, tmp_path)
    failing = sync("--report", str(tmp_path / "failing.json"))
    assert failing.exit_code == 1  # twin is ambiguous on every run
    assert "failed: twin: ambiguous" in failing.output

    path = tmp_path / "excluded.json"
    result = sync("--exclude-member", "twin", "--exclude-member", "gone", "--report", str(path))
    assert result.exit_code == 0, result.output
    assert "excluded but not in the group 'vpn-users', so ignored: gone" in result.output
    excluded = json.loads(path.read_text())
    twin = next(r for r in excluded["members"] if r["username"] == "twin")
    assert (twin["decision"], twin["outcome"]) == ("skip", "skipped")
    assert twin["reason"] == "excluded (--exclude-member): not touched by this run"
    assert excluded["summary"]["outcome"]["failed"] == 0
    assert excluded["run"]["excluded_members"] == ["gone", "twin"]

    names = tmp_path / "excluded.txt"
    names.write_text("\ufeff# fixed once HR corrects the address\n\ntwin   # shared@\n")
    result = sync("--exclude-members-file", str(names))
    assert result.exit_code == 0, result.output
    assert "excluded (--exclude-members-file excluded.txt)" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("jdoe obrien\n", "excluded.txt, line 1: one username a line ('#' starts a comment)"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_a_bad_exclusions_file_is_a_usage_error(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    names = tmp_path / "excluded.txt"
    if isinstance(content, bytes):
        names.write_bytes(content)
    else:
        names.write_text(content)
    args = [
        "sync", "--url", "http://127.0.0.1:9", "--group-name", "g", "--directory", "ad",
        "--ldap-url", "ldap://127.0.0.1:9", "--base-dn", "dc=x", "--ad-attribute", "a",
        "--exclude-members-file", str(names),
    ]  # fmt: skip
    result = CliRunner().invoke(main, args, env={"DEFGUARD_API_TOKEN": "dg-x"})
    assert result.exit_code == 2
    assert first_error_line(result.output).startswith("dgprov sync: error: --exclude-members-file")
    assert expected in result.output


def test_new_failures_are_told_from_those_the_last_report_showed(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(ambiguous_tenant())
    sync = Sync(running, tmp_path)
    report = tmp_path / "sync.json"
    first = sync("--report", str(report))
    assert first.exit_code == 1
    assert "known from the previous report" not in first.output  # nothing to compare with

    again = sync("--report", str(report), "--overwrite-report")
    assert again.exit_code == 1  # the contract: 1 while anything fails
    assert f"failed 1: 0 new, 1 known from the previous report {report}" in again.output
    run = json.loads(report.read_text())["run"]
    assert (run["new_failures"], run["known_failures"]) == (0, 1)
    assert run["previous_report"] == str(report)

    move_group(running, "twin2", add=True)  # shares twin's object: both fail, twin2 is new
    kept = tmp_path / "kept.json"
    kept.write_bytes(report.read_bytes())
    later = sync("--report", str(report), "--overwrite-report")
    assert f"failed 2: 1 new (twin2), 1 known from the previous report {report}" in later.output
    explicit = sync("--previous-report", str(kept), "--report", str(tmp_path / "x.csv"))
    assert f"failed 2: 1 new (twin2), 1 known from the previous report {kept}" in explicit.output

    fixed = sync(
        *("--exclude-member", "twin", "--exclude-member", "twin2"),
        *("--report", str(report), "--overwrite-report"),
    )
    assert fixed.exit_code == 0, fixed.output
    assert f"failed 0: 0 new, 0 known from the previous report {report}; 2 failed there and " in (
        fixed.output
    )

    garbage = tmp_path / "garbage.json"
    garbage.write_text("not a report")
    unusable = sync("--report", str(garbage), "--overwrite-report")
    assert unusable.exit_code == 1
    assert "failures are not compared with the last run: --report" in unusable.output
    assert "known from the previous report" not in unusable.output

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"run": {"group": "contractors"}, "members": []}))
    refused = sync("--previous-report", str(other))
    assert refused.exit_code == 2
    assert "is the report of another run" in first_error_line(refused.output)


@pytest.mark.parametrize(
    ("members", "excluded", "expected"),
    [
        ([""], [], "--member '': an empty username"),
        (["jdoe\x1b[2J"], [], "a username with spaces or control characters"),
        ([], ["a" * 300], "a username of 300 characters"),
        (["jdoe", "asmith"], ["asmith"], "--member asmith: also excluded (--exclude-member)"),
    ],
)
def test_usernames_that_cannot_be_are_refused_at_once(
    members: list[str], excluded: list[str], expected: str
) -> None:
    from dgprov.errors import UsageError
    from dgprov.member_selection import MemberSelection

    with pytest.raises(UsageError) as raised:
        MemberSelection.from_options(members, excluded)
    assert expected in str(raised.value) and len(str(raised.value)) < 200


def test_the_exclusions_file_reads_comments_and_a_bom(tmp_path: Path) -> None:
    from dgprov.member_selection import read_exclusions

    path = tmp_path / "names"
    path.write_bytes("\ufeff# header\r\n\r\n  jdoe\t# why\r\nasmith\n#bob\n".encode())
    assert read_exclusions(path) == ["jdoe", "asmith"]
