"""``dgprov sync``'s host lock is ``msvcrt.locking`` on a file in %ProgramData%: a second Windows
process is refused while the first holds it, and gets it once the first has ended."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path, PureWindowsPath

from dgprov.host_lock import default_path, host_lock

SECOND_RUN = (
    "import sys\n"
    "from dgprov.errors import AlreadyRunning\n"
    "from dgprov.host_lock import host_lock\n"
    "try:\n"
    "    with host_lock(): print('got it')\n"
    "except AlreadyRunning as exc:\n"
    "    print(exc); sys.exit(2)\n"
)


def second_run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SECOND_RUN],
        env={**os.environ, "DGPROV_LOCK_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_default_lock_is_shared_by_the_host(monkeypatch: object) -> None:
    expected = PureWindowsPath(os.environ["PROGRAMDATA"]) / "dgprov" / "dgprov-sync.lock"
    assert PureWindowsPath(default_path()) == expected


def test_a_second_process_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    path = tmp_path / "dgprov-sync.lock"
    with host_lock(path):
        refused = second_run(path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "another dgprov sync is running on this host" in refused.stdout
    assert f"pid {os.getpid()}" in refused.stdout  # the holder says who it is
    after = second_run(path)
    assert after.returncode == 0, after.stdout + after.stderr
    assert after.stdout.strip() == "got it"
