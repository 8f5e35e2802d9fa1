"""``dgprov enroll``: finish enrollment from provisioning.json, write WireGuard configurations."""

from __future__ import annotations

import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import click

from .. import client_files
from ..enrollment import Enrolled, check_password, enroll_device, refresh_device
from ..errors import DgprovError, UsageError


def _password(file: Path | None) -> str:
    if file is not None:
        try:
            password = file.read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"--password-file {file}: cannot read it ({exc.strerror})") from None
    elif sys.stdin.isatty():
        password = click.prompt(
            "Choose your Defguard password", hide_input=True, confirmation_prompt=True, err=True
        )
    else:
        raise UsageError(
            "this account must be activated with a password: pass --password-file FILE"
        )
    check_password(password)
    return password


def _report(verb: str, enrolled: Enrolled) -> None:
    count = len(enrolled.configs)
    click.echo(
        f"{verb} {enrolled.username} at {enrolled.instance}: {count} WireGuard configuration(s)"
    )
    for config in enrolled.configs:
        note = (
            f"  (needs {config.mfa}: connect with the Defguard desktop client)"
            if config.mfa
            else ""
        )
        click.echo(f"  {config.location}: {config.path}{note}")


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
def enroll_command(**params: Any) -> None:
    """Complete Defguard enrollment from provisioning.json, without the desktop app: activate
    the account if needed, register this device with a key generated here, and write one
    wg-quick configuration per location.

    Exit status: 0 enrolled, 1 refused by the server (with the reason), 2 usage or file error.
    """
    try:
        _enroll(params)
    except DgprovError as exc:
        click.echo(f"dgprov enroll: error: {exc}", err=True)
        sys.exit(exc.exit_status)


def _enroll(params: dict[str, Any]) -> None:
    data_dir = client_files.data_directory()
    output_dir: Path = params["output_dir"] or data_dir / "wireguard"
    verify: Any = (
        ssl.create_default_context(cafile=params["ca_bundle"]) if params["ca_bundle"] else True
    )
    if params["refresh"]:
        _report("refreshed", refresh_device(output_dir, verify=verify))
        return
    path = params["provisioning_file"] or data_dir / client_files.FILE_NAME
    if not path.exists():
        raise UsageError(
            f"{path} does not exist; run dgprov fetch-config first, or pass --provisioning-file"
        )
    enrolled = enroll_device(
        client_files.read(path),
        output_dir,
        device_name=params["device_name"]
        if params["device_name"] is not None
        else socket.gethostname(),
        password=lambda: _password(params["password_file"]),
        phone=params["phone"],
        verify=verify,
    )
    _report("enrolled", enrolled)
