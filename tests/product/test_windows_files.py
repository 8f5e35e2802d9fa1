"""Pinning the folders of another user's profile before SYSTEM writes there (Windows), with the
Windows calls behind a stand-in: Wine creates no junctions, so the refusal is tested here; the
Windows lane shows that a pinned folder cannot be renamed."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgprov.errors import UnsafePath
from dgprov.windows_files import (
    FILE_ATTRIBUTE_DIRECTORY,
    FILE_ATTRIBUTE_REPARSE_POINT,
    pinned_folders,
)


class FakeHandles:
    """Folders by name; ``links`` are reparse points, ``files`` are not folders, ``elsewhere``
    were made junctions in place after they were opened (their final path is another)."""

    def __init__(
        self,
        links: frozenset[str] = frozenset(),
        files: frozenset[str] = frozenset(),
        elsewhere: frozenset[str] = frozenset(),
    ) -> None:
        self.links, self.files, self.elsewhere = links, files, elsewhere
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.owners: dict[str, str] = {}
        self.paths: dict[str, Path] = {}

    def open(self, path: Path, for_new_owner: bool = False) -> str:
        self.opened.append(path.name)
        self.paths[path.name] = path
        return path.name

    def set_owner(self, handle: str, sid: str) -> None:
        self.owners[handle] = sid

    def final_path(self, handle: str) -> str:
        if handle in self.elsewhere:
            return "C:\\Windows\\System32\\" + handle
        return str(self.paths[handle])

    def attributes(self, handle: str) -> int:
        if handle in self.links:
            return FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT
        return 0 if handle in self.files else FILE_ATTRIBUTE_DIRECTORY

    def close(self, handle: str) -> None:
        self.closed.append(handle)


def test_every_folder_is_held_until_the_write_is_done(tmp_path: Path) -> None:
    handles = FakeHandles()
    home = tmp_path / "jdoe"
    home.mkdir()
    with pinned_folders(home, home / "AppData" / "Roaming" / "net.defguard", handles):
        assert handles.opened == ["jdoe", "AppData", "Roaming", "net.defguard"]
        assert handles.closed == []  # held while the file is written
        assert (home / "AppData" / "Roaming" / "net.defguard").is_dir()  # the missing ones made
    assert handles.closed == ["net.defguard", "Roaming", "AppData", "jdoe"]


def test_a_junction_in_the_profile_is_refused_and_nothing_below_it_made(tmp_path: Path) -> None:
    handles = FakeHandles(links=frozenset({"Roaming"}))
    home = tmp_path / "jdoe"
    (home / "AppData" / "Roaming").mkdir(parents=True)
    target = home / "AppData" / "Roaming" / "net.defguard"
    refused = pytest.raises(UnsafePath, match="Roaming is a symbolic link or junction")
    with refused, pinned_folders(home, target, handles):
        pytest.fail("wrote through a junction")
    assert not (home / "AppData" / "Roaming" / "net.defguard").exists()
    assert sorted(handles.closed) == sorted(handles.opened)  # every handle closed


def test_a_file_where_a_folder_belongs_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "jdoe"
    (home / "AppData").mkdir(parents=True)
    (home / "AppData" / "Roaming").write_text("")
    refused = pytest.raises(UnsafePath, match="not a folder")
    with (
        refused,
        pinned_folders(
            home, home / "AppData" / "Roaming", FakeHandles(files=frozenset({"Roaming"}))
        ),
    ):
        pass


def test_only_the_folders_made_here_are_handed_to_the_user(tmp_path: Path) -> None:
    handles = FakeHandles()
    home = tmp_path / "jdoe"
    (home / "AppData").mkdir(parents=True)
    target = home / "AppData" / "Roaming" / "net.defguard"
    with pinned_folders(home, target, handles, owner="S-1-5-21-1-2-3-1107"):
        pass
    assert handles.owners == {
        "Roaming": "S-1-5-21-1-2-3-1107",
        "net.defguard": "S-1-5-21-1-2-3-1107",
    }


def test_a_folder_made_a_junction_in_place_is_caught_by_where_it_leads(tmp_path: Path) -> None:
    """An empty folder's owner can set a reparse point on it while dgprov holds it; the next
    folder would then be made elsewhere. Where the opened folder really is gives it away."""
    handles = FakeHandles(elsewhere=frozenset({"net.defguard"}))
    home = tmp_path / "jdoe"
    home.mkdir()
    refused = pytest.raises(UnsafePath, match=r"net\.defguard leads elsewhere")
    with refused, pinned_folders(home, home / "net.defguard", handles, owner="S-1-5-21-1"):
        pytest.fail("wrote through a junction")
    assert handles.owners == {}  # nothing handed over
