"""The Windows lock's folder and file judged on their handles (``windows_lock.open_lock``), with
the Windows calls behind a stand-in: Wine has one account and makes no junctions, so who owns
what and a reparse point are put to the test here; the Windows lane locks for real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dgprov.errors import UnsafePath
from dgprov.lock_rules import ADMINISTRATORS_SID
from dgprov.windows_accounts import LOCAL_SYSTEM_SID
from dgprov.windows_files import FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT
from dgprov.windows_lock import open_lock

from .windows_fakes import USER_SID

ANOTHER_USER = "S-1-5-21-1-2-3-1107"


class FakeLockHandles:
    """Handles are paths; ``owners`` by name (this account's by default); ``links`` are reparse
    points. The file is opened for real, so its descriptor is one."""

    def __init__(self, owners: dict[str, str] | None = None, links: frozenset[str] = frozenset()):
        self.owners = owners or {}
        self.links = links
        self.asked: list[str] = []
        self.open: set[Path] = set()

    def open_folder(self, path: Path) -> Path:
        self.open.add(path)
        return path

    def open_file(self, path: Path) -> tuple[Path, bool]:
        created = not path.exists()
        path.touch()
        self.open.add(path)
        return path, created

    def attributes(self, handle: Path) -> int:
        kind = FILE_ATTRIBUTE_DIRECTORY if handle.is_dir() else 0
        return kind | (FILE_ATTRIBUTE_REPARSE_POINT if handle.name in self.links else 0)

    def owner(self, handle: Path) -> str:
        self.asked.append(handle.name)
        return self.owners.get(handle.name, USER_SID)

    def descriptor(self, handle: Path) -> int:
        self.open.discard(handle)
        return os.open(handle, os.O_RDWR)

    def close(self, handle: Path) -> None:
        self.open.discard(handle)


def opened(path: Path, calls: FakeLockHandles) -> bool:
    descriptor, created = open_lock(path, USER_SID, calls)
    os.close(descriptor)
    assert calls.open == set()  # every handle closed or handed to the descriptor
    return created


@pytest.mark.parametrize("who", [ANOTHER_USER, "S-1-5-32-545"])  # a user; the Users group
@pytest.mark.parametrize("what", ["folder", "file"])
def test_a_folder_or_file_another_account_owns_is_refused_naming_it(
    tmp_path: Path, who: str, what: str
) -> None:
    """%ProgramData% lets every user create folders and files: one made there first by a
    standard user could be held by them forever, with a forged note."""
    folder = tmp_path / "dgprov"
    folder.mkdir()
    path = folder / "dgprov-sync.lock"
    if what == "file":
        path.write_bytes(b"")
    calls = FakeLockHandles({(folder if what == "folder" else path).name: who})
    named = f"the lock directory {folder}" if what == "folder" else f"the lock file {path}"
    with pytest.raises(UnsafePath) as refused:
        opened(path, calls)
    assert str(refused.value).startswith(f"{named} belongs to another account ({who})")
    assert "DGPROV_LOCK_FILE" in str(refused.value)
    assert calls.open == set()
    assert path.exists() == (what == "file")  # nothing made in another account's folder


@pytest.mark.parametrize("who", [USER_SID, LOCAL_SYSTEM_SID, ADMINISTRATORS_SID])
def test_this_account_system_and_administrators_may_own_them(tmp_path: Path, who: str) -> None:
    folder = tmp_path / "dgprov"
    folder.mkdir()
    path = folder / "dgprov-sync.lock"
    path.write_bytes(b"")
    calls = FakeLockHandles({"dgprov": who, path.name: who})
    assert not opened(path, calls)
    assert calls.asked == ["dgprov", path.name]


def test_what_this_run_creates_is_its_own(tmp_path: Path) -> None:
    """%ProgramData%\\dgprov missing: created here, it is this run's, whoever Windows names
    as its owner (an administrator's new folder may belong to the Administrators group)."""
    path = tmp_path / "ProgramData" / "dgprov" / "dgprov-sync.lock"
    calls = FakeLockHandles({"dgprov": "S-1-5-32-545", path.name: "S-1-5-32-545"})
    assert opened(path, calls)
    assert calls.asked == []
    assert path.is_file()


@pytest.mark.parametrize("where", ["folder", "file"])
def test_a_reparse_point_is_refused_by_its_handle(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "dgprov"
    folder.mkdir()
    path = folder / "dgprov-sync.lock"
    path.write_bytes(b"")
    calls = FakeLockHandles(links=frozenset({folder.name if where == "folder" else path.name}))
    named = f"the lock directory {folder}" if where == "folder" else f"the lock file {path}"
    with pytest.raises(UnsafePath, match=f"^{named} is a link \\(a reparse point\\)"):
        opened(path, calls)
    assert calls.open == set()


def test_a_file_where_the_folder_belongs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dgprov").write_bytes(b"")
    with pytest.raises(UnsafePath, match=f"^the lock directory {tmp_path / 'dgprov'} is not a"):
        opened(tmp_path / "dgprov" / "dgprov-sync.lock", FakeLockHandles())
