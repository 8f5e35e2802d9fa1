"""``provisioning.json``: where the Defguard desktop client looks for it, and how it reads it.

The client (``ProvisioningConfig`` in DefGuard/client) wants exactly ``enrollment_url`` and
``enrollment_token``, ignores other keys, tolerates a leading BOM, and reads the file from its
Tauri data directory ``net.defguard``. dgprov writes it UTF-8 without BOM, atomically, readable
by its owner only, and refuses values the client could not use.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import environment, join, windows_accounts
from .errors import UsageError
from .private_files import Owner, write_private_file
from .stored_value import ProvisioningConfig, from_file_json, to_file_json
from .windows_accounts import WindowsAccounts, is_local_system

FILE_NAME = "provisioning.json"
APP_IDENTIFIER = "net.defguard"

__all__ = [
    "APP_IDENTIFIER",
    "FILE_NAME",
    "ProvisioningConfig",
    "TargetUser",
    "data_directory",
    "read",
    "resolve_target",
    "write",
]


@dataclass(frozen=True)
class TargetUser:
    """Whose file this is: login name, data-directory home, and the owner to hand it to."""

    name: str
    home: Path | None  # None: the current user's own environment decides
    owner: Owner | None  # (uid, gid), or on Windows the SID, when running for someone else

    @property
    def someone_else(self) -> bool:
        """dgprov writes for another user (``--for-user`` or the root/SYSTEM pick), so whose
        token it writes must be checked, and that user's profile is not trusted."""
        return self.home is not None


def account_name(login: str) -> str:
    """``CORP\\jdoe`` and ``jdoe@corp.example`` -> ``jdoe`` (the sAMAccountName)."""
    return login.split("\\")[-1].split("@")[0]


def is_account_of(username: str, login: str) -> bool:
    """Whether a signed-in UPN or mail (``jdoe@corp.example``) or an AD account name is the
    account of the local ``login`` (``CORP\\jdoe``, ``jdoe@corp.example`` or ``jdoe``).

    The account names are compared case-insensitively, as Entra and AD compare them; a login
    spelled as the full UPN also matches that UPN exactly.
    """
    if not username.strip():
        return False
    if username.casefold() == login.casefold():
        return True
    return account_name(username).casefold() == account_name(login).casefold()


def resolve_target(
    for_user: str | None, output_given: bool, notify: Callable[[str], None]
) -> TargetUser:
    """The user the file is for: ``for_user``; as root, the graphical session's user (unless
    ``--output`` already says where the file goes); otherwise whoever runs the command."""
    if sys.platform == "win32":
        return resolve_windows_target(for_user, output_given, notify, windows_accounts)
    current = getpass.getuser()
    import pwd

    is_root = os.geteuid() == 0
    name = for_user
    if name is None and is_root and not output_given:
        name = join.graphical_session_user()
        if name is None:
            raise UsageError(
                "running as root with no active graphical session: pass --for-user NAME for the "
                "user whose Defguard client should be provisioned"
            )
        notify(f"running as root: provisioning {name}, the user of the active graphical session")
    if name is None or name == current:
        return TargetUser(current, None, None)
    if not is_root:
        raise UsageError(f"--for-user {name}: writing into another user's profile needs root")
    try:
        entry = pwd.getpwnam(account_name(name))
    except KeyError:
        raise UsageError(f"--for-user {name}: no such local user") from None
    return TargetUser(name, Path(entry.pw_dir), (entry.pw_uid, entry.pw_gid))


def resolve_windows_target(
    for_user: str | None,
    output_given: bool,
    notify: Callable[[str], None],
    accounts: WindowsAccounts,
) -> TargetUser:
    """``resolve_target`` on Windows. SYSTEM is recognised by its token's SID, never by
    ``%USERNAME%`` (which the parent sets, and which SYSTEM sees as the computer account
    ``HOST$``); it then provisions the console user. Anyone else gets their own profile unless
    ``for_user`` names an account, whose profile comes from the registry."""
    if for_user is None and not output_given and is_local_system(accounts):
        for_user = accounts.console_user()
        if for_user is None:
            raise UsageError("running as SYSTEM with nobody at the console: pass --for-user NAME")
        notify(f"running as SYSTEM: provisioning {for_user}, the console user")
    if for_user is None:
        return TargetUser(getpass.getuser(), None, None)
    sid, profile = windows_account(for_user, accounts)
    return TargetUser(for_user, profile, sid)  # the file and new folders go to that account


WINDOWS_NAME_FORBIDDEN = frozenset('"/[]:;|=,+*?<>')


def windows_account(login: str, accounts: WindowsAccounts) -> tuple[str, Path]:
    """The SID and profile folder of the Windows account ``login`` (``DOMAIN\\user``,
    ``user@domain`` or ``user``), as Windows itself records them: account -> SID ->
    ``ProfileImagePath`` in the registry's ProfileList.

    ``C:\\Users\\<name>`` is only the usual place: a renamed account, a second profile of the
    same name (``jdoe.CORP``), a moved profile root or a name that differs from its folder all
    put the profile elsewhere, and a file written there is never read.
    """
    if not login.strip() or any(c in WINDOWS_NAME_FORBIDDEN or ord(c) < 32 for c in login):
        raise UsageError(
            f"--for-user {login!r}: not a Windows account name; pass DOMAIN\\name or name"
        )
    sid = accounts.account_sid(login)
    if sid is None:
        raise UsageError(
            f"--for-user {login}: Windows knows no such account; pass DOMAIN\\name as shown by "
            "whoami on that user's session"
        )
    profile = accounts.profile_path(sid)
    if not profile:
        raise UsageError(
            f"--for-user {login}: the account has no profile on this machine yet (Windows "
            "creates it at the first sign-in); run again after the user has signed in once"
        )
    return sid, Path(profile)


def data_directory(
    platform: str = sys.platform,
    home: Path | None = None,
    variable: Callable[[str], str | None] = environment.get,
) -> Path:
    """The Defguard client's data directory for a user whose home is ``home``.

    With ``home`` (another user's profile) the current process's variables are ignored: they
    describe the process's own user, not the target. The places are where the client (Tauri's
    ``app_data_dir``, the ``dirs`` crate) reads: on macOS the App Store build's container, as
    the client is sandboxed since v1.6.1; on Linux ``$XDG_DATA_HOME`` only when it is an
    absolute path, as the XDG specification says and ``dirs`` does.
    """
    base = home or Path.home()
    if platform == "win32":
        appdata = variable("APPDATA") if home is None else None
        return (
            Path(appdata) / APP_IDENTIFIER
            if appdata
            else base / "AppData" / "Roaming" / APP_IDENTIFIER
        )
    if platform == "darwin":
        container = base / "Library" / "Containers" / APP_IDENTIFIER / "Data"
        return container / "Library" / "Application Support" / APP_IDENTIFIER
    xdg = variable("XDG_DATA_HOME") if home is None else None
    if xdg and PurePosixPath(xdg).is_absolute():
        return Path(xdg) / APP_IDENTIFIER
    return base / ".local" / "share" / APP_IDENTIFIER


def write(
    path: Path,
    config: ProvisioningConfig,
    owner: Owner | None = None,
    home: Path | None = None,
) -> None:
    """Atomically write the file (0600 on POSIX); with ``owner``, hand it and new folders over.

    ``home``: the profile of the user the file is for, when that is someone else. Its own path
    comes from the password database and is trusted; everything below it belongs to that user,
    so no name there is followed (a link is refused) and ownership is handed over through open
    descriptors only. A ``--output`` outside that profile is the operator's own choice of place.
    """
    below = None
    if home is not None:
        absolute = Path(os.path.normpath(os.path.abspath(path)))
        trusted = Path(os.path.normpath(os.path.abspath(home)))
        below = trusted if absolute.is_relative_to(trusted) else None
        path = absolute
    try:
        write_private_file(path, to_file_json(config).encode("utf-8"), below=below, owner=owner)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write it ({exc.strerror or exc})") from None


def read(path: Path) -> ProvisioningConfig:
    """Read as the desktop client does: BOM tolerated, both keys required, extra keys ignored."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({exc})") from None
    config = from_file_json(text)
    if config is None:
        raise UsageError(
            f"{path}: not a provisioning file (expected a JSON object with enrollment_url and "
            "enrollment_token)"
        )
    return config
