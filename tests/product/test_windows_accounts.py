"""Whose profile ``fetch-config`` writes into on Windows, decided from the Windows account calls.

Wine runs everything as one administrator in one session, so a SYSTEM token, an empty console
and a second session are put to the test here, with the calls behind a stand-in; the Windows
lane runs the real calls (``tests/windows/native``).
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest

from dgprov import windows_accounts
from dgprov.client_files import resolve_windows_target
from dgprov.errors import UsageError
from dgprov.windows_accounts import (
    LOCAL_SYSTEM_SID,
    console_login,
    parse_profile_image_path,
    pick_console_user,
)

from .windows_fakes import USER_SID, FakeWindows

JDOE_SID = "S-1-5-21-1-2-3-1107"
JDOE_PROFILE = "C:\\Users\\jdoe.CORP"


def jdoe_at_the_console() -> FakeWindows:
    return FakeWindows.as_system(
        "CORP\\jdoe", sids={"CORP\\jdoe": JDOE_SID}, profiles={JDOE_SID: JDOE_PROFILE}
    )


def test_system_provisions_the_console_user_in_the_profile_windows_records() -> None:
    windows = jdoe_at_the_console()
    said: list[str] = []
    target = resolve_windows_target(None, False, said.append, windows)
    assert target.name == "CORP\\jdoe"
    assert target.home is not None and PureWindowsPath(target.home) == PureWindowsPath(JDOE_PROFILE)
    assert target.someone_else  # so whose token it writes is checked
    assert target.owner == JDOE_SID  # the file and the folders made for it go to jdoe
    assert said == ["running as SYSTEM: provisioning CORP\\jdoe, the console user"]


def test_system_with_nobody_at_the_console_names_the_fix() -> None:
    with pytest.raises(UsageError, match="nobody at the console: pass --for-user NAME"):
        resolve_windows_target(None, False, print, FakeWindows.as_system(None))


def test_system_with_an_output_file_or_a_named_user_does_not_ask_for_the_console() -> None:
    windows = jdoe_at_the_console()
    assert resolve_windows_target(None, True, print, windows).home is None
    named = resolve_windows_target("CORP\\jdoe", False, print, windows)
    assert named.home == Path(JDOE_PROFILE)
    assert windows.console_asked == 0


def test_a_user_named_system_is_not_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """``%USERNAME%`` is the parent's to set; only the token's SID says SYSTEM."""
    monkeypatch.setenv("USERNAME", "SYSTEM")
    monkeypatch.setenv("USER", "SYSTEM")
    monkeypatch.setenv("LOGNAME", "SYSTEM")
    windows = FakeWindows(current=USER_SID, console="CORP\\jdoe")
    target = resolve_windows_target(None, False, print, windows)
    assert target.home is None  # the process's own profile
    assert windows.console_asked == 0


def test_the_console_session_only() -> None:
    """Alice in a Remote Desktop session (2) is not at the console (1), where nobody is."""
    sessions = {1: ("", ""), 2: ("alice", "CORP")}
    assert pick_console_user(1, sessions.__getitem__) is None
    assert pick_console_user(2, sessions.__getitem__) == "CORP\\alice"
    assert pick_console_user(0xFFFFFFFF, sessions.__getitem__) is None  # console switching


def test_console_login() -> None:
    assert console_login("jdoe", "CORP") == "CORP\\jdoe"
    assert console_login(" jdoe ", "") == "jdoe"
    assert console_login("", "CORP") is None


def test_local_system_sid() -> None:
    assert windows_accounts.is_local_system(FakeWindows(current=LOCAL_SYSTEM_SID))
    assert not windows_accounts.is_local_system(FakeWindows(current="S-1-5-18-1"))


def test_parse_profile_image_path() -> None:
    def expand(value: str) -> str:
        return value.replace("%SystemDrive%", "D:")

    expandable = parse_profile_image_path("%SystemDrive%\\Users\\jdoe.CORP", 2, expand)
    assert expandable == "D:\\Users\\jdoe.CORP"
    assert parse_profile_image_path("E:\\Profiles\\jdoe", 1, expand) == "E:\\Profiles\\jdoe"
    assert parse_profile_image_path(b"E:\\x", 3, expand) is None
    assert parse_profile_image_path("  ", 1, expand) is None
    assert parse_profile_image_path(7, 4, expand) is None


def test_the_real_calls_refuse_off_windows() -> None:
    assert windows_accounts.profile_path(USER_SID) is None
    with pytest.raises(OSError, match="need Windows"):
        windows_accounts.current_sid()
