"""The run report, written and read back for ``--resume``, in both formats.

The report is the administrator's record of who got a token, and ``--resume`` trusts it to skip
members already provisioned: a report that loses a row, leaks a token nobody asked for, or is
readable by others is a real failure, as is a resume file that is silently not a report.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from dgprov.directory import DirectoryUser
from dgprov.errors import UsageError
from dgprov.plan import Action, Outcome, PlannedMember
from dgprov.report import COLUMNS, TOKEN_COLUMN, ReportFile, provisioned_in, write_report

KINDS = ["json", "csv"]
RUN: dict[str, Any] = {
    "defguard_version": "2.0.1",
    "group": "vpn-users",
    "directory": "Entra ID",
    "interrupted": False,
    "started_at": "2025-01-02T03:04:05Z",
}


def member(
    name: str, outcome: Outcome | None, reason: str = "", *, found: bool = True
) -> PlannedMember:
    directory_user = DirectoryUser(f"id-{name}", f"{name}@corp.example", None) if found else None
    action = Action.START_ENROLLMENT if found else Action.NONE
    expires = "2025-01-03T03:04:05Z" if outcome is Outcome.PROVISIONED else None
    return PlannedMember(
        name, f"{name}@corp.example", action, directory_user, outcome, reason, expires
    )


def mixed() -> list[PlannedMember]:
    return [
        member("alice", Outcome.PROVISIONED),
        member("bob", Outcome.SKIPPED, "disabled in Defguard", found=False),
        member("carol", Outcome.FAILED, "Defguard answered 500: internal error"),
        member("dave", Outcome.PROVISIONED),
    ]


def rows(path: Path) -> list[dict[str, Any]]:
    """The member rows as a script would read them."""
    text = path.read_text("utf-8")
    if path.suffix == ".json":
        found: list[dict[str, Any]] = json.loads(text)["members"]
        return found
    return list(csv.DictReader(io.StringIO(text)))


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_finds_the_provisioned_members(tmp_path: Path, kind: str) -> None:
    """--resume skips exactly the members the report shows provisioned."""
    report = ReportFile(tmp_path / f"report.{kind}")
    write_report(report, mixed(), None, RUN)
    note = f"by the run in report.{kind}"
    assert provisioned_in(ReportFile(report.path, "--resume")) == {"alice": note, "dave": note}


@pytest.mark.parametrize("kind", KINDS)
def test_rows_hold_what_happened_to_each_member(tmp_path: Path, kind: str) -> None:
    """The columns are a contract with administrators' scripts."""
    path = tmp_path / f"report.{kind}"
    write_report(ReportFile(path), mixed(), None, RUN)
    found = rows(path)
    assert [row["username"] for row in found] == ["alice", "bob", "carol", "dave"]
    assert list(found[0]) == COLUMNS
    empty: str | None = None if kind == "json" else ""  # CSV has no null
    assert found[0] == {
        "username": "alice",
        "email": "alice@corp.example",
        "directory_id": "id-alice",
        "upn": "alice@corp.example",
        "action": "start_enrollment",
        "outcome": "provisioned",
        "reason": "",
        "expires_at": "2025-01-03T03:04:05Z",
    }
    assert (found[1]["directory_id"], found[1]["action"], found[1]["reason"]) == (
        empty,
        "none",
        "disabled in Defguard",
    )
    assert found[2]["outcome"] == "failed"


@pytest.mark.parametrize("kind", KINDS)
def test_a_member_left_unsettled_is_reported_failed(tmp_path: Path, kind: str) -> None:
    """A run that crashed mid-way must not leave a row that --resume would take as done."""
    path = tmp_path / f"report.{kind}"
    write_report(ReportFile(path), [member("erin", None)], None, RUN)
    assert rows(path)[0]["outcome"] == "failed"
    assert provisioned_in(ReportFile(path)) == {}


def test_json_has_summary_and_run_sections(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_report(ReportFile(path), mixed(), None, RUN)
    document = json.loads(path.read_text("utf-8"))
    assert list(document) == ["summary", "run", "members"]
    assert document["summary"] == {
        "provisioned": 2,
        "skipped": 1,
        "failed": 1,
        "not_processed": 0,
    }
    assert document["run"] == RUN


def test_csv_header_is_the_column_contract(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_report(ReportFile(path), mixed(), None, RUN)
    assert path.read_text("utf-8").splitlines()[0] == ",".join(COLUMNS)


@pytest.mark.parametrize("kind", KINDS)
def test_large_member_lists_round_trip(tmp_path: Path, kind: str) -> None:
    """5,000 members (more than one write chunk) come back complete and in order."""
    members = [
        member(f"user{i:05d}", Outcome.PROVISIONED if i % 3 else Outcome.FAILED, f"reason {i}")
        for i in range(5000)
    ]
    path = tmp_path / f"big.{kind}"
    write_report(ReportFile(path), members, None, RUN)
    assert path.stat().st_size > 1 << 17  # several of the CSV writer's 64 KiB chunks
    found = rows(path)
    assert [(r["username"], r["reason"]) for r in found] == [
        (m.username, m.reason) for m in members
    ]
    expected = {m.username for m in members if m.outcome is Outcome.PROVISIONED}
    assert set(provisioned_in(ReportFile(path))) == expected
    assert len(expected) == 3333


@pytest.mark.parametrize("kind", KINDS)
def test_non_ascii_usernames_survive(tmp_path: Path, kind: str) -> None:
    names = ["zoë", "łukasz", "山田太郎", 'o\'brien, "jr"', "🦊fox"]
    members = [member(name, Outcome.PROVISIONED) for name in names]
    path = tmp_path / f"report.{kind}"
    write_report(ReportFile(path), members, None, RUN)
    assert [row["username"] for row in rows(path)] == names
    assert sorted(provisioned_in(ReportFile(path))) == sorted(names)
    if kind == "json":
        assert "山田太郎" in path.read_text("utf-8")  # readable, not \u escapes


# ------------------------------------------------------------------------- privacy and tokens


@pytest.mark.parametrize("kind", KINDS)
def test_report_is_readable_by_its_owner_only(tmp_path: Path, kind: str) -> None:
    """Even without tokens the report lists e-mail addresses; replacing a file keeps it private."""
    path = tmp_path / f"report.{kind}"
    path.write_text("an older, world-readable report")
    path.chmod(0o644)
    write_report(ReportFile(path), mixed(), {"alice": "secret-token"}, RUN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("kind", KINDS)
def test_tokens_appear_only_when_passed(tmp_path: Path, kind: str) -> None:
    """--include-tokens-in-report adds the column; without it no token can leak into the file."""
    with_tokens, without = tmp_path / f"with.{kind}", tmp_path / f"without.{kind}"
    tokens = {"alice": "tok-ALICE-1", "dave": "tok-DAVE-2"}
    write_report(ReportFile(with_tokens), mixed(), tokens, RUN)
    write_report(ReportFile(without), mixed(), None, RUN)

    assert {row["username"]: row[TOKEN_COLUMN] for row in rows(with_tokens)} == {
        "alice": "tok-ALICE-1",
        "bob": "",
        "carol": "",
        "dave": "tok-DAVE-2",
    }
    assert all(TOKEN_COLUMN not in row for row in rows(without))
    text = without.read_text("utf-8")
    assert TOKEN_COLUMN not in text and "tok-ALICE-1" not in text


# ---------------------------------------------------------------------------- wrong files


@pytest.mark.parametrize("name", ["report.txt", "report.xlsx", "report", "report.json.bak"])
def test_report_file_refuses_other_suffixes(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError) as caught:
        ReportFile(tmp_path / name, "--resume")
    assert str(caught.value).startswith(f"--resume {tmp_path / name}:")
    assert ".json or .csv" in str(caught.value)


def test_suffix_case_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "REPORT.JSON"
    write_report(ReportFile(path), mixed(), None, RUN)
    assert ReportFile(path).kind == "json"
    assert set(provisioned_in(ReportFile(path))) == {"alice", "dave"}


@pytest.mark.parametrize(
    "text", ['{"results": []}', "[1, 2, 3]", "not json at all", "", '"members"']
)
def test_json_that_is_not_a_report_is_refused(tmp_path: Path, text: str) -> None:
    """Resuming from the wrong file must stop the run, naming the file."""
    path = tmp_path / "old.json"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        provisioned_in(ReportFile(path, "--resume"))
    assert str(caught.value).startswith(f"--resume {path}: not a dgprov report")


@pytest.mark.parametrize("text", ["name,value\nalice,1\n", ""])
def test_csv_that_is_not_a_report_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "old.csv"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        provisioned_in(ReportFile(path, "--resume"))
    assert str(caught.value).startswith(f"--resume {path}: not a dgprov report")


def test_missing_resume_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.csv"
    with pytest.raises(UsageError) as caught:
        provisioned_in(ReportFile(path, "--resume"))
    assert str(caught.value) == f"--resume {path}: cannot read it (No such file or directory)"
