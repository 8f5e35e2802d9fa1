"""Opening the admin jobs' lock file on Windows (``host_lock.py`` locks it), by handle.

``%ProgramData%`` lets every user create folders and files, so a standard user could create
``%ProgramData%\\dgprov`` or its lock first and hold the lock with a forged note: what Windows
cannot stop, dgprov refuses. Windows has no descriptor-relative calls, so the folder and then the
file are opened with ``FILE_FLAG_OPEN_REPARSE_POINT`` (a link or junction is opened itself, never
followed), and each handle, not the path, is asked what it is and who owns it: only this account,
SYSTEM or the Administrators group will do. A folder or file this run created is its own. The
open handle becomes a C runtime descriptor, which ``msvcrt.locking`` locks.

``open_lock`` takes the Windows calls as an object (``LockHandles``), so every refusal is
unit-tested anywhere with a stand-in; the Windows lane runs the real calls under Wine.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from .errors import UnsafePath
from .lock_rules import ELSEWHERE, windows_handle_problem, windows_owner_problem
from .windows_files import WindowsFolderHandles

_GENERIC_READ, _GENERIC_WRITE, _READ_CONTROL = 0x80000000, 0x40000000, 0x00020000
_FILE_READ_ATTRIBUTES = 0x80
_FILE_SHARE_READ_WRITE = 0x1 | 0x2  # and not FILE_SHARE_DELETE: held, it cannot be renamed
_OPEN_EXISTING, _OPEN_ALWAYS, _ERROR_ALREADY_EXISTS = 3, 4, 183
_FILE_FLAG_BACKUP_SEMANTICS = 0x02000000  # needed to open a folder
_FILE_FLAG_OPEN_REPARSE_POINT = 0x00200000
_FILE_ATTRIBUTE_NORMAL = 0x80
_INVALID_HANDLE = ctypes.c_void_p(-1).value


class LockHandles(Protocol):
    """Open the folder, or the file (creating it), without following a link; ask a handle its
    attributes and owner; turn the file's handle into a descriptor; close a handle."""

    def open_folder(self, path: Path) -> Any: ...

    def open_file(self, path: Path) -> tuple[Any, bool]: ...

    def attributes(self, handle: Any) -> int: ...

    def owner(self, handle: Any) -> str: ...

    def descriptor(self, handle: Any) -> int: ...

    def close(self, handle: Any) -> None: ...


def _made(folder: Path) -> bool:
    """Create ``folder`` (and what is missing above it); whether this call created it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder)
    except FileExistsError:
        return False
    return True


def _checked(
    handle: Any, what: str, folder: bool, created: bool, calls: LockHandles, account: str
) -> None:
    """Refuse (``UnsafePath``, naming ``what``) a handle that is a link or of the wrong type,
    or, unless this run created it, owned by an account other than the ones allowed."""
    problem = windows_handle_problem(calls.attributes(handle), folder)
    if problem is None and not created:
        problem = windows_owner_problem(calls.owner(handle), account)
        if problem is not None:
            problem += ", who could create or replace the lock" if folder else ", who could hold it"
    if problem is not None:
        raise UnsafePath(f"{what} {problem}: remove it, or {ELSEWHERE}")


def open_lock(path: Path, account: str, calls: LockHandles | None = None) -> tuple[int, bool]:
    """The lock file's descriptor, its folder and itself checked on their handles, and whether
    this run created the file. ``account``: this process's SID. ``OSError`` if Windows refuses
    to create or open them (the caller names the path)."""
    calls = calls or WindowsLockHandles()
    created_folder = _made(path.parent)
    folder = calls.open_folder(path.parent)
    try:
        _checked(folder, f"the lock directory {path.parent}", True, created_folder, calls, account)
        handle, created = calls.open_file(path)
        try:
            _checked(handle, f"the lock file {path}", False, created, calls, account)
            return calls.descriptor(handle), created
        except BaseException:
            calls.close(handle)
            raise
    finally:
        calls.close(folder)  # the file's handle, open, keeps its own name


class WindowsLockHandles(WindowsFolderHandles):
    """The real calls: CreateFileW with READ_CONTROL for the owner, the rest as for folders."""

    def open_folder(self, path: Path) -> Any:
        return self._create(
            path, _FILE_READ_ATTRIBUTES | _READ_CONTROL, _OPEN_EXISTING,
            _FILE_FLAG_BACKUP_SEMANTICS | _FILE_FLAG_OPEN_REPARSE_POINT,
        )[0]  # fmt: skip

    def open_file(self, path: Path) -> tuple[Any, bool]:
        handle, error = self._create(
            path, _GENERIC_READ | _GENERIC_WRITE | _READ_CONTROL, _OPEN_ALWAYS,
            _FILE_ATTRIBUTE_NORMAL | _FILE_FLAG_OPEN_REPARSE_POINT,
        )  # fmt: skip
        return handle, error != _ERROR_ALREADY_EXISTS

    def descriptor(self, handle: Any) -> int:
        import msvcrt

        flags = os.O_RDWR | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
        descriptor: int = msvcrt.open_osfhandle(handle, flags)  # type: ignore[attr-defined,unused-ignore]
        return descriptor

    def _create(self, path: Path, access: int, disposition: int, flags: int) -> tuple[Any, int]:
        """A handle and the error Windows set (OPEN_ALWAYS says whether the file existed)."""
        handle = self._kernel.CreateFileW(
            str(path), access, _FILE_SHARE_READ_WRITE, None, disposition, flags, None
        )
        error = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
        if handle is None or handle == _INVALID_HANDLE:
            raise OSError(error, ctypes.FormatError(error), str(path))  # type: ignore[attr-defined,unused-ignore]
        return handle, error


def open_windows_lock(path: Path) -> tuple[int, bool]:
    """``open_lock`` with the real calls and this process's SID."""
    if sys.platform != "win32":
        raise OSError("the Windows lock needs Windows")
    from .windows_accounts import current_sid

    return open_lock(path, current_sid())
