"""``dgprov fetch-config``: read the user's token from Entra ID or AD, write provisioning.json."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .. import client_files, join
from ..errors import DgprovError, UsageError
from ..fetch import fetch_from_ad, fetch_from_entra
from ..ldap_directory import base_dn_for, discover_ldap_url
from .options import ad_options, ad_settings, entra_options, entra_settings

EXIT_NOT_JOINED_STRICT = 3
log = logging.getLogger("dgprov.fetch")


@dataclass(frozen=True)
class TargetUser:
    """Whose file this is: login name, data-directory home, and the owner to hand it to."""

    name: str
    home: Path | None  # None: the current user's own environment decides
    owner: tuple[int, int] | None  # (uid, gid) when running for someone else


def _account_name(login: str) -> str:
    """``CORP\\jdoe`` and ``jdoe@corp.example`` -> ``jdoe`` (the sAMAccountName)."""
    return login.split("\\")[-1].split("@")[0]


def resolve_target(for_user: str | None, output_given: bool) -> TargetUser:
    """The user the file is for: ``--for-user``; as root, the graphical session's user (unless
    ``--output`` already says where the file goes); otherwise whoever runs the command."""
    current = getpass.getuser()
    if sys.platform == "win32":
        if for_user is None and current.upper().rstrip("$").endswith("SYSTEM") and not output_given:
            for_user = join.windows_console_user()
            if for_user is None:
                raise UsageError(
                    "running as SYSTEM with nobody at the console: pass --for-user NAME"
                )
            click.echo(f"running as SYSTEM: provisioning {for_user}, the console user", err=True)
        if for_user is None:
            return TargetUser(current, None, None)
        drive = os.environ.get("SYSTEMDRIVE", "C:")  # Windows environment names are case-blind
        return TargetUser(for_user, Path(f"{drive}\\Users\\{_account_name(for_user)}"), None)
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
        click.echo(
            f"running as root: provisioning {name}, the user of the active graphical session",
            err=True,
        )
    if name is None or name == current:
        return TargetUser(current, None, None)
    if not is_root:
        raise UsageError(f"--for-user {name}: writing into another user's profile needs root")
    try:
        entry = pwd.getpwnam(_account_name(name))
    except KeyError:
        raise UsageError(f"--for-user {name}: no such local user") from None
    return TargetUser(name, Path(entry.pw_dir), (entry.pw_uid, entry.pw_gid))


def _setup_log(path: Path | None) -> None:
    if path is None:
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


@click.command("fetch-config")
@click.option(
    "--source",
    type=click.Choice(["auto", "entra", "ad"]),
    default="auto",
    show_default=True,
    help="Where the token is stored; auto detects how this machine is joined.",
)
@click.option(
    "--strict", is_flag=True, help="Exit 3 (not 0) when the machine is joined to nothing."
)
@click.option(
    "--attribute-set-name", default="Defguard", show_default=True, help="Entra attribute set."
)
@entra_options
@ad_options(attribute_default="defguardProvisioningConfig", match_by=False)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead."
)
@click.option(
    "--for-user", help="Provision this user (when run as root or SYSTEM by an installer)."
)
@click.option(
    "--sam-account-name",
    help="The user's AD account name (default: the login name of the user the file is for).",
)
@click.option(
    "--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Log the steps here."
)
def fetch_config_command(**params: Any) -> None:
    """Read this user's Defguard enrollment token from Entra ID or Active Directory and write
    provisioning.json where the Defguard desktop client reads it.

    Exit status: 0 written (or nothing to do), 1 nothing found for the user, 2 usage or sign-in
    error, 3 not joined with --strict.
    """
    try:
        _setup_log(params["log_file"])
        sys.exit(_fetch(params))
    except DgprovError as exc:
        log.info(f"failed: {exc}")
        click.echo(f"dgprov fetch-config: error: {exc}", err=True)
        sys.exit(exc.exit_status)


def _fetch(params: dict[str, Any]) -> int:
    target = resolve_target(params["for_user"], params["output"] is not None)
    source = params["source"]
    state = join.JoinState("none")
    if source == "auto":
        state = join.detect()
        log.info(f"join detection: {state.kind} ({state.evidence})")
        if not state.joined:
            click.echo(
                "this machine is joined neither to Active Directory nor to Entra ID "
                f"({state.evidence}); nothing to do",
                err=True,
            )
            return EXIT_NOT_JOINED_STRICT if params["strict"] else 0
        source = state.kind
    log.info(f"source: {source}; user: {target.name}")
    if source == "entra":
        settings = entra_settings(params)
        config = asyncio.run(
            fetch_from_entra(
                settings, params["attribute_set_name"], lambda m: click.echo(m, err=True)
            )
        )
    else:
        domain = state.domain
        if not params["ldap_url"]:
            discovered = discover_ldap_url(domain) if domain else None
            if discovered is None:
                raise UsageError(
                    "no --ldap-url and no domain controller found through DNS SRV; pass --ldap-url"
                )
            params["ldap_url"] = discovered
            log.info(f"domain controller from DNS SRV: {discovered}")
        if not params["base_dn"] and domain:
            params["base_dn"] = base_dn_for(domain)
        account = params["sam_account_name"] or _account_name(target.name)
        config = fetch_from_ad(ad_settings(params), account)
    log.info("found an enrollment URL and token")
    path = (
        params["output"] or client_files.data_directory(home=target.home) / client_files.FILE_NAME
    )
    client_files.write(path, config, owner=target.owner)
    log.info(f"wrote {path}")
    click.echo(f"wrote {path} (enrollment_url, enrollment_token) for {target.name}", err=True)
    return 0
