"""The ways a scheduler stops a job, each turned into the same clean stop as Ctrl-C.

systemd and ``timeout`` send SIGTERM, a closed terminal or SSH session SIGHUP; on Windows a
console closing, the user logging off or the machine shutting down send their console events,
and ``CTRL_BREAK_EVENT`` arrives as SIGBREAK. Left to their defaults these end the process at
once, before it has written its report or its ``--state`` file. Here each asks the run to stop:
the requests in flight finish and the report is written.

A console closing (and a logoff or shutdown) ends the process once the handler returns, or at
the latest five seconds later (Windows' own timeout), so that handler waits, up to
``CONSOLE_GRACE_SECONDS``, for the run to finish. Nothing a stopped run stored depends on this
wait: ``--state`` journals each batch before the directory receives it (``sync_state.py``), so
even an end without warning (SIGKILL, ``TerminateProcess``) loses no record.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

CONSOLE_GRACE_SECONDS = 4.5
STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
    if hasattr(signal, name)
)
# wincon.h: CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT (C and Break are signals).
CONSOLE_EVENTS = {2: "the console was closed", 5: "the user logs off", 6: "the system shuts down"}


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextlib.contextmanager
def stop_requests(request_stop: Callable[[str], None]) -> Iterator[None]:
    """While inside, every stop signal calls ``request_stop(what)`` instead of ending the
    process; the previous handlers come back on leaving. Main thread only (Python's rule)."""
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        request_stop("interrupted" if signum == signal.SIGINT else f"stopped by {_name(signum)}")

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    console = _console_handler(request_stop, done) if sys.platform == "win32" else None
    try:
        yield
    finally:
        done.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if console is not None:
            console()


def _console_handler(
    request_stop: Callable[[str], None], done: threading.Event
) -> Callable[[], None] | None:
    """Register the console-event handler; the function that removes it (None if Windows
    refused it, and the default applies)."""
    if sys.platform != "win32":
        return None
    import ctypes

    kernel32 = ctypes.windll.kernel32

    def handle(event: int) -> int:
        what = CONSOLE_EVENTS.get(event)
        if what is None:
            return 0  # Ctrl-C and Ctrl-Break: Python's own handler turns them into signals
        request_stop(f"stopped: {what}")
        done.wait(CONSOLE_GRACE_SECONDS)  # the process ends when this returns
        return 1

    routine = ctypes.WINFUNCTYPE(ctypes.c_int, ctypes.c_uint)(handle)
    if not kernel32.SetConsoleCtrlHandler(routine, True):
        return None

    def remove() -> None:
        kernel32.SetConsoleCtrlHandler(routine, False)

    return remove
