"""``dgprov generate-tokens``: issue enrollment tokens for a Defguard group and store them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api
from ..plan import EnrolledPolicy
from .options import AdOptions, EntraOptions, admin_job_options, admin_job_settings
from .render import Progress, echo_err, show_members, show_summary


def _confirm(pending: int, directory_name: str, replacing: int) -> bool:
    """Asked on a terminal only; installers and schedulers pass --yes or have no terminal."""
    return click.confirm(
        f"Issue {pending} enrollment tokens and store them in {directory_name}? {replacing} "
        "members hold an unused token that this run will replace.",
        err=True,
    )


@click.command("generate-tokens")
@admin_job_options
@click.option(
    "--resume",
    "resume_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A previous JSON report of the same Defguard URL and group: skip the members it shows "
    "provisioned (also those it carried forward from earlier runs).",
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
    job = admin_job_settings(
        directory=directory,
        entra=entra,
        ad=ad,
        match_by=match_by,
        ca_bundle=ca_bundle,
        api_token_file=api_token_file,
        api_token=api_token,
    )
    record = api.generate_tokens(
        url=url,
        group_name=group_name,
        api_token=job.api_token,
        directory=job.directory,
        entra=job.entra,
        attribute_set_name=attribute_set_name,
        ad=job.ad,
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
        confirm_replacing=None if yes or not sys.stdin.isatty() else _confirm,
    )
    if record.dry_run:
        show_members(record.members)
    else:
        show_summary(record.members)
        if record.report_path is not None:
            echo_err(f"report: {record.report_path}")
    sys.exit(record.exit_status)
