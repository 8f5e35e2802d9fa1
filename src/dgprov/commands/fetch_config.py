"""``dgprov fetch-config``: read the user's token from Entra ID or AD, or have a broker mint one,
and write provisioning.json."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import click

from .. import api, environment, fetch
from ..private_files import open_private_log
from .options import AdOptions, EntraOptions, ad_options, ca_bundle_option, entra_options
from .render import echo_err

SOURCES: dict[str, Literal["auto", "entra", "ad", "broker"]] = {
    "auto": "auto",
    "entra": "entra",
    "ad": "ad",
    "broker": "broker",
}


@contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """``--log-file``: the steps, for installer logs; never the token or the raw value.

    Installers run this as root, often with the log in a shared place such as /tmp: the file
    is created 0600 and never opened through a link (``private_files.open_private_log``).
    """
    stream = open_private_log(path)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("dgprov")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        stream.close()


def _log_to(path: Path | None) -> None:
    """Log to ``path`` until the whole command is done, so the error handler's last line (in
    ``cli.py``, outside this command) reaches the file too."""
    if path is not None:
        click.get_current_context().find_root().with_resource(_logging_to(path))


@click.command("fetch-config")
@click.option(
    "--source",
    type=click.Choice(["auto", "entra", "ad", "broker"]),
    default="auto",
    show_default=True,
    help="Where the token comes from; auto: the broker when one is configured, else how this "
    "machine is joined.",
)
@click.option(
    "--broker-url",
    help=f"The dgprov broker, https://… [env {environment.BROKER_URL}].",
)
@click.option(
    "--broker-scope",
    help="The broker's scope to sign in for, e.g. api://<broker app id>/Provision "
    f"[env {environment.BROKER_SCOPE}; default: the scope the broker gives].",
)
@click.option(
    "--strict", is_flag=True, help="Exit 3 (not 0) when the machine is joined to nothing."
)
@click.option(
    "--attribute-set-name", default="Defguard", show_default=True, help="Entra attribute set."
)
@entra_options
@ca_bundle_option
@ad_options(attribute_default="defguardProvisioningConfig")
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
@click.option(
    "--at-logon",
    is_flag=True,
    help="The per-user logon action: nothing to do once this user was provisioned (a marker "
    "in their dgprov folder); log to %LOCALAPPDATA%\\dgprov\\logs unless --log-file.",
)
def fetch_config_command(
    *,
    source: str,
    broker_url: str | None,
    broker_scope: str | None,
    strict: bool,
    attribute_set_name: str,
    entra: EntraOptions,
    ca_bundle: str | None,
    ad: AdOptions,
    output: Path | None,
    for_user: str | None,
    sam_account_name: str | None,
    log_file: Path | None,
    at_logon: bool,
) -> None:
    """Read this user's Defguard enrollment token from Entra ID or Active Directory, or have a
    dgprov broker mint one for the signed-in user, and write provisioning.json where the
    Defguard desktop client reads it.

    Exit status: 0 written (or nothing to do), 1 nothing found for the user (or the broker
    refused), 2 usage or sign-in error, 3 not joined with --strict.
    """
    _log_to(log_file or (fetch.logon_log_file() if at_logon else None))
    result = api.fetch_config(
        source=SOURCES[source],
        strict=strict,
        attribute_set_name=attribute_set_name,
        entra=entra.settings(ca_bundle),
        broker_url=broker_url or environment.get(environment.BROKER_URL),
        broker_scope=broker_scope or environment.get(environment.BROKER_SCOPE),
        ldap_url=ad.ldap_url,
        base_dn=ad.base_dn,
        ad_attribute=ad.ad_attribute or "defguardProvisioningConfig",
        bind_dn=ad.bind_dn,
        bind_password=ad.bind_password(),
        ca_bundle=ca_bundle,
        output=output,
        for_user=for_user,
        sam_account_name=sam_account_name,
        notify=echo_err,
        at_logon=at_logon,
    )
    if result.path is not None:
        via = " from the broker" if result.source == "broker" else ""
        echo_err(f"wrote {result.path} (enrollment_url, enrollment_token) for {result.user}{via}")
