"""Writing into another user's profile on Windows without following their links.

SYSTEM (an installer, Intune, SCCM) writes ``provisioning.json`` into the console user's
profile, every folder of which that user controls: they could turn ``AppData\\Roaming\\
net.defguard`` into a junction to ``C:\\Windows\\System32`` and have SYSTEM write there. Windows
has no descriptor-relative calls, so instead each folder from the profile down is opened by
handle, with ``FILE_FLAG_OPEN_REPARSE_POINT`` (a junction is opened itself, not followed) and
without ``FILE_SHARE_DELETE`` (while dgprov holds the handle nobody can rename, delete or replace
that folder). Each handle is then asked, not the path, whether it is a reparse point or not a
folder; either is refused. The file itself is written under those pinned folders.

``pinned_folders`` takes the Windows calls as an object (``FolderHandles``), so the decision is
unit-tested anywhere; the Windows lane runs the real calls under Wine, where a pinned folder
indeed cannot be renamed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .errors import UnsafePath

FILE_ATTRIBUTE_DIRECTORY = 0x10
FILE_ATTRIBUTE_REPARSE_POINT = 0x400
_FILE_READ_ATTRIBUTES = 0x80
_FILE_SHARE_READ_WRITE = 0x1 | 0x2  # and not FILE_SHARE_DELETE (0x4)
_OPEN_EXISTING = 3
_FILE_FLAG_BACKUP_SEMANTICS = 0x02000000  # needed to open a folder
_FILE_FLAG_OPEN_REPARSE_POINT = 0x00200000
_FILE_ATTRIBUTE_TAG_INFO = 9  # FILE_INFO_BY_HANDLE_CLASS.FileAttributeTagInfo
_INVALID_HANDLE = ctypes.c_void_p(-1).value
_READ_CONTROL, _WRITE_OWNER, _GENERIC_WRITE = 0x00020000, 0x00080000, 0x40000000
_CREATE_NEW, _FILE_ATTRIBUTE_NORMAL, _ERROR_FILE_EXISTS = 1, 0x80, 80
_SE_FILE_OBJECT, _OWNER_SECURITY_INFORMATION = 1, 0x1
_TOKEN_ADJUST_PRIVILEGES, _TOKEN_QUERY, _SE_PRIVILEGE_ENABLED = 0x20, 0x8, 0x2
_PATH_LIMIT = 32768


class FolderHandles(Protocol):
    """Open a folder without following it or letting it move, ask its attributes, hand it to
    another owner, close it."""

    def open(self, path: Path, for_new_owner: bool = False) -> Any: ...

    def attributes(self, handle: Any) -> int: ...

    def set_owner(self, handle: Any, sid: str) -> None: ...

    def final_path(self, handle: Any) -> str: ...

    def close(self, handle: Any) -> None: ...


def same_place(final: str, expected: Path) -> bool:
    """Whether a handle's final path is ``expected``, compared as Windows compares paths."""
    return os.path.normcase(os.path.normpath(final)) == os.path.normcase(
        os.path.normpath(str(expected))
    )


@contextlib.contextmanager
def pinned_folders(
    below: Path, parent: Path, handles: FolderHandles | None = None, owner: str | None = None
) -> Iterator[None]:
    """Hold every folder from ``below`` down to ``parent`` open and checked, creating the
    missing ones, until the block ends; a link or junction among them is ``UnsafePath``.
    ``owner`` (a SID): the folders created here are handed to that account, by handle."""
    calls = handles or WindowsFolderHandles()
    held: list[Any] = []
    try:
        folder = below
        for name in (None, *parent.relative_to(below).parts):
            created = False
            if name is not None:
                if name in (".", ".."):
                    raise UnsafePath(
                        f"{folder}: a path written for another user may not hold {name!r}"
                    )
                folder = folder / name
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder)  # in a pinned, checked parent; checked itself just below
                    created = True
            handle = calls.open(folder, for_new_owner=created and owner is not None)
            held.append(handle)
            attributes = calls.attributes(handle)
            if attributes & FILE_ATTRIBUTE_REPARSE_POINT:
                raise UnsafePath(
                    f"{folder} is a symbolic link or junction, and dgprov does not write "
                    "through links: remove it and run again"
                )
            if not attributes & FILE_ATTRIBUTE_DIRECTORY:
                raise UnsafePath(f"{folder}: not a folder; remove it and run again")
            # An empty folder can become a junction in place (its owner may set a reparse
            # point on it despite the handle), after which the next name would be created
            # elsewhere: where each opened folder really is settles it.
            if not same_place(calls.final_path(handle), folder):
                raise UnsafePath(
                    f"{folder} leads elsewhere (a junction was made while dgprov worked): "
                    "remove it and run again"
                )
            if created and owner is not None:
                calls.set_owner(handle, owner)
        yield
    finally:
        for handle in reversed(held):
            calls.close(handle)


class WindowsFolderHandles:
    """The real calls: CreateFileW, GetFileInformationByHandleEx, CloseHandle."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError("folder handles need Windows")
        from ctypes import wintypes

        kernel = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        kernel.CreateFileW.restype = wintypes.HANDLE
        kernel.CreateFileW.argtypes = [
            wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
            wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE,
        ]  # fmt: skip
        kernel.GetFileInformationByHandleEx.argtypes = [
            wintypes.HANDLE, ctypes.c_int, wintypes.LPVOID, wintypes.DWORD,
        ]  # fmt: skip
        kernel.CloseHandle.argtypes = [wintypes.HANDLE]
        kernel.GetFinalPathNameByHandleW.argtypes = [
            wintypes.HANDLE, wintypes.LPWSTR, wintypes.DWORD, wintypes.DWORD,
        ]  # fmt: skip
        advapi = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        advapi.SetSecurityInfo.argtypes = [
            wintypes.HANDLE, ctypes.c_int, wintypes.DWORD, wintypes.LPVOID,
            wintypes.LPVOID, wintypes.LPVOID, wintypes.LPVOID,
        ]  # fmt: skip
        advapi.GetSecurityInfo.argtypes = [
            wintypes.HANDLE, ctypes.c_int, wintypes.DWORD, ctypes.POINTER(wintypes.LPVOID),
            wintypes.LPVOID, wintypes.LPVOID, wintypes.LPVOID, ctypes.POINTER(wintypes.LPVOID),
        ]  # fmt: skip
        self._kernel: Any = kernel
        self._advapi: Any = advapi
        self._restore_enabled: bool = False

    def open(self, path: Path, for_new_owner: bool = False) -> Any:
        access = _FILE_READ_ATTRIBUTES | (_READ_CONTROL | _WRITE_OWNER if for_new_owner else 0)
        handle = self._kernel.CreateFileW(
            str(path), access, _FILE_SHARE_READ_WRITE, None, _OPEN_EXISTING,
            _FILE_FLAG_BACKUP_SEMANTICS | _FILE_FLAG_OPEN_REPARSE_POINT, None,
        )  # fmt: skip
        if handle is None or handle == _INVALID_HANDLE:
            reason = ctypes.FormatError(ctypes.get_last_error())  # type: ignore[attr-defined,unused-ignore]
            raise UnsafePath(f"{path}: cannot open it to check it ({reason})")
        return handle

    def attributes(self, handle: Any) -> int:
        info = (ctypes.c_uint32 * 2)()  # FILE_ATTRIBUTE_TAG_INFO: attributes, reparse tag
        if not self._kernel.GetFileInformationByHandleEx(
            handle, _FILE_ATTRIBUTE_TAG_INFO, ctypes.byref(info), ctypes.sizeof(info)
        ):
            raise UnsafePath("cannot read a folder's attributes by its handle")
        return int(info[0])

    def close(self, handle: Any) -> None:
        self._kernel.CloseHandle(handle)

    def final_path(self, handle: Any) -> str:
        """Where the handle's object really is, links resolved (``\\\\?\\`` dropped)."""
        buffer = ctypes.create_unicode_buffer(_PATH_LIMIT)
        length = self._kernel.GetFinalPathNameByHandleW(handle, buffer, _PATH_LIMIT, 0)
        if not 0 < length < _PATH_LIMIT:
            raise UnsafePath("cannot tell where a folder dgprov opened really is")
        return buffer.value.removeprefix("\\\\?\\")

    def create_file(self, path: Path) -> Any:
        """A new file (never an existing name or a link), open for writing and for a new owner."""
        handle = self._kernel.CreateFileW(
            str(path), _GENERIC_WRITE | _READ_CONTROL | _WRITE_OWNER, 0, None, _CREATE_NEW,
            _FILE_ATTRIBUTE_NORMAL, None,
        )  # fmt: skip
        if handle is None or handle == _INVALID_HANDLE:
            error = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
            if error == _ERROR_FILE_EXISTS:
                raise FileExistsError(str(path))
            raise OSError(error, ctypes.FormatError(error), str(path))  # type: ignore[attr-defined,unused-ignore]
        return handle

    def set_owner(self, handle: Any, sid: str) -> None:
        """Hand the object to ``sid``. Naming another account as owner needs SeRestorePrivilege,
        which SYSTEM and administrators hold but have to switch on first."""
        from ctypes import wintypes

        self._enable_restore_privilege()
        binary = wintypes.LPVOID()
        if not self._advapi.ConvertStringSidToSidW(sid, ctypes.byref(binary)):
            raise UnsafePath(f"{sid}: not a SID Windows accepts")
        try:
            status = self._advapi.SetSecurityInfo(
                handle, _SE_FILE_OBJECT, _OWNER_SECURITY_INFORMATION, binary, None, None, None
            )
        finally:
            self._kernel.LocalFree(binary)
        if status != 0:
            raise UnsafePath(f"cannot hand the file to {sid} ({ctypes.FormatError(status)})")  # type: ignore[attr-defined,unused-ignore]

    def owner(self, handle: Any) -> str:
        """The owner's SID, read from a handle opened with READ_CONTROL."""
        from ctypes import wintypes

        sid, descriptor = wintypes.LPVOID(), wintypes.LPVOID()
        status = self._advapi.GetSecurityInfo(
            handle, _SE_FILE_OBJECT, _OWNER_SECURITY_INFORMATION, ctypes.byref(sid),
            None, None, None, ctypes.byref(descriptor),
        )  # fmt: skip
        if status != 0:
            raise OSError(status, "GetSecurityInfo failed")
        try:
            text = wintypes.LPWSTR()
            if not self._advapi.ConvertSidToStringSidW(sid, ctypes.byref(text)):
                raise OSError("ConvertSidToStringSidW failed")
            value = str(text.value)
            self._kernel.LocalFree(text)
            return value
        finally:
            self._kernel.LocalFree(descriptor)

    def _enable_restore_privilege(self) -> None:
        if self._restore_enabled:
            return
        from ctypes import wintypes

        class Privilege(ctypes.Structure):
            _fields_ = [
                ("count", wintypes.DWORD),
                ("low", wintypes.DWORD),
                ("high", wintypes.LONG),
                ("attributes", wintypes.DWORD),
            ]

        token = wintypes.HANDLE()
        self._kernel.GetCurrentProcess.restype = wintypes.HANDLE
        self._advapi.OpenProcessToken.argtypes = [
            wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE),
        ]  # fmt: skip
        if not self._advapi.OpenProcessToken(
            self._kernel.GetCurrentProcess(),
            _TOKEN_ADJUST_PRIVILEGES | _TOKEN_QUERY,
            ctypes.byref(token),
        ):
            return  # then SetSecurityInfo says what is missing
        try:
            privilege = Privilege(1, 0, 0, _SE_PRIVILEGE_ENABLED)
            luid = (wintypes.DWORD * 2)()
            if self._advapi.LookupPrivilegeValueW(None, "SeRestorePrivilege", ctypes.byref(luid)):
                privilege.low, privilege.high = luid[0], luid[1]
                self._advapi.AdjustTokenPrivileges(
                    token, False, ctypes.byref(privilege), 0, None, None
                )
        finally:
            self._kernel.CloseHandle(token)
        self._restore_enabled = True


def write_new_file(path: Path, data: bytes, owner: str | None) -> None:
    """Create ``path`` (a new name, in a pinned folder) with ``data`` and flush it to disk; with
    ``owner`` (a SID) that account owns it, set on the handle before the first byte. Once the
    file exists its folder is not empty, so no junction can be made of it any more; that the
    new file is where it should be is checked on its handle."""
    import msvcrt

    calls = WindowsFolderHandles()
    handle = calls.create_file(path)
    try:
        if not same_place(calls.final_path(handle), path):
            raise UnsafePath(f"{path.parent} leads elsewhere (a junction): remove it, run again")
        if owner is not None:
            calls.set_owner(handle, owner)
        descriptor = msvcrt.open_osfhandle(handle, os.O_WRONLY | getattr(os, "O_BINARY", 0))  # type: ignore[attr-defined,unused-ignore]
    except BaseException:
        calls.close(handle)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
