"""How the commands show results to a person: tables, summaries and a progress bar.

Only the commands use this; the library returns the same facts as data (``api.RunRecord``).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from ..enrollment import Enrolled
from ..errors import Cancelled
from ..known_failures import KnownFailures
from ..plan import Outcome, PlannedMember, not_processed, summary
from ..reconcile import summary as sync_summary

FAILURES_SHOWN = 20
SKIPPED_NAMES_SHOWN = 3


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
    end_bar_line()
    click.echo(f"{what:<13} members")
    for name, count in counts.items():
        click.echo(f"{name.replace('_', ' '):<13} {count:>7}")


def _failures(members: list[PlannedMember]) -> None:
    """The first failures one by one (those the run never reached are counted instead, see
    ``not_processed_line``), then the skipped members by reason."""
    failed = [m for m in members if m.outcome is Outcome.FAILED and not not_processed(m)]
    for member in failed[:FAILURES_SHOWN]:
        click.echo(f"failed: {member.username or '-'}: {member.reason}", err=True)
    if len(failed) > FAILURES_SHOWN:
        click.echo(f"… and {len(failed) - FAILURES_SHOWN} more failures, see the report", err=True)
    for line in skipped_by_reason(members):
        click.echo(line, err=True)


def skipped_by_reason(members: list[PlannedMember]) -> list[str]:
    """One line per reason for skipping, most members first: the count and the first names,
    so a thousand disabled accounts are one line, and an unexpected reason stands out."""
    by_reason: dict[str, list[str]] = {}
    for member in members:
        if member.outcome is Outcome.SKIPPED:
            by_reason.setdefault(member.reason or "no reason given", []).append(
                member.username or "-"
            )
    lines = []
    for reason, names in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        shown = ", ".join(names[:SKIPPED_NAMES_SHOWN])
        more = (
            f" and {len(names) - SKIPPED_NAMES_SHOWN} more"
            if len(names) > SKIPPED_NAMES_SHOWN
            else ""
        )
        lines.append(f"skipped {len(names)}: {reason} ({shown}{more})")
    return lines


def show_run(
    members: list[PlannedMember],
    dry_run: bool,
    report_path: Path | None,
    show: Callable[[list[PlannedMember]], None],
    known: KnownFailures | None = None,
) -> None:
    """An admin job's end: the plan of a dry run (and why it fails members), else ``show``'s
    counts and which failures are new; where the report is; last, how many members the run
    never reached, and what next."""
    end_bar_line()
    if dry_run:
        show_members(members)
        _failures(members)
    else:
        show(members)
        if known is not None and (line := known.line(members)) is not None:
            echo_err(line)
    if report_path is not None:
        echo_err(f"report: {report_path}{' (the plan)' if dry_run else ''}")
    if not dry_run and (line := not_processed_line(members, report_path, show)) is not None:
        echo_err(line)


def not_processed_line(
    members: list[PlannedMember],
    report_path: Path | None,
    show: Callable[[list[PlannedMember]], None],
) -> str | None:
    """``N not processed: …`` with how to go on, when the run stopped before some members."""
    count = sum(1 for member in members if not_processed(member))
    if not count:
        return None
    if show is show_sync_summary:  # sync decides again from what the directory holds
        return f"{count} not processed: run dgprov sync again; it goes on from what is stored"
    if report_path is not None and report_path.suffix.lower() == ".json":
        return f"{count} not processed: run again with --resume {report_path}"
    return (
        f"{count} not processed: run again with --resume FILE, which takes a JSON report "
        "(--report FILE.json); without one, a new run issues every member a token again"
    )


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
    """Members settled so far: a bar redrawn in place on a terminal; without one (cron,
    journald, Task Scheduler) a line at every tenth of the run or every 30 s, whichever comes
    first, so a log shows that a long run moves without filling up with a line per member."""

    LINE_EVERY_SECONDS = 30.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.on_terminal = sys.stderr.isatty()
        self.clock = clock
        self._last_line = clock()
        self._last_tenth = 0

    def __call__(self, done: int, total: int) -> None:
        if total == 0:
            return
        if self.on_terminal:
            filled = int(30 * done / total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
            _Bar.open = done != total
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
            return
        tenth = 10 * done // total
        now = self.clock()
        if tenth > self._last_tenth or now - self._last_line >= self.LINE_EVERY_SECONDS:
            self._last_tenth, self._last_line = tenth, now
            click.echo(
                f"progress: {done}/{total} members settled ({100 * done // total} %)", err=True
            )


class _Bar:
    """Whether a progress bar's line is open on the terminal: drawn, and not ended because the
    run stopped short of its total (Ctrl-C); what is printed next starts a line of its own."""

    open = False


def end_bar_line() -> None:
    """End the progress bar's line where the run stopped, if one is open."""
    if _Bar.open:
        _Bar.open = False
        sys.stderr.write("\n")
        sys.stderr.flush()


def echo_err(message: str) -> None:
    if message.startswith("\n"):
        _Bar.open = False  # the message ends the bar's line itself
    end_bar_line()
    click.echo(message, err=True)


def ask_at_terminal(question: str) -> bool:
    """``[y/N]`` on the terminal, where Ctrl-C ends the run at once.

    The question is asked from inside the run's event loop, whose SIGINT handler only schedules
    a cancellation, so with click's prompt the first Ctrl-C waited for Enter and a second one
    printed a bare "Aborted!". Here Ctrl-C raises instead, and ``Cancelled`` (exit 1) unwinds
    the run like a "no", releasing the lock, before anything was changed."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        click.echo(f"{question} [y/N]: ", nl=False, err=True)
        return _answer_line().strip().lower() in ("y", "yes")
    except (KeyboardInterrupt, EOFError):
        click.echo("", err=True)  # the error line starts on a line of its own, after "^C"
        raise Cancelled("cancelled at the confirmation; nothing was changed") from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _answer_line() -> str:
    """One line from the terminal. On POSIX the kernel may hand Ctrl-C's SIGINT to any thread
    (the sign-in's worker threads too); a read blocked in the main thread would then never see
    it, so the wait is in short slices, after each of which Python runs the handler."""
    if sys.platform == "win32":  # Windows delivers Ctrl-C to the console reader itself
        return input()
    import select

    while not select.select([sys.stdin], [], [], 0.2)[0]:
        pass
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line
