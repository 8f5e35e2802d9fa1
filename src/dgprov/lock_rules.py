"""What the admin jobs' lock may be, decided from ``stat`` results alone (``host_lock.py`` does the
I/O and raises what these return).

The lock only works if no other account can take it: whoever holds the file open may hold the
kernel's lock on it for as long as they like, and whoever may write the directory may replace the
file under a running job. So the file must be a regular file of this account (or root) that
other accounts cannot open, in a directory nobody else may write (for a file ``DGPROV_LOCK_FILE``
names, a sticky directory such as ``/tmp`` will do: there nobody can remove another's file).
"""

from __future__ import annotations

import re
import stat

from .environment import LOCK_FILE

JOBS = ("sync", "generate-tokens")
ROOT = 0
ELSEWHERE = f"set {LOCK_FILE} to a file in a directory only this account (or root) can write"
_NOTE = re.compile(r"dgprov ({}), (.+)".format("|".join(re.escape(job) for job in JOBS)))


def kind_problem(mode: int) -> str | None:
    """Why a file of this type cannot be the lock, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_ISFIFO(mode):
        return "is a FIFO"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"


def file_problem(mode: int, owner: int, account: int | None) -> str | None:
    """Why an opened file cannot be the lock, or None. ``account``: this process's uid, or None
    where files have no POSIX owner (Windows), so that only the type is judged."""
    kind = kind_problem(mode)
    if kind is not None or account is None:
        return kind
    if owner not in (account, ROOT):
        return f"belongs to another account (uid {owner}), which could hold it forever"
    if mode & stat.S_IRWXO:
        return (
            f"can be opened by every account (mode {stat.S_IMODE(mode):04o}), and any of them "
            "could hold it forever"
        )
    return None


def directory_problem(mode: int, owner: int, account: int, sticky_will_do: bool) -> str | None:
    """Why files in this directory cannot be trusted as the lock, or None."""
    if not stat.S_ISDIR(mode):
        return "is not a directory"
    if owner not in (account, ROOT):
        return f"belongs to another account (uid {owner})"
    shared = mode & (stat.S_IWGRP | stat.S_IWOTH)
    if shared and not (sticky_will_do and mode & stat.S_ISVTX):
        return (
            f"can be written by other accounts (mode {stat.S_IMODE(mode):04o}), which could "
            "take or replace the lock"
        )
    return None


def fix_for(problem: str, path: str) -> str:
    """What the administrator does about a refused lock file."""
    if problem.startswith("can be opened by every account"):
        return f"chmod o= {path}, or {ELSEWHERE}"
    return f"remove it (dgprov creates the lock itself), or {ELSEWHERE}"


def holder_note(job: str, pid: int, user: str, started: str) -> str:
    """What the holder writes after the first byte, so that a refused run can name it."""
    return f" dgprov {job}, pid {pid}, user {user}, started {started}"


def already_running(note: str, path: str) -> str:
    """The refused run's message: which job holds the lock (as its note says) and where it is."""
    found = _NOTE.fullmatch(note)
    job, details = found.groups() if found else ("admin job", note or "unknown")
    return (
        f"another dgprov {job} is running on this host ({details}; lock {path}): this run did "
        "nothing. sync and generate-tokens take this one lock: let that run finish (the lock is "
        "released when it ends), and schedule runs further apart than one run takes"
    )
