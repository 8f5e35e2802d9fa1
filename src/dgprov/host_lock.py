"""One admin job (``dgprov sync`` or ``generate-tokens``) at a time: a kernel lock on a file.

Two overlapping runs would each issue tokens for the same members, the later one destroying the
earlier one's (Defguard deletes a user's unused tokens on every issue), and a sync that listed
Defguard before the other's issue keeps tokens Defguard no longer has. The lock is the kernel's
(``flock`` on POSIX, ``msvcrt.locking`` on Windows), so it is released whenever the holder ends,
however it ends: no stale lock to remove by hand, and a note in the file never holds it.

Whoever holds the file open can hold its lock, so the file (``lock_rules.py`` says which) is this
account's or root's and closed to other accounts, in a directory no other account may write,
sticky or not (in ``/tmp`` anyone could create the lock first): root's default is
``/run/dgprov``, another account's is its own cache directory (where ``DGPROV_CACHE_DIR``
points; ``~/.cache/dgprov``), and on Windows ``%ProgramData%\\dgprov``, whose folder and file
must be this account's, SYSTEM's or the Administrators' (``windows_lock.py``).
``DGPROV_LOCK_FILE`` names another file, e.g. one root created for several service accounts.
Nothing falls back elsewhere: a place that will not do stops the run (exit 2) naming the path.
The file is opened without following a link and without waiting (a FIFO answers at once and is
refused). The holder writes who it is after the first byte, which is the one Windows locks; a
file that holds anything else is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import getpass
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from . import environment
from .errors import AlreadyRunning, UnsafePath, UsageError
from .lock_rules import (
    ELSEWHERE,
    NOT_A_LOCK,
    NOTE_LIMIT,
    already_running,
    directory_problem,
    file_problem,
    fix_for,
    holder_note,
    is_lock_content,
    kind_problem,
)

FILE_NAME = "dgprov-sync.lock"
HOLDER_BYTES = 300
ROOT_DIRECTORY = Path("/var/run/dgprov" if sys.platform == "darwin" else "/run/dgprov")
_OPEN_FLAGS = (
    getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOINHERIT", 0)
)


def default_path() -> Path:
    """This host's lock for this account: ``DGPROV_LOCK_FILE``, else the place above."""
    chosen = environment.get(environment.LOCK_FILE)
    if chosen:
        return Path(chosen)
    if sys.platform == "win32":
        shared_data = environment.get(environment.PROGRAM_DATA) or r"C:\ProgramData"
        return Path(shared_data) / "dgprov" / FILE_NAME
    if os.geteuid() == 0:
        return ROOT_DIRECTORY / FILE_NAME
    from .entra_auth import cache_directory

    return cache_directory() / FILE_NAME


def _try_lock(descriptor: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(descriptor, 0, os.SEEK_SET)
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(descriptor: int) -> str:
    """Who holds the lock, as the holder wrote it; printable characters only."""
    try:
        os.lseek(descriptor, 1, os.SEEK_SET)
        text = os.read(descriptor, HOLDER_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""
    return "".join(c for c in text if c.isprintable()).strip()


def _refused(path: Path, problem: str) -> UnsafePath:
    return UnsafePath(f"the lock file {path} {problem}: {fix_for(problem, str(path))}")


def _cannot(what: str, path: Path, exc: OSError, default: bool) -> UsageError:
    where = "this account's default place for the lock; " if default else ""
    return UsageError(f"cannot {what} {path} ({exc.strerror}; {where}{ELSEWHERE})")


def _checked(descriptor: int, path: Path, account: int | None) -> int:
    """The descriptor of an opened lock file, closed and refused if the file will not do."""
    status = os.fstat(descriptor)
    problem = file_problem(status.st_mode, status.st_uid, account)
    if problem is not None:
        os.close(descriptor)
        raise _refused(path, problem)
    return descriptor


def _open_in(directory: int, path: Path, default: bool) -> tuple[int, bool]:
    """The lock file, opened relative to its checked directory, and whether it is writable."""
    try:
        existing = os.stat(path.name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:  # a FIFO or a device is refused before it is ever opened
        problem = kind_problem(existing.st_mode)
        if problem is not None:
            raise _refused(path, problem)
    try:
        try:
            flags = os.O_RDWR | os.O_CREAT | _OPEN_FLAGS
            return os.open(path.name, flags, 0o600, dir_fd=directory), True
        except PermissionError as denied:  # root's file, shared: flock needs no write access
            try:
                return os.open(path.name, os.O_RDONLY | _OPEN_FLAGS, dir_fd=directory), False
            except FileNotFoundError:
                raise _cannot("create the lock file", path, denied, default) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a link
            raise _refused(path, "is a symbolic link") from None
        raise _cannot("open the lock file", path, exc, default) from None


def _open_posix(path: Path, default: bool) -> tuple[int, bool]:
    if sys.platform == "win32":
        raise NotImplementedError("POSIX only")
    account = os.geteuid()
    try:
        if default and account == 0:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path.parent, 0o700)  # in /run, which only root may write
        else:
            os.makedirs(path.parent, 0o700, exist_ok=True)
    except OSError as exc:
        raise _cannot("create the lock directory", path.parent, exc, default) from None
    try:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _cannot("open the lock directory", path.parent, exc, default) from None
    try:
        status = os.fstat(directory)
        problem = directory_problem(status.st_mode, status.st_uid, account)
        if problem is not None:
            raise UsageError(f"the lock directory {path.parent} {problem}: {ELSEWHERE}")
        descriptor, writable = _open_in(directory, path, default)
        return _checked(descriptor, path, account), writable
    finally:
        os.close(directory)


def _open_windows(path: Path, default: bool) -> tuple[int, bool]:
    """The folder and the file are opened and judged by handle (``windows_lock.py``); the
    descriptor's type is checked here as on POSIX, so a device is refused too."""
    from .windows_lock import open_windows_lock

    try:
        descriptor, _created = open_windows_lock(path)
    except OSError as exc:
        raise _cannot("open the lock file", path, exc, default) from None
    return _checked(descriptor, path, None), True


def _is_lock(descriptor: int) -> bool:
    """Whether the file holds what a lock holds, read while this run holds the lock."""
    try:
        os.lseek(descriptor, 0, os.SEEK_SET)
        return is_lock_content(os.read(descriptor, NOTE_LIMIT + 1))
    except OSError:
        return False


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # an account without a name (a container's bare uid)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _write_note(descriptor: int, job: str) -> None:
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    note = holder_note(job, os.getpid(), _user(), started)
    with contextlib.suppress(OSError):
        os.ftruncate(descriptor, 1)
        os.lseek(descriptor, 1, os.SEEK_SET)
        os.write(descriptor, note.encode())


@contextlib.contextmanager
def host_lock(
    path: Path | None = None, job: str = "sync", notify: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold this host's admin-job lock for the duration; ``AlreadyRunning`` if another run holds
    it, ``UsageError`` (exit 2, naming the path) if the lock file or its place will not do.
    ``notify`` hears where the lock is."""
    default = path is None and not environment.get(environment.LOCK_FILE)
    path = path or default_path()
    if sys.platform == "win32":
        descriptor, writable = _open_windows(path, default)
    else:
        descriptor, writable = _open_posix(path, default)
    try:
        try:
            locked = _try_lock(descriptor)
        except OSError as exc:  # e.g. a file system without locks
            raise _cannot("lock", path, exc, default) from None
        if not locked:
            raise AlreadyRunning(already_running(_holder(descriptor), str(path)))
        if not _is_lock(descriptor):  # e.g. a file DGPROV_LOCK_FILE names by mistake
            raise _refused(path, NOT_A_LOCK)
        if writable and (sys.platform == "win32" or os.fstat(descriptor).st_nlink == 1):
            _write_note(descriptor, job)  # never into a file with another name
        if notify is not None:
            notify(f"holding the lock {path} ({environment.LOCK_FILE} chooses another)")
        yield path
    finally:
        os.close(descriptor)  # releases the lock
