"""New failures apart from those the last run's report already showed.

A scheduled ``sync`` exits 1 on every run while one member stays failed (an ambiguous address
nobody has fixed yet), so its unit or task is always "failed" and a new failure looks like the
old ones. The report of the previous run tells them apart: by default the ``--report`` file that
``--overwrite-report`` is about to replace (what a schedule passes anyway), or the file named by
``--previous-report``. It is read before anything changes, and a member is a known failure when
that report shows it failed too, whatever the reason. Members a run never reached ("in
progress", "not processed") are no failures of theirs, in either run: they are counted apart.
The exit status stays what it was, 1 while anything failed; the summary line and the report's
``run`` say how many failures are new.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .plan import NOT_PROCESSED, Outcome, PlannedMember, not_processed
from .report import ReportFile, report_rows

PREVIOUS_OPTION = "--previous-report"
NOT_A_FAILURE = ("in progress", NOT_PROCESSED)  # never reached: nothing was tried for them
NAMES_SHOWN = 3


def _key(username: Any, directory_id: Any) -> str | None:
    """A member by username; an object no member maps to (sync's row without one) by id."""
    if isinstance(username, str) and username:
        return username
    if isinstance(directory_id, str) and directory_id:
        return f"object {directory_id.lower()}"
    return None


def member_key(member: PlannedMember) -> str | None:
    return _key(member.username, member.directory_user.id if member.directory_user else None)


@dataclass(frozen=True)
class KnownFailures:
    """The failures of the previous run's report at ``source``."""

    source: Path
    keys: frozenset[str]

    def split(self, members: Iterable[PlannedMember]) -> tuple[list[str], list[str]]:
        """This run's failures as (new, known), by username (or object)."""
        new: list[str] = []
        known: list[str] = []
        for member in members:
            if member.outcome not in (None, Outcome.FAILED) or not_processed(member):
                continue
            key = member_key(member)
            if key is not None:
                (known if key in self.keys else new).append(key)
        return new, known

    def run_section(self, members: Iterable[PlannedMember]) -> dict[str, Any]:
        """What the report's ``run`` records: the report compared with, and the counts."""
        new, known = self.split(members)
        return {
            "previous_report": str(self.source),
            "new_failures": len(new),
            "known_failures": len(known),
        }

    def line(self, members: Iterable[PlannedMember]) -> str | None:
        """``failed 3: 1 new (jdoe), 2 known from the previous report …``; None when nothing
        failed in either run."""
        new, known = self.split(members)
        if not new and not known and not self.keys:
            return None
        fixed = len(self.keys - set(known))
        since = f"; {fixed} failed there and not now" if fixed else ""
        names = ", ".join(new[:NAMES_SHOWN]) + (" …" if len(new) > NAMES_SHOWN else "")
        shown = f" ({names})" if new else ""
        return (
            f"failed {len(new) + len(known)}: {len(new)} new{shown}, {len(known)} known from "
            f"the previous report {self.source}{since}"
        )


def _same_run(run: Mapping[str, Any] | None, this_run: Mapping[str, str]) -> str | None:
    """How the report's run differs from this one (Defguard URL, group), if it does."""
    if run is None:
        return None  # a CSV report does not say; its rows are compared as they are
    for key, ours in this_run.items():
        theirs = run.get(key)
        if isinstance(theirs, str) and key == "defguard_url":
            theirs, ours = theirs.rstrip("/"), ours.rstrip("/")
        if theirs != ours:
            return f"its {key} is {theirs!r}, this run's is {ours!r}"
    return None


def read_known(
    previous: Path | None,
    report: Path | None,
    overwrite: bool,
    this_run: Mapping[str, str],
    notify: Callable[[str], None],
) -> KnownFailures | None:
    """The previous report's failures, if there is a previous report.

    ``--previous-report`` must be a report of this Defguard URL and group (else exit 2); the
    ``--report`` file an ``--overwrite-report`` run replaces is used when it is one, and
    otherwise passed over with a line to ``notify``, so a schedule never stops for it."""
    if previous is not None:
        run, rows = report_rows(ReportFile(previous, PREVIOUS_OPTION))
        if (differs := _same_run(run, this_run)) is not None:
            raise UsageError(
                f"{PREVIOUS_OPTION} {previous} is the report of another run ({differs}): "
                "name a report of the same Defguard URL and group"
            )
        return KnownFailures(previous, _failed_keys(rows))
    if report is None or not overwrite or not report.is_file() or report.is_symlink():
        return None
    try:
        run, rows = report_rows(ReportFile(report))
    except UsageError as exc:
        notify(f"failures are not compared with the last run: {exc}")
        return None
    if (differs := _same_run(run, this_run)) is not None:
        notify(f"failures are not compared with --report {report}: {differs}")
        return None
    return KnownFailures(report, _failed_keys(rows))


def _failed_keys(rows: Iterable[Any]) -> frozenset[str]:
    keys: set[str] = set()
    for row in rows:
        if not isinstance(row, dict) or row.get("outcome") != Outcome.FAILED.value:
            continue
        reason = row.get("reason")
        if isinstance(reason, str) and reason.startswith(NOT_A_FAILURE):
            continue
        if (key := _key(row.get("username"), row.get("directory_id"))) is not None:
            keys.add(key)
    return frozenset(keys)
