"""The Windows lane's verdict (tests/windows/lane.py): a lane that ran nothing, or only one of its
two parts, or skipped a Windows test, fails; its line says how many Windows tests ran."""

from __future__ import annotations

from pathlib import Path

from tests.windows.lane import counts, summary

PASSED = {"ran": 17, "failed": 0, "skipped": 0}


def test_a_passing_lane_says_how_many_ran() -> None:
    line, passed = summary(PASSED, {"ran": 8, "failed": 0, "skipped": 0})
    assert passed
    assert line.startswith("Windows lane: 25 Windows tests ran (17 under Windows CPython in Wine")


def test_a_lane_that_ran_nothing_or_half_fails() -> None:
    nothing = {"ran": 0, "failed": 0, "skipped": 0}
    assert not summary(nothing, nothing)[1]
    line, passed = summary(nothing, {"ran": 8, "failed": 0, "skipped": 0})
    assert not passed and "proves nothing" in line
    assert not summary(PASSED, nothing)[1]


def test_a_failure_or_a_skip_fails_the_lane() -> None:
    assert not summary(PASSED, {"ran": 7, "failed": 1, "skipped": 0})[1]
    assert not summary({"ran": 16, "failed": 0, "skipped": 1}, PASSED)[1]
    on_windows = summary({"ran": 16, "failed": 0, "skipped": 1}, PASSED, on_windows=True)
    assert on_windows[1] and "need slapd" in on_windows[0]  # the AD read, no slapd there


def test_counts_read_junit(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite tests="4">'
        '<testcase name="a"/><testcase name="b"><failure/></testcase>'
        '<testcase name="c"><skipped/></testcase><testcase name="runner"/>'
        "</testsuite></testsuites>"
    )
    assert counts(report, leave_out="runner") == {"ran": 2, "failed": 1, "skipped": 1}
    assert counts(tmp_path / "missing.xml") == {"ran": 0, "failed": 0, "skipped": 0}
