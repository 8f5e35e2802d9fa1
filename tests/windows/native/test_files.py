"""Files on Windows: where the Defguard client reads, written by name (no descriptor-relative
calls on Windows), atomically, never half-written."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath

import pytest

from dgprov import client_files, entra_auth, private_files, proxy_client
from dgprov.private_files import open_private_log, write_private_file
from dgprov.stored_value import ProvisioningConfig
from tests.windows.native.windows_host import running_under_wine

CONFIG = ProvisioningConfig("https://enroll.corp.example/", "AbCdEfGhIjKlMnOpQrStUvWxYz012345")


def test_the_client_data_directory_is_appdata_net_defguard() -> None:
    expected = PureWindowsPath(os.environ["APPDATA"]) / "net.defguard"
    assert PureWindowsPath(client_files.data_directory()) == expected
    assert PureWindowsPath(os.environ["APPDATA"]).is_relative_to(os.environ["USERPROFILE"])


def test_the_sign_in_cache_lives_in_local_appdata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DGPROV_CACHE_DIR")
    expected = PureWindowsPath(os.environ["LOCALAPPDATA"]) / "dgprov"
    assert PureWindowsPath(entra_auth.cache_directory()) == expected


def test_names_are_written_by_name_on_windows() -> None:
    assert not private_files._BY_DESCRIPTOR  # Windows has no dir_fd: refuse_links guards


def test_provisioning_file_round_trip_as_the_client_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "net.defguard" / "provisioning.json"
    client_files.write(path, CONFIG)
    assert client_files.read(path) == CONFIG
    assert path.read_bytes()[:1] == b"{"  # UTF-8 without BOM
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # PowerShell 5 writes one
    assert client_files.read(path) == CONFIG


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write_private_file(path, b"old\n")

    def failing() -> Iterator[str]:
        yield "half a line"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_private_file(path, failing())
    assert path.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]
    write_private_file(path, b"new\n")
    assert path.read_bytes() == b"new\n"


def test_writing_into_a_profile_checks_every_name_below_it(tmp_path: Path) -> None:
    home = tmp_path / "profile"
    home.mkdir()
    path = client_files.data_directory(home=home) / client_files.FILE_NAME
    client_files.write(path, CONFIG, home=home)
    assert client_files.read(path) == CONFIG


def test_the_log_file_appends(tmp_path: Path) -> None:
    path = tmp_path / "fetch-config.log"
    for line in ("one\n", "two\n"):
        with open_private_log(path) as log:
            log.write(line)
    assert path.read_text("utf-8") == "one\ntwo\n"


def test_the_proxy_is_told_the_platform_is_windows() -> None:
    assert proxy_client.PLATFORMS["win32"] == "windows"


def test_folders_are_pinned_and_checked_by_handle(tmp_path: Path) -> None:
    """The real calls: each folder opened without following it, its attributes read from the
    handle. Windows then refuses to rename a held folder (so nobody can swap it for a junction
    during the write); Wine does not enforce that, so there only the handles are checked."""
    from dgprov.windows_files import (
        FILE_ATTRIBUTE_DIRECTORY,
        FILE_ATTRIBUTE_REPARSE_POINT,
        WindowsFolderHandles,
        pinned_folders,
    )

    home = tmp_path / "profile"
    home.mkdir()
    handles = WindowsFolderHandles()
    handle = handles.open(home)
    try:
        attributes = handles.attributes(handle)
    finally:
        handles.close(handle)
    assert attributes & FILE_ATTRIBUTE_DIRECTORY and not attributes & FILE_ATTRIBUTE_REPARSE_POINT
    target = home / "AppData" / "Roaming" / "net.defguard"
    with pinned_folders(home, target):
        assert target.is_dir()
        if not running_under_wine():
            with pytest.raises(PermissionError):
                os.rename(home / "AppData", home / "Elsewhere")
    os.rename(home / "AppData", home / "Elsewhere")  # released


def test_the_file_and_new_folders_are_handed_over_on_their_handles(tmp_path: Path) -> None:
    """SYSTEM writing for jdoe makes jdoe the owner, set on each handle before the first byte;
    here the account is this one (Wine has no second), which exercises the same calls."""
    from dgprov import windows_accounts
    from dgprov.windows_files import WindowsFolderHandles

    sid = windows_accounts.current_sid()
    home = tmp_path / "profile"
    home.mkdir()
    path = client_files.data_directory(home=home) / client_files.FILE_NAME
    client_files.write(path, CONFIG, owner=sid, home=home)
    assert client_files.read(path) == CONFIG
    assert sorted(p.name for p in path.parent.iterdir()) == ["provisioning.json"]  # no temporary
    handles = WindowsFolderHandles()
    for owned in (path, path.parent):
        handle = handles.open(owned, for_new_owner=True)
        try:
            assert handles.owner(handle) == sid
        finally:
            handles.close(handle)
