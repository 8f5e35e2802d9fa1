"""One ``dgprov sync`` at a time on a host: an operating-system lock on a file.

Two overlapping runs would each issue tokens for the same members, the later one destroying the
earlier one's (Defguard deletes a user's unused tokens on every issue). The lock is the kernel's
(``flock`` on POSIX, ``msvcrt.locking`` on Windows), so it is released whenever the holder ends,
however it ends: no stale lock to remove by hand. The file lives in a per-host place every
account can reach (``/run/lock`` or the temporary directory; ``%ProgramData%`` on Windows), or
where ``DGPROV_LOCK_FILE`` says. The holder writes who it is after the first byte, which is the
one Windows locks, so the refused run can name it. Several hosts need a lock of their own
choosing; the README says so.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from . import environment
from .errors import AlreadyRunning, UsageError

FILE_NAME = "dgprov-sync.lock"
HOLDER_BYTES = 300


def default_path() -> Path:
    """The host's lock file: shared by every account and every service sandbox on the host."""
    chosen = environment.get(environment.LOCK_FILE)
    if chosen:
        return Path(chosen)
    if sys.platform == "win32":
        shared_data = environment.get(environment.PROGRAM_DATA) or r"C:\ProgramData"
        return Path(shared_data) / "dgprov" / FILE_NAME
    shared = Path("/run/lock")  # not /tmp: systemd's PrivateTmp= gives each service its own
    if shared.is_dir() and os.access(shared, os.W_OK):
        return shared / FILE_NAME
    return Path(tempfile.gettempdir()) / FILE_NAME


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
        return "unknown"
    shown = "".join(c for c in text if c.isprintable()).strip()
    return shown or "unknown"


def _open(path: Path) -> tuple[int, bool]:
    """The lock file's descriptor and whether this process may write who it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, os.O_RDWR | flags, 0o644), True
    except PermissionError:
        pass  # another account's file: locking needs no write access on POSIX
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)), False
    except OSError as exc:
        raise UsageError(
            f"cannot open the lock file {path} ({exc.strerror}); set "
            f"{environment.LOCK_FILE} to a file this account can open"
        ) from None


def _own_file(descriptor: int) -> bool:
    """Whether the holder's note may go into the opened file: a regular file of this account
    with one name. The default place is writable by every account, and O_NOFOLLOW stops a
    symbolic link but not a hard link: root must not truncate a file someone linked there."""
    if sys.platform == "win32":
        return True
    status = os.fstat(descriptor)
    return stat.S_ISREG(status.st_mode) and status.st_nlink == 1 and status.st_uid == os.geteuid()


@contextlib.contextmanager
def host_lock(path: Path | None = None) -> Iterator[Path]:
    """Hold the host's sync lock for the duration; ``AlreadyRunning`` if another run holds it."""
    path = path or default_path()
    try:
        descriptor, writable = _open(path)
    except OSError as exc:
        raise UsageError(
            f"cannot create the lock file {path} ({exc.strerror}); set "
            f"{environment.LOCK_FILE} to a file this account can create"
        ) from None
    try:
        if not _try_lock(descriptor):
            raise AlreadyRunning(
                f"another dgprov sync is running on this host ({_holder(descriptor)}; lock "
                f"{path}): this run did nothing. Let that run finish (the lock is released "
                "when it ends), and schedule runs further apart than one run takes"
            )
        if writable and _own_file(descriptor):
            started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            note = f" pid {os.getpid()}, user {getpass.getuser()}, started {started}"
            with contextlib.suppress(OSError):
                os.ftruncate(descriptor, 1)
                os.lseek(descriptor, 1, os.SEEK_SET)
                os.write(descriptor, note.encode())
        yield path
    finally:
        os.close(descriptor)  # releases the lock
