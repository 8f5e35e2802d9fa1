"""Files that may hold secrets or personal data: created readable by their owner only.

Reports, ``provisioning.json``, WireGuard configurations, the enrollment state, the fallback
sign-in cache and the client job's log all go through here, so that the rules live in one place:
0600 from the first byte, replaced atomically, never half-written, and never written through a
link. The last rule matters when dgprov runs as root (or SYSTEM) and writes into another user's
profile: that user owns every directory below their home and could turn any of them into a link
to a place they may not write themselves. So below such a directory every name is opened relative
to the descriptor of its parent, without following links, and the file and the directories
created for it are handed over through the descriptors dgprov opened, never by path name.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any, TextIO, TypeVar

from .errors import UnsafePath, UsageError

_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY: int = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
# Windows has no descriptor-relative calls; there the path is checked name by name instead.
_BY_DESCRIPTOR = (
    {os.open, os.mkdir, os.rename, os.stat, os.unlink} <= os.supports_dir_fd
    and hasattr(os, "fchown")
    and _NOFOLLOW != 0
)

_Made = TypeVar("_Made")
PosixOwner = tuple[int, int]  # (uid, gid)
Owner = PosixOwner | str  # or, on Windows, the account's SID


def is_link(info: Any) -> bool:
    """A symbolic link, or on Windows any reparse point (junction, mount point, symlink)."""
    attributes: int = getattr(info, "st_file_attributes", 0)
    return stat.S_ISLNK(info.st_mode) or bool(attributes & stat.FILE_ATTRIBUTE_REPARSE_POINT)


def _link_refused(path: Path) -> UnsafePath:
    return UnsafePath(
        f"{path} is a symbolic link or junction, and dgprov does not write through links: "
        "remove it and run again"
    )


def write_private_file(
    path: Path,
    data: bytes | Iterable[str],
    *,
    below: Path | None = None,
    owner: Owner | None = None,
) -> None:
    """Atomically replace ``path`` with ``data``, readable by its owner only (0600).

    The file is created 0600 before anything is written, so no secret is ever readable by
    others, not even while it is being written; a failure leaves the old file as it was. A link
    at ``path`` is refused (``UnsafePath``), never followed or replaced.

    ``below``: a directory whose own path is trusted (another user's home, from the password
    database) but whose contents are not; no name below it is followed, a link among them is
    refused, and the directories missing are created 0700. ``owner`` (uid, gid): hand the file
    and the directories created for it to that user.
    """
    if not _BY_DESCRIPTOR:
        if owner is not None and not isinstance(owner, str):
            raise UsageError("handing a file to another user needs a POSIX system")
        _write_by_name(path, data, below, owner)
        return
    if isinstance(owner, str):
        raise UsageError("an owner given as a SID needs Windows")
    directory = _open_directory(path.parent, below, owner)
    try:
        _replace_at(directory, path, data, owner)
    finally:
        os.close(directory)


def _open_directory(parent: Path, below: Path | None, owner: PosixOwner | None) -> int:
    """A descriptor of ``parent``: through the path up to ``below``, then name by name."""
    if below is None:
        parent.mkdir(parents=True, exist_ok=True)  # the caller's own path: its links are its own
        return os.open(parent, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    descriptor = os.open(below, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    shown = below
    try:
        for name in parent.relative_to(below).parts:
            shown = shown / name
            child = _child_directory(descriptor, name, shown, owner)
            os.close(descriptor)
            descriptor = child
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _child_directory(parent: int, name: str, shown: Path, owner: PosixOwner | None) -> int:
    """Open (creating it 0700 if missing) the directory ``name`` in ``parent``, never a link."""
    if sys.platform == "win32":  # _BY_DESCRIPTOR is False there: never called
        raise AssertionError("POSIX only")
    if name in (".", ".."):
        raise UnsafePath(f"{shown}: a path written for another user may not contain {name!r}")
    created = False
    with suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)
        created = True
    try:
        child = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=parent)
    except OSError as exc:
        _refuse_link_at(parent, name, shown)
        raise UnsafePath(f"{shown}: cannot open it as a directory ({exc.strerror})") from None
    # Hand over only what this process made: a directory swapped in since belongs to its maker.
    if created and owner is not None and os.fstat(child).st_uid == os.geteuid():
        os.fchown(child, *owner)
    return child


def _refuse_link_at(directory: int, name: str, shown: Path) -> None:
    try:
        info = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return
    if is_link(info):
        raise _link_refused(shown)


def _replace_at(
    directory: int, path: Path, data: bytes | Iterable[str], owner: PosixOwner | None
) -> None:
    if sys.platform == "win32":  # _BY_DESCRIPTOR is False there: never called
        raise AssertionError("POSIX only")
    _refuse_link_at(directory, path.name, path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    temporary, descriptor = _new_temporary(
        path, lambda name: os.open(name, flags, 0o600, dir_fd=directory)
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            os.fchmod(handle.fileno(), 0o600)
            _write_data(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        # rename() replaces the name itself: a link swapped in since the check is replaced, not
        # followed.
        os.rename(temporary, path.name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory)
        raise


def _new_temporary(path: Path, create: Callable[[str], _Made]) -> tuple[str, _Made]:
    """A fresh ``.<name>.<random>`` beside ``path``, made by ``create``, which must refuse a
    name that exists (``FileExistsError``): a name planted in advance is never reused."""
    for _ in range(100):
        name = f".{path.name}.{secrets.token_hex(6)}"
        try:
            return name, create(name)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary name")


def _write_data(handle: Any, data: bytes | Iterable[str]) -> None:
    if isinstance(data, bytes):
        handle.write(data)
    else:
        for chunk in data:
            handle.write(chunk.encode())


def refuse_links(path: Path, below: Path | None, lstat: Callable[[Path], Any] = os.lstat) -> None:
    """Refuse a link or junction at ``path`` or, with ``below``, at any name between the two.

    Where names cannot be opened relative to a directory (Windows) this check by name is what
    stands between a junction in a user's profile and SYSTEM writing through it.
    """
    if below is None:
        names = [path]
    else:
        parts = path.relative_to(below).parts
        names = [below.joinpath(*parts[: n + 1]) for n in range(len(parts))]
    for name in names:
        try:
            info = lstat(name)
        except FileNotFoundError:
            return
        if is_link(info):
            raise _link_refused(name)


def _write_by_name(
    path: Path, data: bytes | Iterable[str], below: Path | None, owner: Owner | None = None
) -> None:
    if below is not None and sys.platform == "win32":
        # Another user's profile: its folders are held open, checked by handle, until written;
        # with ``owner`` (a SID) the folders made and the file are handed over by handle.
        from .windows_files import pinned_folders

        sid = owner if isinstance(owner, str) else None
        with pinned_folders(below, path.parent, owner=sid):
            refuse_links(path, None)
            _replace_in_pinned_folder(path, data, sid)
        return
    refuse_links(path, below)
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_by_name(path, data)


def _replace_by_name(path: Path, data: bytes | Iterable[str]) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temporary, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            _write_data(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _replace_in_pinned_folder(path: Path, data: bytes | Iterable[str], sid: str | None) -> None:
    """``_replace_by_name`` for a folder ``windows_files.pinned_folders`` holds: the temporary
    file created and checked by handle (and handed to ``sid``), then renamed over ``path``."""
    from .windows_files import write_new_file

    content = data if isinstance(data, bytes) else "".join(data).encode()
    name, _ = _new_temporary(path, lambda name: write_new_file(path.parent / name, content, sid))
    temporary = path.parent / name
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def open_private_log(path: Path) -> TextIO:
    """``path`` opened for appending, created 0600; never through a link, never another user's
    file, never a FIFO or device, never a file with a second name (a hard link)."""
    if not _NOFOLLOW:
        refuse_links(path, None)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC | _NONBLOCK
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as exc:
        try:
            linked = is_link(os.lstat(path))
        except OSError:
            linked = False
        if linked:
            raise _link_refused(path) from None
        raise UsageError(f"{path}: cannot open the log file ({exc.strerror})") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{path}: not a regular file; choose another --log-file")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise UnsafePath(
                f"{path}: the file belongs to another user; remove it or choose another --log-file"
            )
        if info.st_nlink > 1:
            raise UnsafePath(f"{path}: the file has other names (hard links); choose another one")
        if hasattr(os, "fchmod") and stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(descriptor, 0o600)
        return os.fdopen(descriptor, "a", encoding="utf-8")
    except BaseException:
        os.close(descriptor)
        raise
