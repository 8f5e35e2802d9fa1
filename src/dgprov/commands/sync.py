"""``dgprov sync``: the scheduled reconcile (same options as ``generate-tokens``, plus when to
renew and where to keep state)."""

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
    show_sync_summary,
)


def _confirm(changes: dict[str, int], directory_name: str) -> bool:
    """Asked on a terminal only; schedulers have none (or pass --yes)."""
    if not sys.stdin.isatty():
        return True
    listed = ", ".join(f"{name} {count}" for name, count in changes.items())
    return ask_at_terminal(f"Change stored tokens in {directory_name} ({listed})?")


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
    "--desktop-token-lifetime",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="Lifetime Defguard gives start_desktop tokens (its default enrollment token "
    "lifetime), when its settings do not say (1.6): such a token is renewed once expired.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Local file (0600) recording each stored token's hash and expiry; needed when the "
    "Entra attribute set has no EnrollmentTokenExpiresAt attribute.",
)
def sync_command(
    *,
    job: AdminJobOptions,
    renew_before: str,
    desktop_token_lifetime: str,
    state_path: Path | None,
) -> None:
    """Reconcile a Defguard group with the directory, for a schedule: issue a token for members
    without one, keep valid tokens, renew those that expire within --renew-before, and clear
    stored tokens once used, of members who left the group or are disabled. One run per host.

    Exit status: 0 nothing failed, 1 some members failed, 2 usage, preflight or sign-in error,
    or another sync or generate-tokens running on this host (nothing changed; both take the
    lock in DGPROV_LOCK_FILE, by default one per account).
    """
    record = api.sync(
        **job.arguments(),
        renew_before=renew_before,
        desktop_token_lifetime=desktop_token_lifetime,
        state=state_path,
        notify=echo_err,
        progress=Progress(),
        confirm=None if job.yes else _confirm,
    )
    show_run(
        record.members, record.dry_run, record.report_path, show_sync_summary, record.known_failures
    )
    sys.exit(record.exit_status)
