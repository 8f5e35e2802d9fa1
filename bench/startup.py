"""Benchmark how long dgprov takes to start: it runs at every logon, before the desktop settles.

Run from the repository root after ``make dist windows``: ``.venv/bin/python bench/startup.py``
(``make bench`` builds both and runs it too).

Two commands, each on both builds in the same run:
- ``--version``: start-up alone (the interpreter, the bundled modules, click).
- ``fetch-config`` on a machine joined to nothing: the logon action's usual "nothing to do",
  which also looks at the machine's join state (``dsregcmd`` on Windows, absent under Wine;
  ``realm`` and sssd on Linux). Neither command sends a request anywhere.

The builds:
- the baseline, ``dist/dgprov``: the Linux one-file binary. It unpacks itself into a temporary
  folder at every start, so its cold and warm starts differ only by the page cache;
- ``dist/windows/dgprov/dgprov.exe``, the one-folder build, under Wine in ``build/wine-prefix``.
  "Cold" is a start with no Wine server running, so Wine's own start (its server and
  services) is counted; "warm" has the server up already, which is the nearer figure for a
  Windows desktop, where the system is running long before anyone logs on.

Figures: the median wall time of ``--runs`` starts (cold: the first of them), the peak
resident memory of the started process (Wine's loader and the exe are one process; the Wine
server is not counted), and the exe's time as a multiple of the Linux binary's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging" / "windows"))
import wine_prefix  # noqa: E402  (packaging/windows is no package: "packaging" is PyPI's)

LINUX_BINARY = REPO / "dist" / "dgprov"
# --output: run as root, the Linux binary would otherwise look for a graphical session's user.
NOTHING_TO_DO = REPO / "build" / "bench-startup" / "provisioning.json"  # never written
COMMANDS = {
    "--version": ["--version"],
    "fetch-config, nothing to do": ["fetch-config", "--output", str(NOTHING_TO_DO)],
}
START_SECONDS = 120


@dataclass(frozen=True)
class Start:
    seconds: float
    peak_mb: float


def timed(command: Sequence[str | Path], environment: dict[str, str]) -> Start:
    """One start, its output on a pipe (Windows CPython under Wine dies on a file), waited for
    with wait4 so that the process's own peak memory is read."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [str(part) for part in command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} exited {process.returncode}: {output[-2000:]!r}")
    return Start(seconds, usage.ru_maxrss / 1024)


def measure(
    command: Sequence[str | Path],
    environment: dict[str, str],
    runs: int,
    before: Callable[[], object] | None = None,
) -> list[Start]:
    """``runs`` starts of ``command``, each after ``before`` (stopping Wine's server)."""
    starts = []
    for _ in range(runs):
        if before is not None:
            before()
        starts.append(timed(command, environment))
    return starts


def linux_environment() -> dict[str, str]:
    """The binary as a user's logon would start it: no DGPROV_* a developer has set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DGPROV_")}


def report(name: str, starts: list[Start], baseline: float | None) -> float:
    median = statistics.median(s.seconds for s in starts)
    peak = max(s.peak_mb for s in starts)
    ratio = f", {median / baseline:.1f}x the Linux binary" if baseline else ""
    print(f"  {name:<34} {median * 1000:7.0f} ms  (peak {peak:.0f} MB{ratio})")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="starts per figure (default 5)")
    args = parser.parse_args()
    for path, build in ((LINUX_BINARY, "make dist"), (wine_prefix.EXE, "make windows")):
        if not path.exists():
            raise SystemExit(f"{path.relative_to(REPO)} is missing: build it with {build}")
    for label, arguments in COMMANDS.items():
        print(f"{label}:")
        linux: list[str | Path] = [LINUX_BINARY, *arguments]
        report("Linux binary, first start", measure(linux, linux_environment(), 1), None)
        baseline = report(
            "Linux binary, warm", measure(linux, linux_environment(), args.runs), None
        )
        windows_arguments = [
            wine_prefix.windows_path(a) if a.startswith("/") else a for a in arguments
        ]
        exe: list[str | Path] = ["wine", wine_prefix.EXE, *windows_arguments]
        wine = wine_prefix.environment()
        cold = measure(exe, wine, args.runs, before=wine_prefix.stop_server)
        report("dgprov.exe under Wine, cold Wine", cold, baseline)
        wine_prefix.keep_server_running()
        try:
            report("dgprov.exe under Wine, warm Wine", measure(exe, wine, args.runs), baseline)
        finally:
            wine_prefix.stop_server()


if __name__ == "__main__":
    main()
