"""The run report: one row per member, as JSON or CSV, and reading it back for ``--resume``.

The column names are a contract with administrators' scripts. Tokens appear only with
``--include-tokens-in-report``; every report file is created readable by its owner only, since
it lists e-mail addresses even without tokens.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .plan import Outcome, PlannedMember, summary
from .private_files import write_private_file

COLUMNS = ["username", "email", "directory_id", "upn", "action", "outcome", "reason", "expires_at"]
TOKEN_COLUMN = "enrollment_token"


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


def member_row(member: PlannedMember, token: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "username": member.username,
        "email": member.email,
        "directory_id": member.directory_user.id if member.directory_user else None,
        "upn": member.directory_user.upn if member.directory_user else None,
        "action": member.action.value,
        "outcome": (member.outcome or Outcome.FAILED).value,
        "reason": member.reason,
        "expires_at": member.expires_at,
    }
    if token is not None:
        row[TOKEN_COLUMN] = token
    return row


def write_report(
    report: ReportFile,
    members: Sequence[PlannedMember],
    tokens: dict[str, str] | None,
    run: dict[str, Any],
) -> None:
    """Write the report atomically (0600), row by row; ``tokens`` only when the user asked."""

    def rows() -> Iterator[dict[str, Any]]:
        for member in members:
            yield member_row(
                member, tokens.get(member.username, "") if tokens is not None else None
            )

    def chunks() -> Iterator[str]:
        if report.kind == "json":
            head = {"summary": summary(members), "run": run}
            yield json.dumps(head, indent=2, ensure_ascii=False)[:-2] + ',\n  "members": ['
            for index, row in enumerate(rows()):
                yield ("," if index else "") + "\n    " + json.dumps(row, ensure_ascii=False)
            yield "\n  ]\n}\n"
            return
        buffer = io.StringIO()
        columns = COLUMNS + ([TOKEN_COLUMN] if tokens is not None else [])
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


def provisioned_in(report: ReportFile) -> dict[str, str]:
    """Usernames a previous report shows provisioned, with a note naming that report."""
    try:
        text = report.path.read_text("utf-8")
    except OSError as exc:
        raise UsageError(
            f"{report.option} {report.path}: cannot read it ({exc.strerror})"
        ) from None
    try:
        if report.kind == "json":
            rows = json.loads(text)["members"]
        else:
            rows = list(csv.DictReader(io.StringIO(text)))
    except (ValueError, KeyError, TypeError, csv.Error):
        raise UsageError(
            f"{report.option} {report.path}: not a dgprov report (expected a JSON object with "
            "'members' or a CSV with the report columns)"
        ) from None
    note = f"by the run in {report.path.name}"
    return {
        str(row["username"]): note
        for row in rows
        if isinstance(row, dict) and row.get("outcome") == Outcome.PROVISIONED.value
    }
