"""What the admin jobs' lock may be, decided from ``stat`` results alone (``host_lock.py`` does the
I/O and raises what these return).

The lock only works if no other account can take it: whoever holds the file open may hold the
kernel's lock on it for as long as they like, and whoever may write the directory may replace the
file under a running job. So the file must be a regular file of this account (or root) that
other accounts cannot open, in a directory nobody else may write. A sticky directory such as
``/tmp`` will not do either: nobody there can remove this account's file, but anyone can create
the lock's name first (a file, a link or a FIFO of their own), and every run is refused from then
on. The file itself must hold nothing but a holder's note, so that a file named by mistake is
refused rather than overwritten.
"""

from __future__ import annotations

import re
import stat

from .environment import LOCK_FILE
from .windows_accounts import LOCAL_SYSTEM_SID
from .windows_files import FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT

JOBS = ("sync", "generate-tokens")
ROOT = 0
ADMINISTRATORS_SID = "S-1-5-32-544"  # BUILTIN\Administrators: root's counterpart on Windows
ELSEWHERE = f"set {LOCK_FILE} to a file in a directory only this account (or root) can write"
NOTE_LIMIT = 4096  # bytes: far more than any holder's note
NOT_A_LOCK = "holds something other than a dgprov lock's note"
_ANY_NOTE = re.compile(r"(dgprov [a-z-]+, )?pid [0-9]+, user [^\n]*, started [0-9TZ:-]+")
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


def windows_handle_problem(attributes: int, folder: bool) -> str | None:
    """Why an opened handle (its attributes) cannot be the lock, or its folder, or None."""
    if attributes & FILE_ATTRIBUTE_REPARSE_POINT:
        return "is a link (a reparse point)"
    if bool(attributes & FILE_ATTRIBUTE_DIRECTORY) != folder:
        return "is not a folder" if folder else "is a directory"
    return None


def windows_owner_problem(owner: str, account: str) -> str | None:
    """Why a file or folder owned by ``owner`` (a SID) cannot hold the lock of ``account``, or
    None: only this account, SYSTEM and the Administrators group will do."""
    if owner in (account, LOCAL_SYSTEM_SID, ADMINISTRATORS_SID):
        return None
    return f"belongs to another account ({owner})"


def directory_problem(mode: int, owner: int, account: int) -> str | None:
    """Why files in this directory cannot be trusted as the lock, or None."""
    if not stat.S_ISDIR(mode):
        return "is not a directory"
    if owner not in (account, ROOT):
        return f"belongs to another account (uid {owner})"
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        sticky = " sticky or not:" if mode & stat.S_ISVTX else ""
        return (
            f"can be written by other accounts (mode {stat.S_IMODE(mode):04o}),{sticky} any of "
            "them could create the lock first, or replace it, and stop every run"
        )
    return None


def is_lock_content(data: bytes) -> bool:
    """Whether a file's content (its first ``NOTE_LIMIT + 1`` bytes) is what a lock holds:
    nothing, or the byte Windows locks followed by a holder's note (this version's, or 0.1.0's
    without the job)."""
    if len(data) <= 1:
        return True
    if len(data) > NOTE_LIMIT:
        return False
    try:
        text = data[1:].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _ANY_NOTE.fullmatch(text.strip()) is not None


def fix_for(problem: str, path: str) -> str:
    """What the administrator does about a refused lock file."""
    if problem.startswith("can be opened by every account"):
        return f"chmod o= {path}, or {ELSEWHERE}"
    if problem == NOT_A_LOCK:
        return f"it was left as it is; {ELSEWHERE}, or remove it if it is nobody's"
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
