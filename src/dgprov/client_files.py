"""``provisioning.json``: where the Defguard desktop client looks for it, and how it reads it.

The client (``ProvisioningConfig`` in DefGuard/client) wants exactly ``enrollment_url`` and
``enrollment_token``, ignores other keys, tolerates a leading BOM, and reads the file from its
Tauri data directory ``net.defguard``. dgprov writes it UTF-8 without BOM, atomically, readable
by its owner only, and refuses values the client could not use.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .credentials import is_loopback
from .entra_auth import write_private_file
from .errors import UsageError

FILE_NAME = "provisioning.json"
APP_IDENTIFIER = "net.defguard"


@dataclass(frozen=True)
class ProvisioningConfig:
    enrollment_url: str
    enrollment_token: str

    def __repr__(self) -> str:  # never print the token, even in a traceback
        return f"ProvisioningConfig(enrollment_url={self.enrollment_url!r}, enrollment_token='***')"


class InvalidProvisioningValue(ValueError):
    """A value the desktop client could not use; the message never contains the token."""


def data_directory(
    platform: str = sys.platform, home: Path | None = None, environ: dict[str, str] | None = None
) -> Path:
    """The Defguard client's data directory for a user whose home is ``home``."""
    env = os.environ if environ is None else environ
    base = home or Path.home()
    if platform == "win32":
        appdata = env.get("APPDATA") if home is None else None
        return (
            Path(appdata) / APP_IDENTIFIER
            if appdata
            else base / "AppData" / "Roaming" / APP_IDENTIFIER
        )
    if platform == "darwin":
        return base / "Library" / "Application Support" / APP_IDENTIFIER
    xdg = env.get("XDG_DATA_HOME") if home is None else None
    return Path(xdg) / APP_IDENTIFIER if xdg else base / ".local" / "share" / APP_IDENTIFIER


def validate(config: ProvisioningConfig) -> ProvisioningConfig:
    parts = urlsplit(config.enrollment_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidProvisioningValue("the enrollment URL is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise InvalidProvisioningValue("the enrollment URL must use https (http only on loopback)")
    if parts.username or parts.password:
        raise InvalidProvisioningValue("the enrollment URL must not contain credentials")
    token = config.enrollment_token
    if not token or any(not (33 <= ord(c) <= 126) for c in token):
        raise InvalidProvisioningValue(
            "the enrollment token must be non-empty printable ASCII without whitespace"
        )
    return config


def write(path: Path, config: ProvisioningConfig, owner: tuple[int, int] | None = None) -> None:
    """Atomically write the file (0600 on POSIX); with ``owner``, hand it and new folders over."""
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {"enrollment_url": config.enrollment_url, "enrollment_token": config.enrollment_token},
        indent=2,
    )
    write_private_file(path, (body + "\n").encode("utf-8"))
    if owner is not None and hasattr(os, "chown"):
        for directory in reversed(created):
            os.chown(directory, *owner)
        os.chown(path, *owner)


def read(path: Path) -> ProvisioningConfig:
    """Read as the desktop client does: BOM tolerated, both keys required, extra keys ignored."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({exc})") from None
    text = text.removeprefix("\ufeff")
    try:
        document = json.loads(text)
        return ProvisioningConfig(
            str(document["enrollment_url"]), str(document["enrollment_token"])
        )
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"{path}: not a provisioning file (expected a JSON object with enrollment_url and "
            "enrollment_token)"
        ) from None
