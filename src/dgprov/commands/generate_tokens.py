"""``dgprov generate-tokens``: issue enrollment tokens for a Defguard group and store them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api
from .options import AdminJobOptions, admin_job_options
from .render import (
    Progress,
    ask_at_terminal,
    echo_err,
    show_run,
    show_summary,
)


def _confirm(pending: int, directory_name: str, replacing: int) -> bool:
    """Asked on a terminal only; installers and schedulers pass --yes or have no terminal."""
    return ask_at_terminal(
        f"Issue {api.counted(pending, 'enrollment token')} and store "
        f"{'it' if pending == 1 else 'them'} in {directory_name}? "
        f"{api.replacing_phrase(replacing).capitalize()}."
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
def generate_tokens_command(*, job: AdminJobOptions, resume_path: Path | None) -> None:
    """Issue Defguard enrollment tokens for every member of a group and store each token and the
    enrollment URL on the user's Entra object (custom security attributes) or, with
    --directory ad, as JSON in an Active Directory attribute.

    Exit status: 0 all members provisioned or deliberately skipped, 1 some failed, 2 usage,
    preflight or sign-in error, or another generate-tokens or sync running on this host
    (nothing changed; both take the lock in DGPROV_LOCK_FILE, by default one per account).
    """
    record = api.generate_tokens(
        **job.arguments(),
        resume=resume_path,
        notify=echo_err,
        progress=Progress(),
        confirm_replacing=None if job.yes or not sys.stdin.isatty() else _confirm,
    )
    show_run(
        record.members, record.dry_run, record.report_path, show_summary, record.known_failures
    )
    sys.exit(record.exit_status)
