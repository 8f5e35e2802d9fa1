"""The report as the record that must survive any run: its destination, its versions, --resume.

A token is a credential that replaces the one a user had. The report is the only record of who
got one, so it is proved writable before anything changes, kept current while the run goes, not
silently overwritten, and a resumed run carries forward everyone earlier runs provisioned. These
tests drive ``report.py`` directly (a fake only where a disk failure must be simulated) and the
library API against the sandbox where "before Defguard is contacted" is the point.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from dgprov import api, report
from dgprov.directory import DirectoryUser
from dgprov.errors import ReportNotWritten, UsageError
from dgprov.plan import Action, Outcome, PlannedMember, already_provisioned
from dgprov.private_files import write_private_file
from dgprov.report import (
    NOT_SETTLED,
    LiveReport,
    ReportFile,
    check_destination,
    provisioned_in,
    resume_from,
    write_report,
)

from ..conftest import StartSandbox, example_tenant
from .test_api import admin_options

URL = "https://defguard.corp.example"
THIS_RUN = {
    "defguard_url": URL,
    "group": "vpn-users",
    "directory": "Entra ID",
    "attribute_set": "Defguard",
}
RUN: dict[str, Any] = {
    "defguard_version": "2.0.1",
    "group": "vpn-users",
    "directory": "Entra ID",
    "interrupted": False,
    "started_at": "2025-01-02T03:04:05Z",
    "defguard_url": URL,
    "attribute_set": "Defguard",
}


def member(name: str, outcome: Outcome | None, reason: str = "") -> PlannedMember:
    return PlannedMember(
        name,
        f"{name}@corp.example",
        Action.START_ENROLLMENT if outcome is not Outcome.SKIPPED else Action.NONE,
        DirectoryUser(f"id-{name}", f"{name}@corp.example", None),
        outcome,
        reason,
    )


def document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded


def outcomes(path: Path) -> dict[str, tuple[str, str]]:
    return {r["username"]: (r["outcome"], r["reason"]) for r in document(path)["members"]}


# ------------------------------------------------------------------------------- destination


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "reports.json").mkdir()
    with pytest.raises(UsageError) as caught:
        check_destination(ReportFile(tmp_path / "reports.json"), overwrite=True)
    assert str(caught.value).startswith(f"--report {tmp_path / 'reports.json'} is a directory;")


def test_an_existing_report_is_replaced_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("the record of an earlier run")
    with pytest.raises(UsageError) as caught:
        check_destination(ReportFile(path), overwrite=False)
    assert str(caught.value) == (
        f"--report {path} already exists; name a new file, or pass --overwrite-report to replace it"
    )
    check_destination(ReportFile(path), overwrite=True)
    assert path.read_text() == "the record of an earlier run"  # checking changed nothing


def test_a_link_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    link = tmp_path / "r.json"
    link.symlink_to(target)
    with pytest.raises(UsageError) as caught:
        check_destination(ReportFile(link), overwrite=True)
    assert "symbolic link" in str(caught.value)


def test_a_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "reports"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(UsageError) as caught:
        check_destination(ReportFile(blocker / "2025" / "r.json"), overwrite=False)
    assert str(caught.value) == (
        f"--report {blocker / '2025' / 'r.json'}: {blocker} is a file, not a directory; name a "
        "file in a directory"
    )


def test_missing_directories_are_fine_and_checking_leaves_nothing_behind(tmp_path: Path) -> None:
    check_destination(ReportFile(tmp_path / "a" / "b" / "r.json"), overwrite=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may create files in any directory")
def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UsageError) as caught:
            check_destination(ReportFile(locked / "r.json"), overwrite=False)
    finally:
        locked.chmod(0o700)
    assert f"cannot create files in {locked} (Permission denied)" in str(caught.value)


def test_the_library_checks_the_destination_before_contacting_defguard(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """The command's option parser refuses a directory; a library caller has only this check."""
    running = start_sandbox(example_tenant())
    (tmp_path / "reports.json").mkdir()
    (tmp_path / "file").write_text("")
    for bad, said in (
        (tmp_path / "reports.json", "is a directory"),
        (tmp_path / "file" / "r.json", "is a file"),
    ):
        with pytest.raises(UsageError) as caught:
            api.generate_tokens(**admin_options(running), report=bad)
        assert said in str(caught.value)
    assert running.anonymous.get("/_sandbox/requests").json()["requests"] == {}


# ------------------------------------------------------------------------------------ resume


def test_resume_needs_the_json_report(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_report(ReportFile(path), [member("alice", Outcome.PROVISIONED)], None, RUN)
    with pytest.raises(UsageError) as caught:
        resume_from(ReportFile(path, "--resume"), THIS_RUN)
    message = str(caught.value)
    assert message.startswith(f"--resume {path}: resume from the JSON report of the earlier run")
    assert "write reports as .json" in message


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"group": "contractors"}, "its group is 'contractors', this run's is 'vpn-users'"),
        (
            {"defguard_url": "https://staging.corp.example"},
            "its Defguard URL is 'https://staging.corp.example', this run's is "
            "'https://defguard.corp.example'",
        ),
        (
            {"directory": "Active Directory", "attribute_set": None, "ad_attribute": "info"},
            "its directory is 'Active Directory', this run's is 'Entra ID'",
        ),
        ({"attribute_set": "VPN"}, "its attribute set is 'VPN', this run's is 'Defguard'"),
        ({"group": None}, "its group is None"),
    ],
)
def test_resume_refuses_the_report_of_another_run(
    tmp_path: Path, changes: dict[str, Any], said: str
) -> None:
    """Members provisioned for another group or instance have no token for this run."""
    run = {k: v for k, v in {**RUN, **changes}.items() if v is not None}
    path = tmp_path / "other.json"
    write_report(ReportFile(path), [member("alice", Outcome.PROVISIONED)], None, run)
    with pytest.raises(UsageError) as caught:
        resume_from(ReportFile(path, "--resume"), THIS_RUN)
    message = str(caught.value)
    assert message.startswith(f"--resume {path} is the report of another run (")
    assert said in message
    assert message.endswith(
        "resume only from a report of the same Defguard URL, group and directory"
    )


def test_resume_ignores_a_trailing_slash_in_the_url(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    run = {**RUN, "defguard_url": URL + "/"}
    write_report(ReportFile(path), [member("alice", Outcome.PROVISIONED)], None, run)
    assert resume_from(ReportFile(path, "--resume"), THIS_RUN) == {"alice": "by the run in r.json"}


@pytest.mark.parametrize("text", ['{"members": []}', '{"run": [], "members": []}', "[]"])
def test_resume_refuses_json_without_a_run_section(tmp_path: Path, text: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        resume_from(ReportFile(path, "--resume"), THIS_RUN)
    assert str(caught.value).startswith(f"--resume {path}: not a dgprov report")


def test_a_chain_of_reports_remembers_who_was_provisioned_where(tmp_path: Path) -> None:
    """Run 2 resumed from run 1 and carried alice forward; run 3 resumes from run 2 and still
    knows alice was provisioned, by run 1."""
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    write_report(
        ReportFile(first),
        [member("alice", Outcome.PROVISIONED), member("bob", Outcome.FAILED, "interrupted")],
        None,
        RUN,
    )
    done = resume_from(ReportFile(first, "--resume"), THIS_RUN)
    assert done == {"alice": "by the run in first.json"}
    write_report(
        ReportFile(second),
        [
            member("alice", Outcome.SKIPPED, already_provisioned(done["alice"])),
            member("bob", Outcome.PROVISIONED),
            member("carol", Outcome.SKIPPED, "already enrolled (--enrolled-users skip)"),
        ],
        None,
        RUN,
    )
    assert resume_from(ReportFile(second, "--resume"), THIS_RUN) == {
        "alice": "by the run in first.json",
        "bob": "by the run in second.json",
    }
    assert provisioned_in(ReportFile(second)) == {
        "alice": "by the run in first.json",
        "bob": "by the run in second.json",
    }


def test_resume_keeps_only_well_formed_expiries(tmp_path: Path) -> None:
    """A report is a file anyone with access may have edited: an ``expires_at`` read back is
    kept only in the form dgprov writes, whatever else the row holds."""
    path = tmp_path / "r.json"
    hostile: list[Any] = ["2025-01-02T03:04:05Z", "soon", "9" * 100_000, 12, None, ["x"]]
    rows = [
        {"username": f"u{n}", "outcome": "provisioned", "reason": "", "expires_at": value}
        for n, value in enumerate(hostile)
    ]
    path.write_text(json.dumps({"run": RUN, "members": rows}))
    expiries: dict[str, str] = {}
    done = resume_from(ReportFile(path, "--resume"), THIS_RUN, expiries)
    assert set(done) == {f"u{n}" for n in range(len(hostile))}
    assert expiries == {"u0": "2025-01-02T03:04:05Z"}


# ------------------------------------------------------------------------- the live report


def live(path: Path, members: list[PlannedMember], failures: list[str]) -> LiveReport:
    return LiveReport(ReportFile(path), members, None, dict(RUN), failures.append)


async def until(condition: Any, what: str) -> None:
    """Wait on ``condition`` (the checkpoint runs in the event loop and a worker thread)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_first_version_is_written_before_anything_settles(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    members = [member("alice", None), member("bob", Outcome.SKIPPED, "disabled in Defguard")]
    asyncio.run(live(path, members, []).start())
    written = document(path)
    assert written["run"] == {**RUN, "in_progress": True}
    assert outcomes(path) == {
        "alice": ("failed", NOT_SETTLED),
        "bob": ("skipped", "disabled in Defguard"),
    }
    assert written["summary"] == {
        "provisioned": 0,
        "skipped": 1,
        "failed": 1,
        "not_processed": 0,
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resume_from(ReportFile(path, "--resume"), THIS_RUN) == {}


def test_versions_follow_the_run_and_the_last_one_is_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "CHECKPOINT_SECONDS", 0.0)
    path = tmp_path / "r.json"
    members = [member("alice", None), member("bob", None)]
    failures: list[str] = []

    async def run() -> None:
        kept = live(path, members, failures)
        await kept.start()
        members[0].outcome = Outcome.PROVISIONED
        kept.changed()
        await until(lambda: outcomes(path)["alice"][0] == "provisioned", "the second version")
        assert outcomes(path)["bob"] == ("failed", NOT_SETTLED)
        assert document(path)["run"]["in_progress"] is True
        members[1].outcome, members[1].reason = Outcome.FAILED, "Defguard answered 500: x"
        kept.run["finished_at"] = "2025-01-02T03:05:00Z"
        await kept.finish()

    asyncio.run(run())
    final = document(path)
    assert "in_progress" not in final["run"] and final["run"]["finished_at"]
    assert outcomes(path) == {
        "alice": ("provisioned", ""),
        "bob": ("failed", "Defguard answered 500: x"),
    }
    assert failures == []
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_versions_are_rate_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settling 500 members one by one does not write 500 versions."""
    path = tmp_path / "r.json"
    members = [member(f"u{i}", None) for i in range(500)]
    writes: list[int] = []
    real = report.write_report

    def counting(*args: Any) -> None:
        writes.append(1)
        real(*args)

    monkeypatch.setattr(report, "write_report", counting)

    async def run() -> None:
        kept = live(path, members, [])
        await kept.start()
        for entry in members:
            entry.outcome = Outcome.PROVISIONED
            kept.changed()
            await asyncio.sleep(0)
        await kept.finish()

    asyncio.run(run())
    assert 2 <= len(writes) <= 4  # first, perhaps one or two checkpoints, final
    assert {o for o, _ in outcomes(path).values()} == {"provisioned"}


def test_unwritable_first_version_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError) as caught:
        asyncio.run(live(blocker / "r.json", [member("alice", None)], []).start())
    assert str(caught.value).startswith(f"--report {blocker / 'r.json'}: cannot write the report")
    assert str(caught.value).endswith("nothing was changed")


def fail_writes_after(monkeypatch: pytest.MonkeyPatch, allowed: int) -> None:
    """The disk fills up after ``allowed`` successful writes (a fake: the unit in isolation)."""
    real = write_private_file
    calls = [0]

    def write(path: Path, data: Any, **options: Any) -> None:
        calls[0] += 1
        if calls[0] > allowed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data, **options)

    monkeypatch.setattr(report, "write_private_file", write)


def test_a_failed_final_write_keeps_the_last_version_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"
    members = [member("alice", None), member("bob", None)]
    fail_writes_after(monkeypatch, 1)

    async def run() -> None:
        kept = live(path, members, [])
        await kept.start()
        members[0].outcome = members[1].outcome = Outcome.PROVISIONED
        await kept.finish()

    with pytest.raises(ReportNotWritten) as caught:
        asyncio.run(run())
    message = str(caught.value)
    assert message.startswith(f"--report {path}: the final report could not be written")
    assert "No space left on device" in message and "is on disk" in message
    assert "2 provisioned, 0 skipped, 0 failed" in message
    assert caught.value.exit_status == 1
    assert outcomes(path) == {"alice": ("failed", NOT_SETTLED), "bob": ("failed", NOT_SETTLED)}


def test_a_failed_checkpoint_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No more tokens once their record cannot be kept: the caller hears it and stops."""
    monkeypatch.setattr(report, "CHECKPOINT_SECONDS", 0.0)
    path = tmp_path / "r.json"
    members = [member("alice", None)]
    failures: list[str] = []
    fail_writes_after(monkeypatch, 1)

    async def run() -> None:
        kept = live(path, members, failures)
        await kept.start()
        members[0].outcome = Outcome.PROVISIONED
        kept.changed()
        await until(lambda: failures, "the failure to be reported")

    asyncio.run(run())
    assert failures == [
        f"--report {path}: cannot update the report (No space left on device); stopping the run"
    ]
