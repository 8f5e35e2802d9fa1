"""Which URLs dgprov agrees to talk to, and the one rule behind each.

Secrets travel to every URL checked here (the API token, Graph tokens, the bind password, the
enrollment token), so plain http and ldap are accepted for loopback addresses only, and
credentials inside a URL are refused rather than silently sent.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import InvalidProvisioningValue, UsageError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DEFAULT_PORTS = {"http": 80, "https": 443, "ldap": 389, "ldaps": 636}


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme and host lower-cased and the default port filled
    in: the unit a credential belongs to, as browsers define it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: an origin of its own, matching nothing
        return scheme, (parts.hostname or "").lower(), -1
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` may receive what is sent to ``base``: relative, or the same origin.

    A relative URL (no scheme and no host) resolves against ``base``; anything naming a scheme
    or a host must name ``base``'s own.
    """
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:
        return True
    return origin(url) == origin(base)


def shown_origin(url: str) -> str:
    """``scheme://host:port`` of a URL, for messages: never its path or query, which could
    carry a token."""
    scheme, host, port = origin(url)
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def check_service_url(url: str, option: str) -> str:
    """https, or http on a loopback address only; no credentials inside the URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"{option} {url!r} is not an http(s) URL such as https://defguard.example.com"
        )
    if parts.username or parts.password:
        raise UsageError(f"{option}: remove the credentials from the URL; pass secrets separately")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(
            f"{option} {url}: use https (plain http is accepted for loopback addresses only)"
        )
    return url.rstrip("/")


def check_defguard_url(url: str, option: str = "--url") -> str:
    """Defguard core's base URL (its web UI's address): dgprov adds ``/api/v1`` itself."""
    checked = check_service_url(url, option)
    path = urlsplit(checked).path.rstrip("/")
    if path.endswith("/api/v1") or "/api/v1/" in path:
        base = checked[: checked.index("/api/v1")]
        raise UsageError(
            f"{option} {checked}: give Defguard's base URL without /api/v1, such as {base}"
        )
    return checked


def check_ldap_url(url: str) -> str:
    """ldaps, or ldap on a loopback address only: the bind password and tokens cross it."""
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise UsageError(f"--ldap-url {url!r} is not an LDAP URL such as ldaps://dc1.corp.example")
    if parts.scheme == "ldap" and not is_loopback(parts.hostname):
        raise UsageError(
            f"--ldap-url {url}: use ldaps:// (tokens must not cross the network in clear text; "
            "ldap:// is accepted for loopback addresses only)"
        )
    return url


def check_enrollment_url(url: str) -> str:
    """An enrollment URL the desktop client can use and that is safe to send a token to."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidProvisioningValue("the enrollment URL is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise InvalidProvisioningValue("the enrollment URL must use https (http only on loopback)")
    if parts.username or parts.password:
        raise InvalidProvisioningValue("the enrollment URL must not contain credentials")
    return url
