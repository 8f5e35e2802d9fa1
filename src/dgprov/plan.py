"""Which member gets which action, and why: the pure decision logic of ``generate-tokens``.

Nothing here does I/O. The inputs are what the remote systems said (Defguard's members and user
records, the directory's matches); the output is one ``PlannedMember`` per member with an action
and, for members that will not be touched, the final outcome and its reason. Keeping this apart
is what lets every rule be tested without a network, and ``--dry-run`` print exactly what a real
run would do.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .defguard import DefguardUser
from .directory import DirectoryUser, Matches


class Action(str, enum.Enum):
    START_ENROLLMENT = "start_enrollment"
    START_DESKTOP = "start_desktop"
    NONE = "none"


class Outcome(str, enum.Enum):
    PROVISIONED = "provisioned"
    SKIPPED = "skipped"
    FAILED = "failed"


class EnrolledPolicy(str, enum.Enum):
    """What to do with users Defguard counts as enrolled (password set, OIDC, prefetched)."""

    DESKTOP = "desktop"
    SKIP = "skip"


@dataclass(slots=True)
class PlannedMember:
    username: str
    email: str | None
    action: Action
    directory_user: DirectoryUser | None = None
    outcome: Outcome | None = None  # set now for members left alone, after execution for others
    reason: str = ""
    expires_at: str | None = None

    @property
    def pending(self) -> bool:
        return self.outcome is None


def _decide_match(key: str, matches: Matches) -> tuple[DirectoryUser | None, str]:
    for stage_name, stage in matches.stages:
        found = {user.id: user for user in stage.get(key, ())}
        if len(found) == 1:
            return next(iter(found.values())), ""
        if len(found) > 1:
            return None, (
                f"ambiguous: {len(found)} directory users have {stage_name} {key}; make it unique"
            )
    return None, ""


def plan(
    members: Sequence[str],
    users: Mapping[str, DefguardUser],
    matches: Matches,
    *,
    enrolled_policy: EnrolledPolicy,
    already_done: Mapping[str, str] | None = None,
    directory_name: str = "Entra ID",
) -> list[PlannedMember]:
    """One entry per group member, in group order, each with an action and (if final) outcome.

    Tokens are planned only for members whose directory object was found, so nobody's valid
    token is destroyed for a user the run could not store a new one for.
    """
    done = already_done or {}
    planned: list[PlannedMember] = []
    for username in dict.fromkeys(members):
        user = users.get(username)
        email = user.email if user else None
        entry = PlannedMember(username, email, Action.NONE)
        planned.append(entry)
        if username in done:
            entry.outcome, entry.reason = Outcome.SKIPPED, f"already provisioned ({done[username]})"
            continue
        if user is None:
            entry.outcome, entry.reason = (
                Outcome.FAILED,
                "Defguard lists the member but has no such user",
            )
            continue
        if not user.is_active:
            entry.outcome, entry.reason = Outcome.SKIPPED, "disabled in Defguard"
            continue
        if matches.key == "email" and not email:
            entry.outcome, entry.reason = Outcome.SKIPPED, "no e-mail address in Defguard"
            continue
        key = (email or "") if matches.key == "email" else username
        directory_user, problem = _decide_match(key.lower(), matches)
        entry.directory_user = directory_user
        if problem:
            entry.outcome, entry.reason = Outcome.FAILED, problem
            continue
        if directory_user is None:
            entry.outcome = Outcome.SKIPPED
            what = "e-mail address" if matches.key == "email" else "account name"
            entry.reason = f"no {directory_name} user with this {what}; no token issued"
            continue
        if user.enrolled:
            if enrolled_policy is EnrolledPolicy.SKIP:
                entry.outcome, entry.reason = (
                    Outcome.SKIPPED,
                    "already enrolled (--enrolled-users skip)",
                )
                continue
            entry.action = Action.START_DESKTOP
            entry.reason = "already enrolled: desktop token, server default lifetime"
        else:
            entry.action = Action.START_ENROLLMENT
    return planned


def summary(planned: Iterable[PlannedMember]) -> dict[str, int]:
    counts = {outcome.value: 0 for outcome in Outcome}
    for entry in planned:
        if entry.outcome is not None:
            counts[entry.outcome.value] += 1
    return counts
