"""Options shared by the commands that sign in to Entra ID or bind to Active Directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..credentials import check_service_url, read_secret
from ..entra_auth import EntraSettings
from ..errors import UsageError
from ..ldap_directory import LdapSettings, check_ldap_url


def entra_options(function: Any) -> Any:
    """The Entra sign-in options shared by the admin and client jobs."""
    options = [
        click.option(
            "--tenant",
            envvar="DGPROV_TENANT",
            help="Entra tenant id or domain [env DGPROV_TENANT].",
        ),
        click.option(
            "--client-id",
            envvar="DGPROV_CLIENT_ID",
            help="Public client app id [env DGPROV_CLIENT_ID].",
        ),
        click.option(
            "--auth",
            type=click.Choice(["auto", "browser", "device-code", "client-secret", "certificate"]),
            default="auto",
            show_default=True,
            help="auto = browser, or device code when no browser can open.",
        ),
        click.option(
            "--client-secret-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="For --auth client-secret (or set DGPROV_CLIENT_SECRET).",
        ),
        click.option(
            "--client-certificate",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="DGPROV_CLIENT_CERTIFICATE",
            help="For --auth certificate: PEM with the private key and the certificate "
            "(password, if any, in DGPROV_CLIENT_CERTIFICATE_PASSWORD).",
        ),
        click.option(
            "--authority",
            help="Full authority URL (default https://login.microsoftonline.com/<tenant>).",
        ),
        click.option(
            "--graph-url",
            default="https://graph.microsoft.com/v1.0",
            show_default=True,
            help="Graph base URL.",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(exists=True, dir_okay=False),
            help="PEM CA bundle to trust for Defguard, the authority and Graph.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def entra_settings(params: dict[str, Any]) -> EntraSettings:
    if not params["tenant"] and not params["authority"]:
        raise UsageError("no Entra tenant: pass --tenant or set DGPROV_TENANT")
    if not params["client_id"]:
        raise UsageError("no client id: pass --client-id or set DGPROV_CLIENT_ID (see the README)")
    secret = None
    if params["auth"] == "client-secret":
        secret = read_secret(
            what="client secret",
            env_var="DGPROV_CLIENT_SECRET",
            file=params["client_secret_file"],
            command_line=None,
            command_line_option="",
            file_option="--client-secret-file",
            prompt=False,
        )
    certificate = None
    if params["auth"] == "certificate":
        path = params["client_certificate"]
        if path is None:
            raise UsageError("--auth certificate needs --client-certificate FILE")
        try:
            certificate = path.read_text("utf-8")
        except OSError as exc:
            raise UsageError(
                f"--client-certificate {path}: cannot read it ({exc.strerror})"
            ) from None
    return EntraSettings(
        tenant=params["tenant"] or "",
        client_id=params["client_id"],
        authority=check_service_url(params["authority"], "--authority")
        if params["authority"]
        else None,
        graph_url=check_service_url(params["graph_url"], "--graph-url"),
        ca_bundle=params["ca_bundle"],
        auth=params["auth"],
        client_secret=secret,
        client_certificate=certificate,
        certificate_password=os.environ.get("DGPROV_CLIENT_CERTIFICATE_PASSWORD") or None,
    )


def ad_settings(params: dict[str, Any]) -> LdapSettings:
    missing = [
        f"--{name.replace('_', '-')}"
        for name in ("ldap_url", "base_dn", "ad_attribute")
        if not params[name]
    ]
    if missing:
        raise UsageError(f"--directory ad needs {', '.join(missing)}")
    password = None
    if params["bind_dn"]:
        password = read_secret(
            what="LDAP bind password",
            env_var="DGPROV_BIND_PASSWORD",
            file=params["bind_password_file"],
            command_line=None,
            command_line_option="",
            file_option="--bind-password-file",
        )
    return LdapSettings(
        url=check_ldap_url(params["ldap_url"]),
        base_dn=params["base_dn"],
        attribute=params["ad_attribute"],
        bind_dn=params["bind_dn"],
        password=password,
        match_by=params.get("match_by", "samaccountname"),
        ca_bundle=params["ca_bundle"],
    )


def ad_options(*, attribute_default: str | None, match_by: bool) -> Callable[[Any], Any]:
    """Active Directory options: where to search, how to bind, which attribute holds the JSON."""
    options = [
        click.option("--ldap-url", help="ldaps://dc.corp.example (ldap:// only on loopback)."),
        click.option("--base-dn", help="Where users are searched, e.g. DC=corp,DC=example."),
        click.option(
            "--ad-attribute",
            default=attribute_default,
            show_default=attribute_default is not None,
            help="Attribute holding the JSON {enrollmentUrl, enrollmentToken}.",
        ),
        click.option("--bind-dn", help="Simple bind as this DN; without it, Kerberos."),
        click.option(
            "--bind-password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File holding the bind password (or set DGPROV_BIND_PASSWORD).",
        ),
    ]
    if match_by:
        options.append(
            click.option(
                "--match-by",
                type=click.Choice(["samaccountname", "mail"]),
                default="samaccountname",
                show_default=True,
                help="AD users match Defguard users by sAMAccountName = username, or by mail.",
            )
        )

    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
