"""The run report: one row per member, as JSON or CSV, and reading it back for ``--resume``.

The column names are a contract with administrators' scripts. Tokens appear only with
``--include-tokens-in-report``; every report file is created readable by its owner only, since
it lists e-mail addresses even without tokens.

The report is the only record of which member got which token, so it must survive whatever
ends a run: its destination is proved writable before anything changes, an existing file is
replaced only when asked, and while the run goes the file is kept current (``LiveReport``).
A resumed run's report keeps the members earlier runs provisioned, so a chain of resumed runs
never issues anyone a second token.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DgprovError, ReportNotWritten, UsageError
from .plan import ALREADY_PROVISIONED, Outcome, PlannedMember, summary
from .private_files import write_private_file
from .reconcile import summary as sync_summary

COLUMNS = ["username", "email", "directory_id", "upn", "action", "outcome", "reason", "expires_at"]
SYNC_COLUMNS = [*COLUMNS[:5], "decision", *COLUMNS[5:]]  # sync's rows add its decision
TOKEN_COLUMN = "enrollment_token"
NOT_SETTLED = (
    "in progress: the run had not settled this member when the report was written (a token may "
    "have been issued); --resume treats the member as not provisioned"
)
PLANNED = "planned"
"""The outcome of a member a dry run's report shows still to do (``--dry-run --report``)."""
EXPIRY = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
"""An ``expires_at`` as dgprov writes it; anything else read back from a report is dropped."""
CHECKPOINT_SECONDS = 1.0
CHECKPOINT_SHARE = 20  # wait this many times as long as the last write took, at least
OVERWRITE_OPTION = "--overwrite-report"
_RUN_LABELS = {
    "defguard_url": "Defguard URL",
    "group": "group",
    "directory": "directory",
    "attribute_set": "attribute set",
    "ad_attribute": "AD attribute",
}


@dataclass(frozen=True)
class ReportFile:
    path: Path
    option: str = "--report"

    def __post_init__(self) -> None:
        if self.path.suffix.lower() not in (".json", ".csv"):
            raise UsageError(f"{self.option} {self.path}: the file name must end in .json or .csv")

    @property
    def kind(self) -> str:
        return self.path.suffix.lower()[1:]


def member_row(
    member: PlannedMember, token: str | None, unsettled: str | None = None, *, planned: bool = False
) -> dict[str, Any]:
    """The report row of ``member``; a member not yet settled counts as failed, and with
    ``unsettled`` its reason says so instead of what the plan meant to do. In a dry run's
    report (``planned``) such a member is ``planned``, with the plan's reason."""
    outcome = member.outcome.value if member.outcome else PLANNED if planned else "failed"
    row: dict[str, Any] = {
        "username": member.username,
        "email": member.email,
        "directory_id": member.directory_user.id if member.directory_user else None,
        "upn": member.directory_user.upn if member.directory_user else None,
        "action": member.action.value,
        "outcome": outcome,
        "reason": (
            unsettled if member.outcome is None and unsettled and not planned else member.reason
        ),
        "expires_at": member.expires_at,
    }
    if member.decision is not None:
        row["decision"] = member.decision.value
    if token is not None:
        row[TOKEN_COLUMN] = token
    return row


def write_report(
    report: ReportFile,
    members: Sequence[PlannedMember],
    tokens: dict[str, str] | None,
    run: dict[str, Any],
) -> None:
    """Write the report atomically (0600), row by row; ``tokens`` only when the user asked.

    Members not settled are written as failed, "in progress" (see ``NOT_SETTLED``), and counted
    so in the summary: the file never claims more than the run knows. A dry run's report
    (``run["dry_run"]``) shows them ``planned`` instead. A ``sync`` run's report
    (``run["command"]``) adds the ``decision`` column and counts decisions and outcomes.
    """
    is_sync = run.get("command") == "sync"
    planned = bool(run.get("dry_run"))

    def rows() -> Iterator[dict[str, Any]]:
        for member in members:
            yield member_row(
                member,
                tokens.get(member.username, "") if tokens is not None else None,
                NOT_SETTLED,
                planned=planned,
            )

    def chunks() -> Iterator[str]:
        if report.kind == "json":
            head = {"summary": report_summary(members, is_sync, planned), "run": run}
            yield json.dumps(head, indent=2, ensure_ascii=False)[:-2] + ',\n  "members": ['
            for index, row in enumerate(rows()):
                yield ("," if index else "") + "\n    " + json.dumps(row, ensure_ascii=False)
            yield "\n  ]\n}\n"
            return
        buffer = io.StringIO()
        columns = (SYNC_COLUMNS if is_sync else COLUMNS) + (
            [TOKEN_COLUMN] if tokens is not None else []
        )
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows():
            writer.writerow(row)
            if buffer.tell() > 1 << 16:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    write_private_file(report.path, chunks())


def report_summary(
    members: Sequence[PlannedMember], is_sync: bool, planned: bool = False
) -> dict[str, Any]:
    """The JSON report's ``summary``: members per outcome (sync: per decision and outcome),
    those not settled yet counted as failed, or in a dry run as ``planned``."""
    counts: dict[str, Any] = sync_summary(members) if is_sync else summary(members)
    outcomes = counts["outcome"] if is_sync else counts
    pending = sum(1 for member in members if member.pending)
    if is_sync:  # sync's summary counts members not settled as failed itself
        outcomes[Outcome.FAILED.value] -= pending
    if planned:
        outcomes[PLANNED] = pending
    else:
        outcomes[Outcome.FAILED.value] += pending
    return counts


def _not_a_report(report: ReportFile) -> UsageError:
    return UsageError(
        f"{report.option} {report.path}: not a dgprov report (expected a JSON object with "
        "'members' or a CSV with the report columns)"
    )


def _read_text(report: ReportFile) -> str:
    try:
        return report.path.read_text("utf-8")
    except OSError as exc:
        raise UsageError(
            f"{report.option} {report.path}: cannot read it ({exc.strerror})"
        ) from None


def report_rows(report: ReportFile) -> tuple[dict[str, Any] | None, list[Any]]:
    """The ``run`` section (None in a CSV, which has none) and the member rows of a report;
    a ``UsageError`` naming the option for a file that is not one."""
    text = _read_text(report)
    run: Any = None
    try:
        if report.kind == "json":
            document = json.loads(text)
            run, rows = document.get("run"), document["members"]
        else:
            reader = csv.DictReader(io.StringIO(text))
            if not set(COLUMNS) <= set(reader.fieldnames or ()):
                raise ValueError("not the report's columns")
            rows = list(reader)
    except (ValueError, KeyError, TypeError, AttributeError, csv.Error):
        raise _not_a_report(report) from None
    if not isinstance(rows, list) or not (run is None or isinstance(run, dict)):
        raise _not_a_report(report)
    return run, rows


def provisioned_in(report: ReportFile) -> dict[str, str]:
    """Usernames a previous report shows provisioned, with a note naming the run that did it."""
    return _provisioned(report, report_rows(report)[1])


def _provisioned(
    report: ReportFile, rows: Iterable[Any], expiries: dict[str, str] | None = None
) -> dict[str, str]:
    """Members provisioned by the run of ``report``, or carried forward by it from an earlier
    run (then with that run's note, so the note always names the run that issued the token);
    ``expiries`` receives each one's ``expires_at``, where the row holds a well-formed one."""
    note = f"by the run in {report.path.name}"
    prefix = f"{ALREADY_PROVISIONED} ("
    found: dict[str, str] = {}
    for row in _provisioned_rows(rows, prefix):
        username, reason = row["username"], row.get("reason")
        if row.get("outcome") == Outcome.PROVISIONED.value:
            found[username] = note
        else:
            assert isinstance(reason, str)
            found[username] = reason[len(prefix) : -1]
        expiry = row.get("expires_at")
        if expiries is not None and isinstance(expiry, str) and EXPIRY.fullmatch(expiry):
            expiries[username] = expiry
    return found


def _provisioned_rows(rows: Iterable[Any], prefix: str) -> Iterator[dict[str, Any]]:
    """The rows of members provisioned, by the report's run or an earlier one."""
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("username"), str):
            continue
        reason = row.get("reason")
        if row.get("outcome") == Outcome.PROVISIONED.value or (
            row.get("outcome") == Outcome.SKIPPED.value
            and isinstance(reason, str)
            and reason.startswith(prefix)
            and reason.endswith(")")
        ):
            yield row


def resume_from(
    report: ReportFile, this_run: Mapping[str, str], expiries: dict[str, str] | None = None
) -> dict[str, str]:
    """``provisioned_in`` for ``--resume``: only the JSON report of a run like this one.

    ``this_run`` holds what the report's ``run`` section must repeat (the Defguard URL, the
    group, the directory and where in it tokens are stored): members provisioned for another
    group, or stored somewhere this run does not write, are not provisioned for this one.
    ``expiries`` receives the ``expires_at`` of the members returned, so the resumed run's
    report keeps them.
    """
    if report.kind != "json":
        raise UsageError(
            f"{report.option} {report.path}: resume from the JSON report of the earlier run; a "
            "CSV report does not record which Defguard URL and group it was made for (write "
            "reports as .json to resume from them)"
        )
    try:
        document = json.loads(_read_text(report))
        run, rows = document["run"], document["members"]
    except (ValueError, KeyError, TypeError):
        raise _not_a_report(report) from None
    if not isinstance(run, dict) or not isinstance(rows, list):
        raise _not_a_report(report)
    differences = []
    for key, ours in this_run.items():
        theirs = run.get(key)
        if theirs is None and key not in ("defguard_url", "group"):
            continue  # the directory differs, and says so
        if key == "defguard_url" and isinstance(theirs, str):
            theirs, ours = theirs.rstrip("/"), ours.rstrip("/")
        if theirs != ours:
            label = _RUN_LABELS.get(key, key)
            differences.append(f"its {label} is {theirs!r}, this run's is {ours!r}")
    if differences:
        raise UsageError(
            f"{report.option} {report.path} is the report of another run ({'; '.join(differences)}"
            "): resume only from a report of the same Defguard URL, group and directory"
        )
    return _provisioned(report, rows, expiries)


def check_destination(report: ReportFile, *, overwrite: bool) -> None:
    """Prove, before anything changes anywhere, that the report can be written there.

    A run whose report cannot be written has issued tokens nobody has a record of, so the
    place is tried now: a directory, a link, an existing report (unless ``overwrite``) or a
    parent that is a file or that this process may not create files in is refused.
    """
    path, option = report.path, report.option
    if path.is_dir():
        raise UsageError(
            f"{option} {path} is a directory; name a file in it, e.g. "
            f"{path / ('dgprov-report.' + report.kind)}"
        )
    if path.is_symlink():
        raise UsageError(
            f"{option} {path} is a symbolic link, and dgprov does not write reports through "
            "links; name the file itself"
        )
    if path.exists() and not overwrite:
        raise UsageError(
            f"{option} {path} already exists; name a new file, or pass {OVERWRITE_OPTION} to "
            "replace it"
        )
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent  # the directories missing are created for the report
    if not ancestor.is_dir():
        raise UsageError(
            f"{option} {path}: {ancestor} is a file, not a directory; name a file in a directory"
        )
    try:
        descriptor, probe = tempfile.mkstemp(dir=ancestor, prefix=f".{path.name}.")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(
            f"{option} {path}: cannot create files in {ancestor} ({exc.strerror}); name a file "
            "in a directory you can write to"
        ) from None


class LiveReport:
    """The report file, kept current while the run goes, so that no way a run ends loses it.

    ``start`` writes it before the first token, every member still to do "in progress"; as
    members settle it is rewritten (each version complete, replaced atomically) at most every
    ``CHECKPOINT_SECONDS``, and never for more than a twentieth of the time, so 100,000 rows
    cost little; ``finish`` writes the final version. A run killed outright leaves the last
    version, whose unsettled members ``--resume`` treats as not provisioned. If a version
    cannot be written, ``on_failure`` hears why (the caller stops issuing tokens).
    """

    def __init__(
        self,
        report: ReportFile,
        members: Sequence[PlannedMember],
        tokens: dict[str, str] | None,
        run: dict[str, Any],
        on_failure: Callable[[str], None],
    ) -> None:
        self.report = report
        self.members = members
        self.tokens = tokens
        self.run = run
        self.on_failure = on_failure
        self.failure: str | None = None
        self.written_at: str | None = None  # of the newest complete version on disk
        self._dirty = False
        self._closed = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_at = 0.0

    async def start(self) -> None:
        """The first version, before any token: failing here changes nothing anywhere."""
        try:
            await self._write(final=False)
        except (OSError, DgprovError) as exc:
            raise UsageError(
                f"{self.report.option} {self.report.path}: cannot write the report "
                f"({_why(exc)}); nothing was changed"
            ) from None

    def changed(self) -> None:
        """Members settled: a new version is due (written by a task, never blocking the run)."""
        if self._closed or self.failure is not None:
            return
        self._dirty = True
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._checkpoints())

    async def finish(self) -> None:
        """The final version, after any version still being written."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        try:
            await self._write(final=True)
        except (OSError, DgprovError) as exc:
            kept = (
                f"the version written at {self.written_at} is on disk; members settled since "
                "show as in progress"
                if self.written_at
                else "no version of it is on disk"
            )
            counts = ", ".join(
                f"{count} {name.replace('_', ' ')}" for name, count in summary(self.members).items()
            )
            raise ReportNotWritten(
                f"{self.report.option} {self.report.path}: the final report could not be "
                f"written ({_why(exc)}); {kept}. This run: {counts}"
            ) from None

    async def _checkpoints(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._dirty and not self._closed:
                delay = self._next_at - loop.time()
                if delay > 0:
                    # Rate-limited; woken early only to stop, when finish() takes over.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    if self._closed:
                        return
                self._dirty = False
                try:
                    await self._write(final=False)
                except (OSError, DgprovError) as exc:
                    self.failure = _why(exc)
                    self.on_failure(
                        f"{self.report.option} {self.report.path}: cannot update the report "
                        f"({self.failure}); stopping the run"
                    )
                    return
        finally:
            self._task = None

    async def _write(self, *, final: bool) -> None:
        # A copy taken on the event loop, so the file is one consistent moment of the run.
        members = [
            PlannedMember(
                m.username,
                m.email,
                m.action,
                m.directory_user,
                m.outcome,
                m.reason,
                m.expires_at,
                m.decision,
            )
            for m in self.members
        ]
        run = dict(self.run) if final else {**self.run, "in_progress": True}
        tokens = dict(self.tokens) if self.tokens is not None else None
        began = time.monotonic()
        await asyncio.to_thread(write_report, self.report, members, tokens, run)
        took = time.monotonic() - began
        self.written_at = time.strftime("%H:%M:%S")
        self._next_at = asyncio.get_running_loop().time() + max(
            CHECKPOINT_SECONDS, CHECKPOINT_SHARE * took
        )


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)
