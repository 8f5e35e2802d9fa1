"""The Wine prefix that dgprov's Windows build, its Windows lane and its bench share.

Everything Windows-side lives in ``build/wine-prefix``: Wine's ``C:`` drive, python.org's CPython
in ``C:\\Python311`` and the test-only ``bcryptprimitives.dll`` in ``system32``. Anyone can run
the built exe afterwards with ``WINEPREFIX=build/wine-prefix wine dist/windows/dgprov/dgprov.exe``.

On Windows itself (the release workflow, ``.github/workflows/windows.yml``) the same functions
run the programs directly and name the real folders, so the lane's tests run unchanged there.

Programs are run with their standard streams on pipes, never on regular files: Windows CPython
under Wine 8 dies at start-up ("init_sys_streams ... [WinError 6] Invalid handle") when its
stdout or stderr is a file, as a CI log redirect makes them. And Wine hands the whole Linux
environment to Windows programs, so they get a short, explicit one instead: no ``PIP_*`` (the
host's pip settings name Linux paths), no ``PYTHON*``, no ``DGPROV_*`` a developer has set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

REPO = Path(__file__).resolve().parents[2]
PREFIX = REPO / "build" / "wine-prefix"
CACHE = REPO / "build" / "windows"  # downloads, wheels, the shim, PyInstaller's work folder
PYTHON_DIR = PREFIX / "drive_c" / "Python311"
ON_WINDOWS = sys.platform == "win32"  # no Wine: the programs run as they are
PYTHON = Path(sys.executable) if ON_WINDOWS else PYTHON_DIR / "python.exe"
DIST = REPO / "dist" / "windows"
EXE = DIST / "dgprov" / "dgprov.exe"

# What a Windows program may see of the Linux environment: what Wine itself needs to start.
PASSED_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a program in the prefix: Wine's settings and ``extra``, nothing else."""
    if ON_WINDOWS:
        own = ("DGPROV_", "PIP_", "PYTHON")
        kept = {k: v for k, v in os.environ.items() if not k.upper().startswith(own)}
        return {**kept, **(extra or {})}
    passed = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return {
        **passed,
        "WINEPREFIX": str(PREFIX),
        "WINEARCH": "win64",
        "WINEDEBUG": "-all",
        # No offer to download Mono or Gecko: nothing here needs .NET or a browser engine.
        "WINEDLLOVERRIDES": "mscoree,mshtml=",
        **(extra or {}),
    }


def windows_path(path: Path | str) -> str:
    """A Linux path as Windows programs in the prefix see it: Wine maps ``/`` to ``Z:``."""
    if ON_WINDOWS:
        return os.path.abspath(path)
    absolute = PurePosixPath(os.path.abspath(path))
    return str(PureWindowsPath("Z:\\", *absolute.parts[1:]))


def user_name() -> str:
    """The Windows account Wine runs everything as: the Linux account's name, as Wine reads it
    (from the password database, not from ``$USER``)."""
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def user_profile() -> Path:
    """That account's profile folder (``C:\\users\\<name>``) seen from Linux."""
    if ON_WINDOWS:
        return Path(os.environ["USERPROFILE"])
    return PREFIX / "drive_c" / "users" / user_name()


def roaming_app_data() -> Path:
    """``%APPDATA%`` of the Wine account, seen from Linux."""
    if ON_WINDOWS:
        return Path(os.environ["APPDATA"])
    return user_profile() / "AppData" / "Roaming"


def local_app_data() -> Path:
    """``%LOCALAPPDATA%`` of the Wine account, seen from Linux."""
    if ON_WINDOWS:
        return Path(os.environ["LOCALAPPDATA"])
    return user_profile() / "AppData" / "Local"


def program_data() -> Path:
    """``%ProgramData%``, the machine-wide data folder, seen from Linux."""
    if ON_WINDOWS:
        return Path(os.environ["PROGRAMDATA"])
    return PREFIX / "drive_c" / "ProgramData"


def _launcher() -> list[str]:
    return [] if ON_WINDOWS else ["wine"]


def run(
    command: Sequence[str | Path],
    *,
    extra_environment: Mapping[str, str] | None = None,
    timeout: float,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a Windows program in the prefix and wait for it, its output on pipes. One that
    outlives ``timeout`` is killed and raises ``TimeoutError`` with what it printed, for a hung
    test run the only clue."""
    try:
        return _run_piped(command, extra_environment, timeout, input_text, cwd)
    except subprocess.TimeoutExpired as exc:
        printed = [
            (data.decode("utf-8", "replace") if isinstance(data, bytes) else data or "")[-6000:]
            for data in (exc.stdout, exc.stderr)
        ]
        raise TimeoutError(
            f"{command[0]} ran longer than {timeout:.0f} s; it printed:\n" + "\n".join(printed)
        ) from None


def _run_piped(
    command: Sequence[str | Path],
    extra_environment: Mapping[str, str] | None,
    timeout: float,
    input_text: str | None,
    cwd: Path | None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_launcher(), *map(str, command)],
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=environment(extra_environment),
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def start(
    command: Sequence[str | Path],
    *,
    extra_environment: Mapping[str, str] | None = None,
    keep_stdin: bool = False,
) -> subprocess.Popen[str]:
    """Start a Windows program in the prefix without waiting, its output on pipes (and its
    input too with ``keep_stdin``: a way to tell it when to end)."""
    return subprocess.Popen(
        [*_launcher(), *map(str, command)],
        stdin=subprocess.PIPE if keep_stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=environment(extra_environment),
    )


def keep_server_running() -> None:
    """Start Wine's server for the prefix and keep it up until ``stop_server``: otherwise every
    program pays for starting it again (a second or more each).

    The first program started also starts Wine's background services (``services.exe`` and the
    device drivers), which inherit that program's standard streams and live as long as the
    server: a caller reading those pipes would wait for them forever. So a first program with
    no pipes starts them here.
    """
    if ON_WINDOWS:
        return
    stop_server()  # a server already running (a program just ended) would refuse -p
    subprocess.run(["wineserver", "-p"], env=environment(), check=True, timeout=60)
    subprocess.run(
        ["wine", "cmd.exe", "/c", "exit"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(),
        check=True,
        timeout=120,
    )


def stop_server() -> None:
    """Stop the prefix's Wine server and every Windows program still running in it."""
    if not ON_WINDOWS and shutil.which("wineserver"):
        subprocess.run(["wineserver", "-k"], env=environment(), check=False, timeout=60)
