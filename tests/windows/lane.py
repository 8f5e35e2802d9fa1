"""The Windows lane, as ``make test-windows`` runs it: ``python -m tests.windows.lane``.

It runs pytest over ``tests/windows`` (Linux side: the exe's end-to-end checks, and one test that
has Windows CPython run ``tests/windows/native`` under Wine), then counts what ran from the two
JUnit files and prints one line. A lane in which no Windows test ran fails, as does one in which
any was skipped: "works on Windows" must not become a guess again without anyone noticing.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPORTS = REPO / "build" / "windows" / "lane"
LINUX_SIDE = REPORTS / "linux-side.xml"
NATIVE = REPORTS / "native.xml"  # written by tests/windows/test_native.py
RUNNER_TEST = "test_the_product_under_windows_cpython"  # runs NATIVE's tests; not one itself


def counts(path: Path, leave_out: str = "") -> dict[str, int]:
    """Test cases by outcome in a JUnit file; ``leave_out``: a test not to count as one that
    ran (its failure still counts)."""
    if not path.exists():
        return {"ran": 0, "failed": 0, "skipped": 0}
    cases = list(ElementTree.parse(path).getroot().iter("testcase"))
    failed = sum(
        1 for case in cases if case.find("failure") is not None or case.find("error") is not None
    )
    skipped = sum(1 for case in cases if case.find("skipped") is not None)
    counted = sum(1 for case in cases if case.get("name") != leave_out)
    return {"ran": counted - skipped, "failed": failed, "skipped": skipped}


def summary(
    native: dict[str, int], exe: dict[str, int], on_windows: bool = False
) -> tuple[str, bool]:
    """The line the lane prints, and whether the lane passed. On Windows itself one skip is
    expected: the native AD read, as Windows runners have no slapd."""
    ran = native["ran"] + exe["ran"]
    failed = native["failed"] + exe["failed"]
    skipped = native["skipped"] + exe["skipped"]
    expected_skips = 1 if on_windows else 0
    passed = native["ran"] > 0 and exe["ran"] > 0 and failed == 0 and skipped == expected_skips
    where = "on Windows" if on_windows else "in Wine"
    line = (
        f"Windows lane: {ran} Windows tests ran ({native['ran']} under Windows CPython {where}, "
        f"{exe['ran']} end-to-end checks of dgprov.exe and its MSI), {failed} failed, "
        f"{skipped} skipped"
    )
    if on_windows:
        line += " (the AD and broker checks, which need slapd, run in the Wine lane)"
    if native["ran"] == 0 or exe["ran"] == 0:
        line += "; a lane without both parts proves nothing, so it fails"
    return line, passed


def main() -> int:
    REPORTS.mkdir(parents=True, exist_ok=True)
    for path in (LINUX_SIDE, NATIVE):
        path.unlink(missing_ok=True)
    on_windows = sys.platform == "win32"
    pytest = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--junitxml={LINUX_SIDE}", "tests/windows",
            *(["-m", "not posix_services"] if on_windows else []),
        ],
        cwd=REPO,
        check=False,
    )  # fmt: skip
    native, exe = counts(NATIVE), counts(LINUX_SIDE, leave_out=RUNNER_TEST)
    line, passed = summary(native, exe, on_windows)
    print(line, flush=True)
    return 0 if passed and pytest.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
