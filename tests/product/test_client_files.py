"""Writing ``provisioning.json`` into another user's profile as root: no link is followed, no
ownership changes hands by path name, and nothing outside the profile is created or changed.

The root tests use real throwaway users (``local_user``) who own their profile, plant links in it
and swap directories for links while ``fetch-config --for-user`` runs.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dgprov.client_files import data_directory, is_account_of, windows_account
from dgprov.errors import UnsafePath, UsageError
from dgprov.fetch import user_cache_name
from dgprov.private_files import is_link, refuse_links

from ..conftest import Running, StartSandbox
from .test_fetch_config import (
    LocalUser,
    data_file,
    fetch,
    local_user,
    provisioned,
    provisioned_for,
    upn_of,
)
from .windows_fakes import FakeWindows

__all__ = ["local_user", "provisioned"]


def snapshot(top: Path) -> dict[str, tuple[Any, ...]]:
    """Every name under ``top`` (links not followed): kind, owner, mode and content."""
    found: dict[str, tuple[Any, ...]] = {}
    for path in [top, *sorted(top.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content: Any = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        else:
            content = None
        found[str(path)] = (
            stat.S_IFMT(info.st_mode),
            info.st_uid,
            info.st_gid,
            info.st_mode,
            content,
        )
    return found


def owned_by_root(top: Path) -> list[Path]:
    return [p for p in [top, *top.rglob("*")] if p.lstat().st_uid == 0]


def holding_root_data(top: Path) -> list[Path]:
    """Root-owned names under ``top`` other than empty directories.

    A directory dgprov creates is root's from mkdir until its descriptor is handed over, a few
    microseconds; a user who renames it within that window keeps an empty root-owned directory
    in their own folder, which gives them nothing. Anything else owned by root would be a leak.
    """
    return [p for p in owned_by_root(top) if not (p.is_dir() and not any(p.iterdir()))]


def share_of(user: pwd.struct_passwd) -> Path:
    """``~/.local/share``, made as the user would have it."""
    share = Path(user.pw_dir) / ".local" / "share"
    share.mkdir(parents=True, exist_ok=True)
    for directory in (share.parent, share):
        os.chown(directory, user.pw_uid, user.pw_gid)
    return share


def plant_link(link: Path, target: Path, user: pwd.struct_passwd) -> None:
    link.symlink_to(target)
    os.lchown(link, user.pw_uid, user.pw_gid)


def victim_directory(tmp_path: Path) -> Path:
    """A root-owned directory outside every profile, with a file in it."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (victim / "keep.conf").write_text("root's own\n")
    return victim


def test_link_planted_at_the_data_directory_is_refused(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    user = local_user()
    running = provisioned_for(start_sandbox, tmp_path, user)
    victim = victim_directory(tmp_path)
    link = share_of(user) / "net.defguard"
    plant_link(link, victim, user)
    before = snapshot(victim)
    result = fetch(running, tmp_path, upn_of(user), "--for-user", user.pw_name)
    assert result.exit_code == 2, result.output
    assert f"{link} is a symbolic link" in result.output
    assert snapshot(victim) == before
    assert link.is_symlink()


def test_link_planted_at_the_file_is_refused(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    user = local_user()
    running = provisioned_for(start_sandbox, tmp_path, user)
    etc = tmp_path / "etc"
    etc.mkdir()
    target = etc / "shadow"
    target.write_text("root:*:19000:0:99999:7:::\n")
    target.chmod(0o640)
    directory = share_of(user) / "net.defguard"
    directory.mkdir()
    os.chown(directory, user.pw_uid, user.pw_gid)
    link = directory / "provisioning.json"
    plant_link(link, target, user)
    before = snapshot(etc)
    result = fetch(running, tmp_path, upn_of(user), "--for-user", user.pw_name)
    assert result.exit_code == 2, result.output
    assert f"{link} is a symbolic link" in result.output
    assert snapshot(etc) == before
    assert link.is_symlink()


def test_own_file_link_is_refused(provisioned: Running, tmp_path: Path) -> None:
    """Writing one's own file: the links of one's own folders are one's own business, but a
    link at the file itself is refused rather than followed or silently replaced."""
    target = tmp_path / "elsewhere.json"
    target.write_text("{}\n")
    link = tmp_path / "provisioning.json"
    link.symlink_to(target)
    result = fetch(provisioned, tmp_path, provisioned.info["user_upns"][0], "--output", str(link))
    assert result.exit_code == 2, result.output
    assert f"{link} is a symbolic link" in result.output
    assert target.read_text() == "{}\n" and link.is_symlink()


# The user's side of the race: swap their data directory for a link to the victim, and back,
# as fast as a shell can.
RACER = """
cd "$1" || exit 1
echo ready
while :; do
  mv -T net.defguard aside 2>/dev/null
  ln -s "$2" net.defguard 2>/dev/null
  rm -f net.defguard 2>/dev/null
  mv -T aside net.defguard 2>/dev/null || rm -rf aside
done
"""
RACE_RUNS = 30


def test_swapping_the_directory_for_a_link_never_lets_root_out(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    user = local_user()
    running = provisioned_for(start_sandbox, tmp_path, user)
    victim = victim_directory(tmp_path)
    share = share_of(user)
    (share / "net.defguard").mkdir()
    os.chown(share / "net.defguard", user.pw_uid, user.pw_gid)
    assert fetch(running, tmp_path, upn_of(user), "--for-user", user.pw_name).exit_code == 0
    before = snapshot(victim)
    racer = subprocess.Popen(
        ["/bin/sh", "-c", RACER, "racer", str(share), str(victim)],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    outcomes: list[int | str] = []  # exit statuses, or the exception that escaped the CLI
    try:
        assert racer.stdout is not None and racer.stdout.readline() == b"ready\n"
        started = time.monotonic()
        for _ in range(RACE_RUNS):
            result = fetch(running, tmp_path, None, "--for-user", user.pw_name)
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
            outcomes.append(repr(result.exception) if crashed else result.exit_code)
        elapsed = time.monotonic() - started
    finally:
        os.killpg(racer.pid, signal.SIGKILL)
        racer.wait()
    escaped = [name for name, entry in snapshot(victim).items() if before.get(name) != entry]
    escaped += [n for n in before if not Path(n).exists() and not Path(n).is_symlink()]
    assert escaped == [], f"{len(escaped)} changes outside the profile: {escaped}"
    assert holding_root_data(Path(user.pw_dir)) == []
    assert set(outcomes) <= {0, 2}, outcomes  # written, or refused with one line
    assert elapsed < 30, elapsed  # the suite's budget: a few seconds


def test_written_file_and_folders_belong_to_the_user(
    start_sandbox: StartSandbox, tmp_path: Path, local_user: LocalUser
) -> None:
    user = local_user()
    running = provisioned_for(start_sandbox, tmp_path, user)
    result = fetch(running, tmp_path, upn_of(user), "--for-user", user.pw_name)
    assert result.exit_code == 0, result.output
    assert owned_by_root(Path(user.pw_dir)) == []
    assert stat.S_IMODE(data_file(user).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_file(user).parent.stat().st_mode) == 0o700


# --------------------------------------------------------------------- decisions, no root


def fake_stat(mode: int, attributes: int = 0) -> Any:
    return SimpleNamespace(st_mode=mode, st_file_attributes=attributes)


def test_links_and_junctions_are_links() -> None:
    assert is_link(fake_stat(stat.S_IFLNK | 0o777))
    # A Windows junction: a directory whose attributes say reparse point.
    assert is_link(fake_stat(stat.S_IFDIR | 0o777, stat.FILE_ATTRIBUTE_REPARSE_POINT))
    assert not is_link(fake_stat(stat.S_IFDIR | 0o755, stat.FILE_ATTRIBUTE_DIRECTORY))
    assert not is_link(SimpleNamespace(st_mode=stat.S_IFREG | 0o600))  # POSIX: no attributes


def test_a_junction_in_the_profile_is_refused_by_name() -> None:
    """Windows, where names cannot be opened relative to a directory: each name is checked."""
    home = Path("C:/Users/jdoe")
    path = home / "AppData" / "Roaming" / "net.defguard" / "provisioning.json"
    directory = fake_stat(stat.S_IFDIR | 0o777, stat.FILE_ATTRIBUTE_DIRECTORY)
    junction = fake_stat(stat.S_IFDIR | 0o777, stat.FILE_ATTRIBUTE_REPARSE_POINT)
    names = {home / "AppData": directory, home / "AppData" / "Roaming": junction}
    looked_at: list[Path] = []

    def lstat(name: Path) -> Any:
        looked_at.append(name)
        if name not in names:
            raise FileNotFoundError(name)
        return names[name]

    with pytest.raises(UnsafePath, match="Roaming is a symbolic link or junction"):
        refuse_links(path, home, lstat)
    names[home / "AppData" / "Roaming"] = directory
    looked_at.clear()
    refuse_links(path, home, lstat)  # the rest does not exist yet: it will be created
    assert looked_at[-1] == home / "AppData" / "Roaming" / "net.defguard"
    assert home not in looked_at  # the profile's own path comes from the system


def test_a_real_link_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "data").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePath, match="data is a symbolic link"):
        refuse_links(tmp_path / "home" / "data" / "p.json", tmp_path / "home")


@pytest.mark.parametrize(
    ("username", "login", "same"),
    [
        ("jdoe@corp.example", "jdoe", True),
        ("JDoe@corp.example", "CORP\\jdoe", True),
        ("jdoe@corp.example", "jdoe@corp.example", True),
        ("John.Doe@corp.example", "john.doe@CORP.example", True),
        ("jdoe", "CORP\\JDOE", True),  # an AD sAMAccountName
        ("jdoe@corp.example", "jdoe2", False),
        ("ann@corp.example", "jdoe", False),
        ("", "jdoe", False),
    ],
)
def test_account_of_a_login(username: str, login: str, same: bool) -> None:
    assert is_account_of(username, login) is same


def test_one_cache_per_target_user() -> None:
    names = ["jdoe", "JDoe", "CORP\\jdoe", "jdoe@corp.example", "../../etc/x", "a/b", "a%2Fb"]
    files = [user_cache_name(name) for name in names]
    assert len(set(files)) == len(names)
    assert all("/" not in f and "\\" not in f and f.startswith("msal_cache_user.") for f in files)


# ------------------------------------------------------ where the client reads (audit C1, C2)


def test_macos_writes_into_the_app_store_container() -> None:
    home = Path("/Users/jdoe")
    expected = home / "Library/Containers/net.defguard/Data/Library/Application Support"
    assert data_directory("darwin", home) == expected / "net.defguard"
    assert data_directory("darwin", None, lambda name: None) == (
        Path.home()
        / "Library/Containers/net.defguard/Data/Library/Application Support"
        / "net.defguard"
    )


@pytest.mark.parametrize(
    ("xdg", "expected"),
    [
        ("/data/jdoe", Path("/data/jdoe/net.defguard")),
        ("relative/share", Path.home() / ".local/share/net.defguard"),
        ("./share", Path.home() / ".local/share/net.defguard"),
        ("", Path.home() / ".local/share/net.defguard"),
        (None, Path.home() / ".local/share/net.defguard"),
    ],
)
def test_xdg_data_home_only_when_absolute(xdg: str | None, expected: Path) -> None:
    values = {"XDG_DATA_HOME": xdg}
    assert data_directory("linux", None, values.get) == expected


def test_someone_elses_directory_ignores_this_process_variables() -> None:
    values = {"XDG_DATA_HOME": "/root/xdg", "APPDATA": "C:/Windows/system32/config/AppData"}
    home = Path("/home/jdoe")
    assert data_directory("linux", home, values.get) == home / ".local/share/net.defguard"
    assert data_directory("win32", home, values.get) == home / "AppData/Roaming/net.defguard"


def test_windows_account_profile_comes_from_the_profile_list() -> None:
    """A profile that is not C:\\Users\\<name> (second profile of the name, moved root)."""
    sid = "S-1-5-21-1-2-3-1001"
    windows = FakeWindows(sids={"CORP\\jdoe": sid}, profiles={sid: "D:\\Profiles\\jdoe.CORP"})
    sid_found, home = windows_account("CORP\\jdoe", windows)
    assert sid_found == sid
    assert str(home) == "D:\\Profiles\\jdoe.CORP"
    assert windows.asked == ["CORP\\jdoe"]
    assert data_directory("win32", home, lambda name: None) == home / "AppData/Roaming/net.defguard"


def test_windows_profile_problems_are_named() -> None:
    sid = "S-1-5-21-1-2-3-1002"
    windows = FakeWindows(sids={"CORP\\new": sid})
    with pytest.raises(UsageError, match="no such account"):
        windows_account("CORP\\ghost", windows)
    with pytest.raises(UsageError, match="no profile on this machine yet"):
        windows_account("CORP\\new", windows)
    for bad in ('a"b', "x|y", "", "tab\tname"):
        with pytest.raises(UsageError, match="not a Windows account name"):
            windows_account(bad, windows)
    assert windows.asked == ["CORP\\ghost", "CORP\\new"]  # bad names never reach Windows
