"""Who this process runs as on Windows, and who sits at the console: the Windows API, asked
directly through ctypes.

These answers decide whose profile a SYSTEM process writes into, so they come from Windows
itself and never from the environment: ``%USERNAME%`` is whatever the parent process set (under
SYSTEM it is the computer account, ``HOST$``). PowerShell, which an earlier version started for
the same answers, costs seconds at every logon and is blocked outright by some AppLocker
policies.

The decisions that use these answers (``client_files.resolve_windows_target``) take an object of
the ``WindowsAccounts`` shape, this module being the real one, so they are unit-tested on any OS
with a stand-in for a SYSTEM token, an empty console or a second session; the Windows lane runs
the real calls under Wine.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections.abc import Callable
from typing import Any, Protocol

SID_PATTERN = re.compile(r"S-1-[0-9]+(-[0-9]+)+")
LOCAL_SYSTEM_SID = "S-1-5-18"
PROFILE_LIST = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion\ProfileList"
REG_SZ, REG_EXPAND_SZ = 1, 2  # winreg's value types, named here so the parser runs anywhere
_TOKEN_QUERY = 0x0008
_TOKEN_USER = 1  # TOKEN_INFORMATION_CLASS.TokenUser
_WTS_USER_NAME, _WTS_DOMAIN_NAME = 5, 7  # WTS_INFO_CLASS
_NO_CONSOLE_SESSION = 0xFFFFFFFF  # WTSGetActiveConsoleSessionId while the console is switching
_NAME_LIMIT = 512  # characters: far more than any DOMAIN\name Windows allows


class WindowsAccounts(Protocol):
    """The Windows answers the target decision needs."""

    def current_sid(self) -> str: ...

    def console_user(self) -> str | None: ...

    def account_sid(self, account: str) -> str | None: ...

    def profile_path(self, sid: str) -> str | None: ...


def is_local_system(accounts: WindowsAccounts) -> bool:
    """Whether this process runs as SYSTEM: installers, Intune and SCCM in device context."""
    return accounts.current_sid() == LOCAL_SYSTEM_SID


def running_as_system() -> bool:
    """Whether this process is SYSTEM; False off Windows."""
    return sys.platform == "win32" and current_sid() == LOCAL_SYSTEM_SID


def console_login(user: str, domain: str) -> str | None:
    """``DOMAIN\\user`` from a session's two names; None when nobody is signed in."""
    user, domain = user.strip(), domain.strip()
    if not user:
        return None
    return f"{domain}\\{user}" if domain else user


def pick_console_user(
    console_session: int, session_names: Callable[[int], tuple[str, str]]
) -> str | None:
    """The console session's user and no other: someone in a second session (Remote Desktop,
    fast user switching) is not at this machine's keyboard, so SYSTEM never provisions them.
    While the console is switching sessions Windows reports no session at all."""
    if console_session == _NO_CONSOLE_SESSION:
        return None
    user, domain = session_names(console_session)
    return console_login(user, domain)


def parse_profile_image_path(value: object, kind: int, expand: Callable[[str], str]) -> str | None:
    """ProfileList's ``ProfileImagePath``: usually ``REG_EXPAND_SZ``, e.g.
    ``%SystemDrive%\\Users\\x``, expanded as Windows expands it."""
    if not isinstance(value, str) or not value.strip():
        return None
    if kind == REG_EXPAND_SZ:
        return expand(value)
    return value if kind == REG_SZ else None


# ------------------------------------------------------------------------- the real calls


def _dlls() -> tuple[Any, Any, Any]:
    if sys.platform != "win32":
        raise OSError("the Windows account calls need Windows")
    return (
        ctypes.WinDLL("advapi32", use_last_error=True),  # type: ignore[attr-defined,unused-ignore]
        ctypes.WinDLL("kernel32", use_last_error=True),  # type: ignore[attr-defined,unused-ignore]
        ctypes.WinDLL("wtsapi32", use_last_error=True),  # type: ignore[attr-defined,unused-ignore]
    )


def _last_error() -> OSError:
    error: OSError = ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined,unused-ignore]
    return error


def _sid_string(advapi: Any, kernel: Any, sid: Any) -> str:
    from ctypes import wintypes

    text = wintypes.LPWSTR()
    if not advapi.ConvertSidToStringSidW(sid, ctypes.byref(text)):
        raise _last_error()
    try:
        return str(text.value)
    finally:
        kernel.LocalFree(text)


def current_sid() -> str:
    """The SID of the user this process's token belongs to (``S-1-5-18`` for SYSTEM)."""
    from ctypes import wintypes

    advapi, kernel, _ = _dlls()
    kernel.GetCurrentProcess.restype = wintypes.HANDLE
    advapi.OpenProcessToken.argtypes = [
        wintypes.HANDLE,
        wintypes.DWORD,
        ctypes.POINTER(wintypes.HANDLE),
    ]
    token = wintypes.HANDLE()
    if not advapi.OpenProcessToken(kernel.GetCurrentProcess(), _TOKEN_QUERY, ctypes.byref(token)):
        raise _last_error()
    try:
        size = wintypes.DWORD()
        advapi.GetTokenInformation(token, _TOKEN_USER, None, 0, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        if not advapi.GetTokenInformation(token, _TOKEN_USER, buffer, size, ctypes.byref(size)):
            raise _last_error()
        sid = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_void_p))[0]  # TOKEN_USER.User.Sid
        return _sid_string(advapi, kernel, ctypes.c_void_p(sid))
    finally:
        kernel.CloseHandle(token)


def account_sid(account: str) -> str | None:
    """The SID Windows resolves ``account`` to (local or domain); None for no such account."""
    from ctypes import wintypes

    if not account or len(account) > _NAME_LIMIT:
        return None
    advapi, kernel, _ = _dlls()
    sid_size, domain_size, use = wintypes.DWORD(0), wintypes.DWORD(0), wintypes.DWORD()
    advapi.LookupAccountNameW(
        None, account, None, ctypes.byref(sid_size), None, ctypes.byref(domain_size),
        ctypes.byref(use),
    )  # fmt: skip
    if not sid_size.value:
        return None  # ERROR_NONE_MAPPED: Windows knows no such account
    sid = ctypes.create_string_buffer(sid_size.value)
    domain = ctypes.create_unicode_buffer(max(domain_size.value, 1))
    if not advapi.LookupAccountNameW(
        None, account, sid, ctypes.byref(sid_size), domain, ctypes.byref(domain_size),
        ctypes.byref(use),
    ):  # fmt: skip
        return None
    text = _sid_string(advapi, kernel, sid)
    return text if SID_PATTERN.fullmatch(text) else None


def console_user() -> str | None:
    """``DOMAIN\\user`` of the session at the physical console, or None: nobody is there."""
    from ctypes import wintypes

    _, kernel, wtsapi = _dlls()
    kernel.WTSGetActiveConsoleSessionId.restype = wintypes.DWORD

    def session_names(session: int) -> tuple[str, str]:
        return (
            _session_text(wtsapi, session, _WTS_USER_NAME),
            _session_text(wtsapi, session, _WTS_DOMAIN_NAME),
        )

    return pick_console_user(kernel.WTSGetActiveConsoleSessionId(), session_names)


def _session_text(wtsapi: Any, session: int, kind: int) -> str:
    from ctypes import wintypes

    text, size = wintypes.LPWSTR(), wintypes.DWORD()
    if not wtsapi.WTSQuerySessionInformationW(
        None, session, kind, ctypes.byref(text), ctypes.byref(size)
    ):
        return ""
    try:
        return str(text.value or "")[:_NAME_LIMIT]
    finally:
        wtsapi.WTSFreeMemory(text)


def profile_path(sid: str) -> str | None:
    """The profile folder Windows records for ``sid`` in ProfileList; None without one."""
    if sys.platform != "win32" or not SID_PATTERN.fullmatch(sid):
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, f"{PROFILE_LIST}\\{sid}") as key:
            value, kind = winreg.QueryValueEx(key, "ProfileImagePath")
    except OSError:
        return None
    return parse_profile_image_path(value, kind, winreg.ExpandEnvironmentStrings)
