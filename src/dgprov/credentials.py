"""Reading secrets the way administrators expect: environment, file, prompt, and only reluctantly
the command line (visible to every local user in the process list)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from .errors import UsageError


def read_secret(
    *,
    what: str,
    env_var: str,
    file: Path | None,
    command_line: str | None,
    command_line_option: str,
    file_option: str,
    prompt: bool = True,
) -> str:
    if command_line:
        click.echo(
            f"warning: {command_line_option} puts the {what} in the process list, visible to other "
            f"users; prefer {env_var} or {file_option}",
            err=True,
        )
        return command_line
    if file is not None:
        try:
            value = file.read_text("utf-8").strip()
        except OSError as exc:
            raise UsageError(f"{file_option} {file}: cannot read it ({exc.strerror})") from None
        if not value:
            raise UsageError(f"{file_option} {file}: the file is empty")
        return value
    if os.environ.get(env_var):
        return os.environ[env_var].strip()
    if prompt and sys.stdin.isatty():
        value = click.prompt(f"{what[0].upper()}{what[1:]}", hide_input=True, err=True).strip()
        if value:
            return value
    raise UsageError(f"no {what}: set {env_var} or pass {file_option}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
