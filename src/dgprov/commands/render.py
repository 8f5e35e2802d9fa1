"""How the commands show results to a person: tables, summaries and a progress bar.

Only the commands use this; the library returns the same facts as data (``api.RunRecord``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from ..enrollment import Enrolled
from ..plan import Outcome, PlannedMember, summary
from ..reconcile import summary as sync_summary

FAILURES_SHOWN = 20


def show_members(members: list[PlannedMember]) -> None:
    """A table of members: the plan before a run, the outcomes after it (sync: the decision
    instead of the action; an object no member maps to shows ``-`` as its username)."""
    width = max([len(m.username) for m in members] + [8])
    column = "decision" if any(m.decision is not None for m in members) else "action"
    click.echo(f"{'username':<{width}}  {column:<16}  {'directory user':<32}  note")
    for m in members:
        upn = (m.directory_user.upn or m.directory_user.id) if m.directory_user else "-"
        note = (
            m.reason if m.outcome is None else ": ".join(filter(None, [m.outcome.value, m.reason]))
        )
        action = m.decision.value if m.decision is not None else m.action.value
        name = m.username or "-"
        click.echo(f"{name:<{width}}  {action:<16}  {upn:<32}  {note}".rstrip())


def show_summary(members: list[PlannedMember]) -> None:
    """Counts per outcome on stdout; the first failures with their reasons on stderr."""
    _counts("outcome", summary(members))
    _failures(members)


def show_sync_summary(members: list[PlannedMember]) -> None:
    """Counts per decision and per outcome on stdout; the first failures on stderr."""
    counts = sync_summary(members)
    _counts("decision", counts["decision"])
    _counts("outcome", counts["outcome"])
    _failures(members)


def _counts(what: str, counts: dict[str, int]) -> None:
    click.echo(f"{what:<12} members")
    for name, count in counts.items():
        click.echo(f"{name:<12} {count:>7}")


def _failures(members: list[PlannedMember]) -> None:
    failed = [m for m in members if m.outcome is Outcome.FAILED]
    for member in failed[:FAILURES_SHOWN]:
        click.echo(f"failed: {member.username or '-'}: {member.reason}", err=True)
    if len(failed) > FAILURES_SHOWN:
        click.echo(f"… and {len(failed) - FAILURES_SHOWN} more failures, see the report", err=True)


def show_run(
    members: list[PlannedMember],
    dry_run: bool,
    report_path: Path | None,
    show: Callable[[list[PlannedMember]], None],
) -> None:
    """An admin job's end: the plan of a dry run, else ``show``'s counts and where the report is."""
    if dry_run:
        show_members(members)
        return
    show(members)
    if report_path is not None:
        echo_err(f"report: {report_path}")


def show_enrolled(enrolled: Enrolled, headline: str, *, with_modes: bool = False) -> None:
    """A headline, then one line per written WireGuard configuration."""
    click.echo(headline)
    for config in enrolled.configs:
        mode = f" (mode {config.path.stat().st_mode & 0o777:o})" if with_modes else ""
        note = (
            f" (needs {config.mfa}: connect with the Defguard desktop client)" if config.mfa else ""
        )
        click.echo(f"  {config.location}: {config.path}{mode}{note}")


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        filled = int(30 * done / total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def echo_err(message: str) -> None:
    click.echo(message, err=True)
