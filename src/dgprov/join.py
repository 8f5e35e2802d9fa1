"""How this machine is joined: to Active Directory, to Entra ID, to both, or to nothing.

The parsers take the *captured output* of each platform's own tool, so they are tested on any
machine with real samples: Windows ``dsregcmd /status``, Linux ``realm list`` and
``/etc/sssd/sssd.conf``, macOS ``dsconfigad -show``. Hybrid-joined machines count as AD, as
Defguard's script treats them. ``detect()`` runs the tools; nothing else here does I/O.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import environment

JoinKind = Literal["ad", "entra", "none"]


@dataclass(frozen=True)
class JoinState:
    kind: JoinKind
    domain: str | None = None  # AD DNS domain, or the Entra tenant name
    evidence: str = ""  # what decided it, for messages and the log

    @property
    def joined(self) -> bool:
        return self.kind != "none"


def _fields(text: str, separator: str) -> dict[str, str]:
    """``Key : Value`` / ``Key = Value`` lines, keys lower-cased, first occurrence wins."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(separator)
        if sep and key.strip():
            found.setdefault(key.strip().lower(), value.strip())
    return found


def parse_dsregcmd(text: str) -> JoinState:
    """``dsregcmd /status``: DomainJoined and AzureAdJoined; hybrid counts as AD."""
    fields = _fields(text, ":")
    domain_joined = fields.get("domainjoined", "").upper() == "YES"
    entra_joined = fields.get("azureadjoined", "").upper() == "YES"
    if domain_joined:
        evidence = "dsregcmd: DomainJoined YES" + (
            ", AzureAdJoined YES (hybrid)" if entra_joined else ""
        )
        return JoinState("ad", fields.get("domainname") or None, evidence)
    if entra_joined:
        return JoinState("entra", fields.get("tenantname") or None, "dsregcmd: AzureAdJoined YES")
    return JoinState("none", None, "dsregcmd: not joined to a domain or to Entra ID")


def parse_realm_list(text: str) -> JoinState:
    """``realm list``: the first realm configured as a member of an Active Directory."""
    realm: str | None = None
    properties: dict[str, str] = {}
    realms: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            realm, properties = line.strip(), {}
            realms.append((realm, properties))
        else:
            key, _, value = line.strip().partition(":")
            properties[key.strip().lower()] = value.strip()
    for name, values in realms:
        configured = values.get("configured", "")
        if configured and configured != "no":
            domain = values.get("domain-name") or name
            software = values.get("server-software", "unknown")
            return JoinState("ad", domain, f"realm list: {domain} ({software}, {configured})")
    return JoinState("none", None, "realm list: no configured realm")


def parse_sssd_conf(text: str) -> JoinState:
    """``sssd.conf``: a domain whose id_provider is ``ad`` (AD) or ``idp`` for Entra ID."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return JoinState("none", None, "sssd.conf: unreadable")
    active = [d.strip() for d in parser.get("sssd", "domains", fallback="").split(",") if d.strip()]
    sections = [f"domain/{d}" for d in active] or [
        s for s in parser.sections() if s.startswith("domain/")
    ]
    for section in sections:
        if not parser.has_section(section):
            continue
        provider = parser.get(section, "id_provider", fallback="").strip().lower()
        name = section.split("/", 1)[1]
        if provider == "ad":
            domain = parser.get(section, "ad_domain", fallback=name).strip()
            return JoinState("ad", domain, f"sssd.conf: [{section}] id_provider = ad")
        if provider == "idp" and parser.get(section, "idp_type", fallback="").strip().lower() in (
            "entra_id",
            "entra",
        ):
            return JoinState("entra", name, f"sssd.conf: [{section}] id_provider = idp (Entra ID)")
    return JoinState("none", None, "sssd.conf: no AD or Entra ID domain")


def parse_dsconfigad(text: str) -> JoinState:
    """``dsconfigad -show``: bound to AD when it names an Active Directory Domain."""
    fields = _fields(text, "=")
    domain = fields.get("active directory domain")
    if domain:
        return JoinState("ad", domain, f"dsconfigad: bound to {domain}")
    return JoinState("none", None, "dsconfigad: not bound to Active Directory")


def _run(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=environment.child_environment(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout


def detect(
    platform: str = sys.platform, sssd_conf: Path = Path("/etc/sssd/sssd.conf")
) -> JoinState:
    """Run this platform's tools and decide."""
    if platform == "win32":
        output = _run(["dsregcmd", "/status"])
        return parse_dsregcmd(output) if output else JoinState("none", None, "dsregcmd unavailable")
    if platform == "darwin":
        output = _run(["dsconfigad", "-show"])
        return parse_dsconfigad(output or "")
    realm = parse_realm_list(_run(["realm", "list"]) or "")
    if realm.joined:
        return realm
    try:
        return parse_sssd_conf(sssd_conf.read_text("utf-8"))
    except OSError:
        return JoinState("none", None, "no realm configured and no readable sssd.conf")


def parse_loginctl_sessions(sessions: str, details: dict[str, str]) -> str | None:
    """The user of the active graphical session: ``loginctl list-sessions --no-legend`` plus
    ``loginctl show-session ID -p Name -p Type -p Active -p Class`` for each session ID."""
    for line in sessions.splitlines():
        parts = line.split()
        if not parts or parts[0] not in details:
            continue
        fields = _fields(details[parts[0]], "=")
        if (
            fields.get("active") == "yes"
            and fields.get("type") in ("x11", "wayland", "mir")
            and fields.get("class", "user") == "user"
        ):
            return fields.get("name") or None
    return None


def graphical_session_user() -> str | None:
    """The logged-in user of the active graphical session, through systemd-logind."""
    sessions = _run(["loginctl", "list-sessions", "--no-legend"])
    if not sessions:
        return None
    details = {}
    for line in sessions.splitlines():
        if line.split():
            session = line.split()[0]
            shown = _run(
                [
                    "loginctl",
                    "show-session",
                    session,
                    "-p",
                    "Name",
                    "-p",
                    "Type",
                    "-p",
                    "Active",
                    "-p",
                    "Class",
                ]
            )
            details[session] = shown or ""
    return parse_loginctl_sessions(sessions, details)
