"""``dgprov sync``: the scheduled reconcile (same options as ``generate-tokens``, plus when to
renew and where to keep state)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import api
from .options import AdminJobOptions, admin_job_options
from .render import Progress, echo_err, show_run, show_sync_summary


def _confirm(changes: dict[str, int], directory_name: str) -> bool:
    """Asked on a terminal only; schedulers have none (or pass --yes)."""
    if not sys.stdin.isatty():
        return True
    listed = ", ".join(f"{name} {count}" for name, count in changes.items())
    return click.confirm(f"Change stored tokens in {directory_name} ({listed})?", err=True)


@click.command("sync")
@admin_job_options
@click.option(
    "--renew-before",
    default="2h",
    show_default=True,
    metavar="DURATION",
    help="Renew a stored token that expires within this time (shorter than the lifetime).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Local file (0600) recording each stored token's hash and expiry; needed when the "
    "Entra attribute set has no EnrollmentTokenExpiresAt attribute.",
)
def sync_command(*, job: AdminJobOptions, renew_before: str, state_path: Path | None) -> None:
    """Reconcile a Defguard group with the directory, for a schedule: issue a token for members
    without one, keep valid tokens, renew those that expire within --renew-before, and clear
    stored tokens once used, of members who left the group or are disabled. One run per host.

    Exit status: 0 nothing failed, 1 some members failed, 2 usage, preflight or sign-in error,
    or another sync running on this host (nothing changed).
    """
    record = api.sync(
        **job.arguments(),
        renew_before=renew_before,
        state=state_path,
        notify=echo_err,
        progress=Progress(),
        confirm=None if job.yes else _confirm,
    )
    show_run(record.members, record.dry_run, record.report_path, show_sync_summary)
    sys.exit(record.exit_status)
