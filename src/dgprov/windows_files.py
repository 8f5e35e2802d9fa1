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


class FolderHandles(Protocol):
    """Open a folder without following it or letting it move, ask its attributes, close it."""

    def open(self, path: Path) -> Any: ...

    def attributes(self, handle: Any) -> int: ...

    def close(self, handle: Any) -> None: ...


@contextlib.contextmanager
def pinned_folders(
    below: Path, parent: Path, handles: FolderHandles | None = None
) -> Iterator[None]:
    """Hold every folder from ``below`` down to ``parent`` open and checked, creating the
    missing ones, until the block ends; a link or junction among them is ``UnsafePath``."""
    calls = handles or WindowsFolderHandles()
    held: list[Any] = []
    try:
        folder = below
        for name in (None, *parent.relative_to(below).parts):
            if name is not None:
                if name in (".", ".."):
                    raise UnsafePath(
                        f"{folder}: a path written for another user may not hold {name!r}"
                    )
                folder = folder / name
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder)  # in a pinned, checked parent; checked itself just below
            handle = calls.open(folder)
            held.append(handle)
            attributes = calls.attributes(handle)
            if attributes & FILE_ATTRIBUTE_REPARSE_POINT:
                raise UnsafePath(
                    f"{folder} is a symbolic link or junction, and dgprov does not write "
                    "through links: remove it and run again"
                )
            if not attributes & FILE_ATTRIBUTE_DIRECTORY:
                raise UnsafePath(f"{folder}: not a folder; remove it and run again")
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
        self._kernel: Any = kernel

    def open(self, path: Path) -> Any:
        handle = self._kernel.CreateFileW(
            str(path), _FILE_READ_ATTRIBUTES, _FILE_SHARE_READ_WRITE, None, _OPEN_EXISTING,
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
