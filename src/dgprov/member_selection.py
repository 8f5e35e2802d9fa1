"""Which members of the group a run acts on: ``--member`` and ``--exclude-member``.

An administrator re-issues one member's expired token, or leaves a member whose directory
object is still being fixed out of a scheduled run, without touching anybody else. The run
still reads and plans the whole group, as any run does: the checks that protect one member's
object from another member's token (two members mapping to one object, an object that only
looks like another's address) and sync's view of which values belong to nobody any more
need every member. Only then is the plan narrowed (``apply``): the other members get no
decision, no token, no write and no report row, and an excluded member is reported as
skipped, untouched.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .plan import Action, Decision, Outcome, PlannedMember

MEMBER_OPTION = "--member"
EXCLUDE_OPTION = "--exclude-member"
EXCLUDE_FILE_OPTION = "--exclude-members-file"
MAX_FILE_BYTES = 16 << 20  # 100,000 usernames of 64 characters, with comments, fit
MAX_USERNAME = 256
NAMES_SHOWN = 3


def _shown(name: str) -> str:
    """A name as a message shows it: a long one cut, so the line stays short."""
    return name if len(name) <= 64 else name[:63] + "…"


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(_shown(name) for name in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _problem_in(name: str) -> str | None:
    """Why ``name`` cannot be a username at all (before the group is even read)."""
    if not name:
        return "an empty username"
    if len(name) > MAX_USERNAME:
        return f"a username of {len(name)} characters"
    if any(not character.isprintable() or character.isspace() for character in name):
        return "a username with spaces or control characters"
    return None


def read_exclusions(path: Path) -> list[str]:
    """The usernames of ``--exclude-members-file``: one a line, ``#`` starts a comment (a
    whole line, or after the name), blank lines are ignored, a UTF-8 BOM too (Notepad)."""
    where = f"{EXCLUDE_FILE_OPTION} {path}"
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{where}: larger than {MAX_FILE_BYTES >> 20} MiB; one username a line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not UTF-8 text; one username a line") from None
    names: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 1 and not words[1].startswith("#"):
            raise UsageError(f"{where}, line {number}: one username a line ('#' starts a comment)")
        if problem := _problem_in(words[0]):
            raise UsageError(f"{where}, line {number}: {problem}")
        names.append(words[0])
    return names


@dataclass(frozen=True)
class MemberSelection:
    """``only``: the members a run acts on (all when empty); ``excluded``: username -> the
    option that excluded it, as its report row says."""

    only: frozenset[str] = frozenset()
    excluded: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls,
        members: Iterable[str] = (),
        exclude_members: Iterable[str] = (),
        exclude_members_file: Path | None = None,
    ) -> MemberSelection:
        """The selection the options ask for, checked as far as it can be without the group."""
        only = list(dict.fromkeys(members))
        excluded = dict.fromkeys(exclude_members, EXCLUDE_OPTION)
        for name in [*only, *excluded]:
            if problem := _problem_in(name):
                option = MEMBER_OPTION if name in only else EXCLUDE_OPTION
                raise UsageError(f"{option} {_shown(name)!r}: {problem}")
        if exclude_members_file is not None:
            from_file = f"{EXCLUDE_FILE_OPTION} {exclude_members_file.name}"
            for name in read_exclusions(exclude_members_file):
                excluded.setdefault(name, from_file)
        both = [name for name in only if name in excluded]
        if both:
            raise UsageError(
                f"{MEMBER_OPTION} {_listed(both)}: also excluded ({excluded[both[0]]}); name "
                "each member in one of them"
            )
        return cls(frozenset(only), excluded)

    @property
    def everyone(self) -> bool:
        return not self.only and not self.excluded

    def check(self, group_members: Sequence[str], group_name: str) -> list[str]:
        """Refuse a ``--member`` who is not in the group (before anything changes: exit 2);
        the lines to show for excluded names that are not (ignored: a file kept for a
        schedule outlives some of its members)."""
        present = set(group_members)
        unknown = sorted(name for name in self.only if name not in present)
        if unknown:
            verb = "is not a member" if len(unknown) == 1 else "are not members"
            hint = _close_to(unknown[0], group_members)
            raise UsageError(
                f"{MEMBER_OPTION} {_listed(unknown)} {verb} of the Defguard group "
                f"{group_name!r} (usernames are case-sensitive{hint}); nothing was changed"
            )
        absent = sorted(name for name in self.excluded if name not in present)
        if not absent:
            return []
        return [
            f"excluded but not in the group {group_name!r}, so ignored: {_listed(absent)} "
            f"({self.excluded[absent[0]]})"
        ]

    def apply(self, planned: list[PlannedMember]) -> list[PlannedMember]:
        """The rows this run acts on and reports: with ``only``, those members alone (and no
        object no member maps to, which belongs to none of them); an excluded member stays,
        skipped, with nothing to do."""
        if self.everyone:
            return planned  # no copy: 100,000 members are the run's largest list
        kept = [m for m in planned if m.username in self.only] if self.only else planned
        for member in kept:
            why = self.excluded.get(member.username) if member.username else None
            if why is not None:
                member.action, member.expires_at = Action.NONE, None
                member.outcome = Outcome.SKIPPED
                member.reason = f"excluded ({why}): not touched by this run"
                member.decision = Decision.SKIP if member.decision is not None else None
        return kept

    def run_section(self) -> dict[str, list[str]]:
        """What the report's ``run`` says of the selection (nothing when it is everyone)."""
        section: dict[str, list[str]] = {}
        if self.only:
            section["only_members"] = sorted(self.only)
        if self.excluded:
            section["excluded_members"] = sorted(self.excluded)
        return section


def _close_to(name: str, group_members: Sequence[str]) -> str:
    """``; did you mean jdoe?`` for a name that differs in case or by a typo."""
    folded = {member.lower(): member for member in group_members}
    if (same := folded.get(name.lower())) is not None:
        return f"; did you mean {same}?"
    close = difflib.get_close_matches(name, list(group_members)[:100_000], n=1, cutoff=0.8)
    return f"; did you mean {close[0]}?" if close else ""
