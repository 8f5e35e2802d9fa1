"""``dgprov generate-tokens``: issue enrollment tokens for a Defguard group and store them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api, environment
from ..credentials import read_secret
from ..plan import EnrolledPolicy
from .options import (
    AdOptions,
    EntraOptions,
    ad_options,
    ca_bundle_option,
    entra_options,
    match_by_option,
    terminal_prompt,
    warn,
)
from .render import Progress, echo_err, show_members, show_summary


def _confirm(pending: int, directory_name: str) -> bool:
    """Ask on a terminal only; installers and schedulers pass --yes or have no terminal."""
    if not sys.stdin.isatty():
        return True
    return click.confirm(
        f"Issue {pending} enrollment tokens and store them in {directory_name}?", err=True
    )


@click.command("generate-tokens")
@click.option("--url", required=True, help="Defguard core URL (https; http only on loopback).")
@click.option(
    "--group-name", required=True, help="Defguard group whose members get tokens (case-sensitive)."
)
@click.option(
    "--api-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the Defguard API token (or set {environment.DEFGUARD_API_TOKEN}).",
)
@click.option("--api-token", help="The API token itself; discouraged, visible in the process list.")
@click.option(
    "--attribute-set-name", default="Defguard", show_default=True, help="Entra attribute set."
)
@click.option(
    "--enrollment-token-expiration-time",
    "expiration",
    metavar="DURATION",
    help="Token lifetime such as 24h, 1d, 2w or '1h 30m', from 1m to 10y (default: the "
    "server's, 24h).",
)
@click.option(
    "--directory",
    type=click.Choice(["entra", "ad"]),
    default="entra",
    show_default=True,
    help="Where tokens are stored: Entra ID custom security attributes, or an AD attribute.",
)
@entra_options
@ca_bundle_option
@ad_options(attribute_default=None)
@match_by_option
@click.option(
    "--enrolled-users",
    type=click.Choice(["desktop", "skip"]),
    default="desktop",
    show_default=True,
    help="For users Defguard counts as enrolled: a start_desktop token (ignores a custom "
    "expiry), or skip.",
)
@click.option(
    "--include-disabled-directory-users",
    is_flag=True,
    help="Also issue tokens for members whose Entra or AD account is disabled (skipped otherwise).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=32,
    show_default=True,
    help="Tokens issued in parallel.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report file (.json or .csv), kept current while the run goes; must not exist yet.",
)
@click.option(
    "--overwrite-report",
    is_flag=True,
    help="Replace the --report file if it exists.",
)
@click.option(
    "--include-tokens-in-report",
    is_flag=True,
    help="Put the tokens in the report (file mode 0600).",
)
@click.option(
    "--resume",
    "resume_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A previous JSON report of the same Defguard URL and group: skip the members it shows "
    "provisioned (also those it carried forward from earlier runs).",
)
@click.option(
    "--enrollment-url",
    help="The enrollment URL Defguard hands out: its length is checked before any token is "
    "issued, and the run stops if the first token's URL differs.",
)
def generate_tokens_command(
    *,
    url: str,
    group_name: str,
    api_token_file: Path | None,
    api_token: str | None,
    attribute_set_name: str,
    expiration: str | None,
    directory: str,
    entra: EntraOptions,
    ca_bundle: str | None,
    ad: AdOptions,
    match_by: str,
    enrolled_users: str,
    include_disabled_directory_users: bool,
    dry_run: bool,
    yes: bool,
    concurrency: int,
    report_path: Path | None,
    overwrite_report: bool,
    include_tokens_in_report: bool,
    resume_path: Path | None,
    enrollment_url: str | None,
) -> None:
    """Issue Defguard enrollment tokens for every member of a group and store each token and the
    enrollment URL on the user's Entra object (custom security attributes) or, with
    --directory ad, as JSON in an Active Directory attribute.

    Exit status: 0 all members provisioned or deliberately skipped, 1 some failed, 2 usage,
    preflight or sign-in error (nothing changed).
    """
    entra_settings = None
    ad_settings = None
    if directory == "ad":
        ad_settings = ad.settings(match_by, ca_bundle)
    else:
        entra_settings = entra.settings(ca_bundle)
        entra_settings.check()
    token = read_secret(
        what="Defguard API token",
        env_var=environment.DEFGUARD_API_TOKEN,
        file=api_token_file,
        file_option="--api-token-file",
        command_line=api_token,
        command_line_option="--api-token",
        prompt=terminal_prompt(),
        warn=warn,
    )
    record = api.generate_tokens(
        url=url,
        group_name=group_name,
        api_token=token,
        directory="ad" if directory == "ad" else "entra",
        entra=entra_settings,
        attribute_set_name=attribute_set_name,
        ad=ad_settings,
        enrollment_token_expiration_time=expiration,
        enrolled_users=EnrolledPolicy(enrolled_users),
        include_disabled_directory_users=include_disabled_directory_users,
        dry_run=dry_run,
        concurrency=concurrency,
        report=report_path,
        overwrite_report=overwrite_report,
        include_tokens_in_report=include_tokens_in_report,
        resume=resume_path,
        enrollment_url=enrollment_url,
        ca_bundle=ca_bundle,
        notify=echo_err,
        progress=Progress(),
        confirm=None if yes else _confirm,
    )
    if record.dry_run:
        show_members(record.members)
    else:
        show_summary(record.members)
        if record.report_path is not None:
            echo_err(f"report: {record.report_path}")
    sys.exit(record.exit_status)
