"""The Windows account calls, for real: token SID, account lookup, ProfileList, console user."""

from __future__ import annotations

import os
from pathlib import PureWindowsPath

from dgprov import client_files, windows_accounts
from dgprov.windows_accounts import LOCAL_SYSTEM_SID, SID_PATTERN
from tests.windows.native.windows_host import running_under_wine


def same_path(left: str | os.PathLike[str], right: str | os.PathLike[str]) -> bool:
    return PureWindowsPath(left) == PureWindowsPath(right)  # case-blind, as Windows compares


def test_this_process_is_a_user_not_system() -> None:
    sid = windows_accounts.current_sid()
    assert SID_PATTERN.fullmatch(sid)
    assert sid != LOCAL_SYSTEM_SID
    assert not windows_accounts.is_local_system(windows_accounts)


def test_account_names_resolve_as_windows_resolves_them() -> None:
    assert windows_accounts.account_sid(os.environ["USERNAME"]) == windows_accounts.current_sid()
    qualified = f"{os.environ['USERDOMAIN']}\\{os.environ['USERNAME']}"
    assert windows_accounts.account_sid(qualified) == windows_accounts.current_sid()
    assert windows_accounts.account_sid("SYSTEM") == LOCAL_SYSTEM_SID
    assert windows_accounts.account_sid("no-such-account-dgprov-lane") is None
    assert windows_accounts.account_sid("") is None


def test_profile_list_names_this_users_profile() -> None:
    profile = windows_accounts.profile_path(windows_accounts.current_sid())
    assert profile is not None and same_path(profile, os.environ["USERPROFILE"])
    assert windows_accounts.profile_path("S-1-5-21-1-2-3-99999") is None


def test_the_console_user() -> None:
    user = windows_accounts.console_user()
    if running_under_wine():  # one account, in the one session there is
        assert user is not None
        assert windows_accounts.account_sid(user) == windows_accounts.current_sid()
    else:  # a CI runner may have nobody at its console
        assert user is None or windows_accounts.account_sid(user) is not None


def test_the_target_is_the_user_running_it_or_the_one_named() -> None:
    said: list[str] = []
    own = client_files.resolve_target(None, False, said.append)
    assert own.home is None and not own.someone_else and said == []
    named = client_files.resolve_target(os.environ["USERNAME"], False, said.append)
    assert named.home is not None and same_path(named.home, os.environ["USERPROFILE"])
    assert same_path(
        client_files.data_directory(home=named.home),
        PureWindowsPath(os.environ["APPDATA"]) / "net.defguard",
    )
