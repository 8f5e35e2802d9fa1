"""``dgprov enroll``: finish enrollment from provisioning.json, write WireGuard configurations."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from .. import api
from ..account_rules import check_password
from ..errors import UsageError
from .render import show_enrolled


def _password_source(file: Path | None) -> Callable[[], str] | None:
    """Where a new account's password comes from: the file, a hidden prompt, or nowhere."""

    def from_file() -> str:
        assert file is not None
        try:
            password = file.read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"--password-file {file}: cannot read it ({exc.strerror})") from None
        check_password(password)
        return password

    def from_prompt() -> str:
        password = str(
            click.prompt(
                "Choose your Defguard password",
                hide_input=True,
                confirmation_prompt=True,
                err=True,
            )
        )
        check_password(password)
        return password

    if file is not None:
        return from_file
    return from_prompt if sys.stdin.isatty() else None


@click.command("enroll")
@click.option(
    "--provisioning-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Default: provisioning.json in the Defguard client's data directory.",
)
@click.option("--device-name", help="Name of this device in Defguard (default: the host name).")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the wg-quick files go (default: <data dir>/wireguard).",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Password for an account that is not activated yet (else a hidden prompt).",
)
@click.option("--phone", help="Phone number to store when activating the account.")
@click.option(
    "--refresh", is_flag=True, help="Fetch updated configurations for the enrolled device."
)
@click.option(
    "--ca-bundle", type=click.Path(exists=True, dir_okay=False), help="CA to trust for the proxy."
)
@click.option(
    "--route-all-traffic/--no-route-all-traffic",
    default=None,
    help="Route all traffic (0.0.0.0/0, ::/0) through the VPN, where Defguard's client traffic "
    "policy leaves the choice to the user (policy 0); forced by policy 2, refused under policy 1. "
    "Default: off; with --refresh, the choice made before.",
)
def enroll_command(
    *,
    provisioning_file: Path | None,
    device_name: str | None,
    output_dir: Path | None,
    password_file: Path | None,
    phone: str | None,
    refresh: bool,
    ca_bundle: str | None,
    route_all_traffic: bool | None,
) -> None:
    """Complete Defguard enrollment from provisioning.json, without the desktop app: activate
    the account if needed, register this device with a key generated here, and write one
    wg-quick configuration per location.

    It acts as the desktop app on first launch: it goes on at the instance's proxy URL (only if
    it is the enrollment URL's origin), follows the client traffic policy, writes
    PersistentKeepalive = 25, and after success renames provisioning.json to
    provisioning.json.used-<time> so the desktop app does not use the spent token again. An
    account that Defguard requires to set up MFA is left to the desktop app.

    Exit status: 0 enrolled, 1 refused by the server or an answer dgprov will not write (with
    the reason; a device already registered keeps its key for the next run; MFA required; a
    proxy URL of another origin), 2 usage or file error, found before anything is registered.
    """
    enrolled = api.enroll(
        provisioning_file=provisioning_file,
        device_name=device_name,
        output_dir=output_dir,
        password=_password_source(password_file),
        phone=phone,
        refresh=refresh,
        ca_bundle=ca_bundle,
        route_all_traffic=route_all_traffic,
    )
    verb = "refreshed" if refresh else "enrolled"
    count = len(enrolled.configs)
    show_enrolled(
        enrolled,
        f"{verb} {enrolled.username} at {enrolled.instance}: {count} WireGuard configuration(s)",
    )
    if enrolled.provisioning_note:
        click.echo(enrolled.provisioning_note)
