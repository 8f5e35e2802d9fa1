"""The client job's settings from machine policy: what an administrator set for every user.

On Windows that is ``HKLM\\SOFTWARE\\Policies\\dgprov`` (only administrators can change it; the
MSI's public properties, a GPO or Intune's imported ADMX write it). On macOS it is the
managed-preferences domain ``org.dgprov`` that a configuration profile installs, read from
``/Library/Managed Preferences``, which only the system writes. ``fetch-config`` takes these as
its defaults: an option on the command line, or its environment variable, still wins.

Every value is untrusted input like any other: known names only, text only, bounded, and the
source one of the four ``fetch-config`` knows; a bad one is refused with the place to fix it.
"""

from __future__ import annotations

import plistlib
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import UsageError

WINDOWS_KEY = r"SOFTWARE\Policies\dgprov"
MACOS_DOMAIN = "org.dgprov"
MACOS_FILE = Path("/Library/Managed Preferences") / f"{MACOS_DOMAIN}.plist"
MAX_VALUE = 2048  # characters: a URL or an id, never more
MAX_PLIST_BYTES = 64 * 1024

# Policy value name -> fetch-config's parameter name.
SETTINGS = {
    "Source": "source",
    "Tenant": "tenant",
    "ClientId": "client_id",
    "BrokerUrl": "broker_url",
    "BrokerScope": "broker_scope",
    "AttributeSetName": "attribute_set_name",
    "AdAttribute": "ad_attribute",
    # For sovereign clouds, TLS-inspecting proxies and kiosks; rarely set.
    "Authority": "authority",
    "GraphUrl": "graph_url",
    "CaBundle": "ca_bundle",
    "Auth": "auth",
}
CHOICES = {
    "Source": ("auto", "entra", "ad", "broker"),
    "Auth": ("auto", "browser", "device-code"),  # a user's sign-in: no app secret on desktops
}


def parse_policy(values: Mapping[str, object], where: str) -> dict[str, str]:
    """``fetch-config``'s defaults from the policy's values: names it does not know are left
    alone (a newer template may add some), an empty value counts as not set."""
    defaults: dict[str, str] = {}
    for name, parameter in SETTINGS.items():
        value = values.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise UsageError(f"{where}\\{name}: not text; set it as a string (REG_SZ)")
        value = value.strip()
        if not value:
            continue
        if len(value) > MAX_VALUE or any(ord(c) < 32 for c in value):
            raise UsageError(
                f"{where}\\{name}: not a usable value (control characters, or longer than "
                f"{MAX_VALUE} characters); correct it in the policy"
            )
        allowed = CHOICES.get(name)
        if allowed is not None and value not in allowed:
            raise UsageError(f"{where}\\{name} is {value!r}: use one of {', '.join(allowed)}")
        defaults[parameter] = value
    return defaults


def read_windows_values() -> dict[str, object]:
    """The policy key's values (HKLM only: a user's HKCU is theirs to change)."""
    if sys.platform != "win32":
        return {}
    import winreg

    found: dict[str, object] = {}
    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, WINDOWS_KEY)
    except OSError:
        return found
    with key:
        for name in SETTINGS:
            try:
                value, _ = winreg.QueryValueEx(key, name)
            except OSError:
                continue
            found[name] = value
    return found


def read_macos_values(path: Path = MACOS_FILE) -> dict[str, object]:
    """The managed-preferences domain's keys, from the file the system writes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_PLIST_BYTES:
        raise UsageError(f"{path}: larger than {MAX_PLIST_BYTES} bytes; not a dgprov profile")
    try:
        loaded = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise UsageError(f"{path}: not a property list ({exc})") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"{path}: not a dictionary of settings")
    return loaded


def machine_defaults(platform: str = sys.platform) -> dict[str, str]:
    """This machine's policy for ``fetch-config``, as parameter defaults."""
    if platform == "win32":
        return parse_policy(read_windows_values(), f"HKLM\\{WINDOWS_KEY}")
    if platform == "darwin":
        return parse_policy(read_macos_values(), str(MACOS_FILE))
    return {}
