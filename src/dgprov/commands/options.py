"""Options shared by the commands, and how their values become the library's settings.

The commands resolve the command line against the environment here (one place, through
``environment``), read secrets from files, variables or a hidden prompt, and hand typed settings
to ``dgprov.api``; nothing below the commands knows about click.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import click

from .. import environment
from ..credentials import Prompt, read_secret
from ..entra_auth import AuthMode, EntraSettings
from ..errors import UsageError
from ..ldap_directory import LdapSettings, MatchBy
from ..plan import EnrolledPolicy
from ..urls import check_ldap_url, check_service_url

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"


def _stack(options: list[Decorator]) -> Decorator:
    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def warn(message: str) -> None:
    click.echo(message, err=True)


def terminal_prompt() -> Prompt | None:
    """A hidden prompt when a person is at the terminal; None for installers and schedulers."""
    if not sys.stdin.isatty():
        return None
    return lambda question: str(click.prompt(question, hide_input=True, err=True))


def _entra_option_list(
    client_id_help: str, auth: Decorator, client_id_variable: str = environment.CLIENT_ID
) -> list[Decorator]:
    """The Entra options; ``--client-id`` (and its variable) and ``--auth`` differ between the
    jobs and the broker."""
    return [
        click.option("--tenant", help=f"Entra tenant id or domain [env {environment.TENANT}]."),
        click.option("--client-id", help=f"{client_id_help} [env {client_id_variable}]."),
        auth,
        click.option(
            "--client-secret-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"For --auth client-secret (or set {environment.CLIENT_SECRET}).",
        ),
        click.option(
            "--client-certificate",
            type=click.Path(dir_okay=False, path_type=Path),
            help="For --auth certificate: PEM with the private key and the certificate "
            f"[env {environment.CLIENT_CERTIFICATE}] (password, if any, in "
            f"{environment.CLIENT_CERTIFICATE_PASSWORD}).",
        ),
        click.option(
            "--authority",
            help="Full authority URL (default https://login.microsoftonline.com/<tenant>).",
        ),
        click.option(
            "--graph-url", default=DEFAULT_GRAPH_URL, show_default=True, help="Graph base URL."
        ),
    ]


_ENTRA_OPTIONS = _entra_option_list(
    "Public client app id",
    click.option(
        "--auth",
        type=click.Choice(["auto", "browser", "device-code", "client-secret", "certificate"]),
        default="auto",
        show_default=True,
        help="auto = browser, or device code when no browser can open.",
    ),
)
_BROKER_ENTRA_OPTIONS = _entra_option_list(
    "The broker's app registration: the audience it accepts and its identity for Graph",
    click.option(
        "--auth",
        type=click.Choice(["client-secret", "certificate"]),
        default="client-secret",
        show_default=True,
        help="How the broker signs in to Graph (application permission User.Read.All).",
    ),
    environment.BROKER_CLIENT_ID,
)


ca_bundle_option = click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM CA bundle to trust for Defguard, the authority, Graph and LDAPS.",
)


def _grouped(options: list[Decorator], group: type[Any], parameter: str) -> Decorator:
    """Add ``options`` to a command and hand their values to it as one ``group`` object."""
    names = [f.name for f in fields(group)]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def command(**values: Any) -> Any:
            grouped = group(**{name: values.pop(name) for name in names})
            return function(**values, **{parameter: grouped})

        return _stack(options)(command)

    return decorate


@dataclass(frozen=True)
class EntraOptions:
    """The Entra sign-in options as given; ``settings`` resolves them."""

    tenant: str | None
    client_id: str | None
    auth: str
    client_secret_file: Path | None
    client_certificate: Path | None
    authority: str | None
    graph_url: str

    def settings(
        self, ca_bundle: str | None, client_id_variable: str = environment.CLIENT_ID
    ) -> EntraSettings:
        """The sign-in settings; a missing tenant or client id is reported when one is needed.
        The broker reads its client id from a variable of its own (``client_id_variable``)."""
        secret = None
        if self.auth == "client-secret":
            secret = read_secret(
                what="client secret",
                env_var=environment.CLIENT_SECRET,
                file=self.client_secret_file,
                file_option="--client-secret-file",
            )
        certificate = None
        if self.auth == "certificate":
            chosen = self.client_certificate or environment.get(environment.CLIENT_CERTIFICATE)
            if chosen is None:
                raise UsageError("--auth certificate needs --client-certificate FILE")
            try:
                certificate = Path(chosen).read_text("utf-8")
            except OSError as exc:
                raise UsageError(
                    f"--client-certificate {chosen}: cannot read it ({exc.strerror})"
                ) from None
        return EntraSettings(
            tenant=self.tenant or environment.get(environment.TENANT) or "",
            client_id=self.client_id or environment.get(client_id_variable) or "",
            authority=check_service_url(self.authority, "--authority") if self.authority else None,
            graph_url=check_service_url(self.graph_url, "--graph-url"),
            ca_bundle=ca_bundle,
            auth=cast(AuthMode, self.auth),
            client_secret=secret,
            client_certificate=certificate,
            certificate_password=environment.get(environment.CLIENT_CERTIFICATE_PASSWORD),
        )


entra_options = _grouped(_ENTRA_OPTIONS, EntraOptions, "entra")
"""The Entra sign-in options shared by the admin and client jobs, as ``entra: EntraOptions``."""
broker_entra_options = _grouped(_BROKER_ENTRA_OPTIONS, EntraOptions, "entra")
"""The same for ``dgprov broker``: its own registration, app-only credentials only."""


@dataclass(frozen=True)
class AdOptions:
    """The Active Directory options as given; ``settings`` checks and completes them."""

    ldap_url: str | None
    base_dn: str | None
    ad_attribute: str | None
    bind_dn: str | None
    bind_password_file: Path | None

    def bind_password(self) -> str | None:
        """The simple-bind password; None for a Kerberos bind (no --bind-dn)."""
        return bind_password(self.bind_dn, self.bind_password_file)

    def settings(self, match_by: str, ca_bundle: str | None) -> LdapSettings:
        """The admin job's LDAP settings: all three of URL, base DN and attribute are needed."""
        given = (
            ("--ldap-url", self.ldap_url),
            ("--base-dn", self.base_dn),
            ("--ad-attribute", self.ad_attribute),
        )
        missing = [option for option, value in given if not value]
        if missing or not self.ldap_url or not self.base_dn or not self.ad_attribute:
            raise UsageError(f"--directory ad needs {', '.join(missing)}")
        return LdapSettings(
            url=check_ldap_url(self.ldap_url),
            base_dn=self.base_dn,
            attribute=self.ad_attribute,
            bind_dn=self.bind_dn,
            password=self.bind_password(),
            match_by=cast(MatchBy, match_by),
            ca_bundle=ca_bundle,
        )


def ad_options(*, attribute_default: str | None) -> Decorator:
    """Active Directory options (where to search, how to bind, which attribute holds the JSON),
    handed to the command as ``ad: AdOptions``."""
    options: list[Decorator] = [
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
            help=f"File holding the bind password (or set {environment.BIND_PASSWORD}).",
        ),
    ]
    return _grouped(options, AdOptions, "ad")


allow_guests_option = click.option(
    "--allow-guests",
    is_flag=True,
    help="Also provision members whose Entra account is a guest (userType Guest); refused "
    "otherwise.",
)
"""Shared by generate-tokens, sync and the broker, so all three admit guests alike."""


match_by_option = click.option(
    "--match-by",
    type=click.Choice(["samaccountname", "mail"]),
    default="samaccountname",
    show_default=True,
    help="AD users match Defguard users by sAMAccountName = username, or by mail.",
)


def bind_password(bind_dn: str | None, bind_password_file: Path | None) -> str | None:
    """The simple-bind password; None for a Kerberos bind (no --bind-dn)."""
    if not bind_dn:
        return None
    return read_secret(
        what="LDAP bind password",
        env_var=environment.BIND_PASSWORD,
        file=bind_password_file,
        file_option="--bind-password-file",
        prompt=terminal_prompt(),
    )


# The options of the admin jobs, generate-tokens and sync: one list, so both take the same.
_ADMIN_JOB_OPTIONS: list[Decorator] = [
    click.option("--url", required=True, help="Defguard core URL (https; http only on loopback)."),
    click.option(
        "--group-name",
        required=True,
        help="Defguard group whose members get tokens (case-sensitive).",
    ),
    click.option(
        "--api-token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"File holding the Defguard API token (or set {environment.DEFGUARD_API_TOKEN}).",
    ),
    click.option(
        "--api-token", help="The API token itself; discouraged, visible in the process list."
    ),
    click.option(
        "--attribute-set-name", default="Defguard", show_default=True, help="Entra attribute set."
    ),
    click.option(
        "--enrollment-token-expiration-time",
        "expiration",
        metavar="DURATION",
        help="Token lifetime such as 24h, 1d, 2w or '1h 30m', from 1m to 10y (default: the "
        "server's, 24h).",
    ),
    click.option(
        "--directory",
        type=click.Choice(["entra", "ad"]),
        default="entra",
        show_default=True,
        help="Where tokens are stored: Entra ID custom security attributes, or an AD attribute.",
    ),
    entra_options,
    ca_bundle_option,
    ad_options(attribute_default=None),
    match_by_option,
    click.option(
        "--enrolled-users",
        type=click.Choice(["desktop", "skip"]),
        default="desktop",
        show_default=True,
        help="For users Defguard counts as enrolled: a start_desktop token (ignores a custom "
        "expiry), or skip.",
    ),
    click.option(
        "--include-disabled-directory-users",
        is_flag=True,
        help="Also issue tokens for members whose Entra or AD account is disabled (skipped "
        "otherwise).",
    ),
    allow_guests_option,
    click.option(
        "--dry-run",
        is_flag=True,
        help="Change nothing: print the plan, the tokens' lifetimes and what can be checked "
        "without writing (with --report, write the plan as a report); exit 1 if the plan "
        "already fails members.",
    ),
    click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal."),
    click.option(
        "--concurrency",
        type=click.IntRange(1, 256),
        default=32,
        show_default=True,
        help="Tokens issued in parallel.",
    ),
    click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Report file (.json or .csv), kept current while the run goes; must not exist yet.",
    ),
    click.option(
        "--overwrite-report",
        is_flag=True,
        help="Replace the --report file if it exists.",
    ),
    click.option(
        "--include-tokens-in-report",
        is_flag=True,
        help="Put the tokens in the report (file mode 0600).",
    ),
    click.option(
        "--enrollment-url",
        help="The enrollment URL Defguard hands out: its length is checked before any token is "
        "issued, and the run stops if the first token's URL differs.",
    ),
    click.option(
        "--member",
        "members",
        multiple=True,
        metavar="USERNAME",
        help="Act on this member of the group only (repeatable); nobody else is touched.",
    ),
    click.option(
        "--exclude-member",
        "exclude_members",
        multiple=True,
        metavar="USERNAME",
        help="Leave this member untouched, reported as skipped (repeatable).",
    ),
    click.option(
        "--exclude-members-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Usernames to leave untouched, one a line ('#' starts a comment).",
    ),
    click.option(
        "--previous-report",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The last run's report, to tell new failures from known ones (default: the "
        "--report file that --overwrite-report replaces).",
    ),
]


@dataclass(frozen=True)
class AdminJobOptions:
    """The options ``generate-tokens`` and ``sync`` share, as given; ``arguments`` resolves them
    into the keyword arguments their library functions share."""

    url: str
    group_name: str
    api_token_file: Path | None
    api_token: str | None
    attribute_set_name: str
    expiration: str | None
    directory: str
    entra: EntraOptions
    ca_bundle: str | None
    ad: AdOptions
    match_by: str
    enrolled_users: str
    include_disabled_directory_users: bool
    allow_guests: bool
    dry_run: bool
    yes: bool
    concurrency: int
    report_path: Path | None
    overwrite_report: bool
    include_tokens_in_report: bool
    enrollment_url: str | None
    members: tuple[str, ...]
    exclude_members: tuple[str, ...]
    exclude_members_file: Path | None
    previous_report: Path | None

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``api.generate_tokens`` / ``api.sync``: the directory settings
        checked and the API token read (from the environment, a file or a prompt)."""
        entra_settings = None
        ad_settings = None
        if self.directory == "ad":
            ad_settings = self.ad.settings(self.match_by, self.ca_bundle)
        else:
            entra_settings = self.entra.settings(self.ca_bundle)
            # Everything missing in one message: an administrator fixes the unit file once.
            missing = entra_settings.missing()
            if missing and self.api_token_source() is None:
                missing.append(
                    f"no Defguard API token ({environment.DEFGUARD_API_TOKEN} or --api-token-file)"
                )
            if missing:
                raise UsageError("; ".join(missing))
        token = read_secret(
            what="Defguard API token",
            env_var=environment.DEFGUARD_API_TOKEN,
            file=self.api_token_file,
            file_option="--api-token-file",
            command_line=self.api_token,
            command_line_option="--api-token",
            prompt=terminal_prompt(),
            warn=warn,
        )
        return {
            "url": self.url,
            "group_name": self.group_name,
            "api_token": token,
            "directory": "ad" if self.directory == "ad" else "entra",
            "entra": entra_settings,
            "attribute_set_name": self.attribute_set_name,
            "ad": ad_settings,
            "enrollment_token_expiration_time": self.expiration,
            "enrolled_users": EnrolledPolicy(self.enrolled_users),
            "include_disabled_directory_users": self.include_disabled_directory_users,
            "allow_guests": self.allow_guests,
            "dry_run": self.dry_run,
            "concurrency": self.concurrency,
            "report": self.report_path,
            "overwrite_report": self.overwrite_report,
            "include_tokens_in_report": self.include_tokens_in_report,
            "enrollment_url": self.enrollment_url,
            "ca_bundle": self.ca_bundle,
            "members": self.members,
            "exclude_members": self.exclude_members,
            "exclude_members_file": self.exclude_members_file,
            "previous_report": self.previous_report,
            "api_token_source": self.api_token_source()
            or f"{environment.DEFGUARD_API_TOKEN} or --api-token-file",
        }

    def api_token_source(self) -> str | None:
        """Where the API token comes from, in read_secret's order; None when only a prompt
        could give it."""
        if self.api_token:  # the fix names a better place than the process list
            return f"{environment.DEFGUARD_API_TOKEN} or --api-token-file"
        if self.api_token_file is not None:
            return f"--api-token-file {self.api_token_file}"
        if environment.get(environment.DEFGUARD_API_TOKEN):
            return environment.DEFGUARD_API_TOKEN
        return None


admin_job_options = _grouped(_ADMIN_JOB_OPTIONS, AdminJobOptions, "job")
"""The options of ``generate-tokens`` and ``sync``, handed over as ``job: AdminJobOptions``."""
