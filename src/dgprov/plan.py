"""Which member gets which action, and why: the pure decision logic of ``generate-tokens``.

Nothing here does I/O. The inputs are what the remote systems said (Defguard's members and user
records, the directory's matches); the output is one ``PlannedMember`` per member with an action
and, for members that will not be touched, the final outcome and its reason. Keeping this apart
is what lets every rule be tested without a network, and ``--dry-run`` print exactly what a real
run would do.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .addresses import confusable, describe, fold, skeleton
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
    KEPT = "kept"  # sync only: the stored token stays
    CLEARED = "cleared"  # sync only: the stored value was removed


GENERATE_OUTCOMES = (Outcome.PROVISIONED, Outcome.SKIPPED, Outcome.FAILED)


class Decision(str, enum.Enum):
    """What ``sync`` decided for a member or a directory object (``reconcile.py``)."""

    ISSUE = "issue"
    RENEW = "renew"
    KEEP = "keep"
    CLEAR = "clear"
    SKIP = "skip"


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
    decision: Decision | None = None  # sync only
    disabled: bool = False  # skipped because Defguard or the directory disables the account

    @property
    def pending(self) -> bool:
        return self.outcome is None


def _decide_match(key: str, matches: Matches) -> tuple[DirectoryUser | None, str]:
    """The one object ``key`` finds in any stage, or why there is none to choose.

    Every stage counts: an address that finds one object by ``mail`` and another by
    ``otherMails`` (a former address reused, an alias someone set) is ambiguous, as is one
    that only looks like another object's address (``Matches.confusable``)."""
    found: dict[str, tuple[DirectoryUser, list[str]]] = {}
    for stage_name, stage in matches.stages:
        for user in stage.get(key, ()):
            found.setdefault(user.id.lower(), (user, []))[1].append(stage_name)
    alike = matches.confusable.get(key, ())
    for stage_name, user in alike:
        found.setdefault(user.id.lower(), (user, []))[1].append(f"{stage_name} look-alike")
    if len(found) == 1 and not alike:
        return next(iter(found.values()))[0], ""
    if not found:
        return None, ""
    named = "; ".join(
        f"{user.id} ({user.upn or 'no UPN'}) by {' and '.join(stages)}"
        for user, stages in found.values()
    )
    count = (
        "1 directory object answers"
        if len(found) == 1
        else f"{len(found)} directory objects answer"
    )
    return None, (
        f"ambiguous: {count} to {key}: {named}; no token issued: make it belong to one "
        "object only (correct the others' mail, userPrincipalName, otherMails or account "
        "name; a look-alike holds characters that case-fold into ASCII)"
    )


def _unusable_key(user: DefguardUser, matches: Matches) -> str:
    """Why the member's own address or username cannot be matched safely, or ``""``."""
    raw = (user.email or "") if matches.key == "email" else user.username
    if not confusable(raw):
        return ""
    what = "e-mail address" if matches.key == "email" else "username"
    return (
        f"ambiguous: the Defguard {what} {raw!r} holds characters that case-fold into ASCII "
        f"({describe(raw)}), so a directory may take it for {skeleton(raw)}; no token issued: "
        f"correct the {what} in Defguard"
    )


ALREADY_PROVISIONED = "already provisioned"


def already_provisioned(note: str) -> str:
    """The reason of a member an earlier run provisioned; ``note`` says which run.

    A resumed run's report keeps these rows, and ``report.provisioned_in`` reads the note back,
    so a chain of resumed runs remembers every member provisioned anywhere along it.
    """
    return f"{ALREADY_PROVISIONED} ({note})"


def plan(
    members: Sequence[str],
    users: Mapping[str, DefguardUser],
    matches: Matches,
    *,
    enrolled_policy: EnrolledPolicy,
    already_done: Mapping[str, str] | None = None,
    directory_name: str = "Entra ID",
    include_disabled: bool = False,
) -> list[PlannedMember]:
    """One entry per group member, in group order, each with an action and (if final) outcome.

    Tokens are planned only for members whose directory object was found, so nobody's valid
    token is destroyed for a user the run could not store a new one for; and only for members
    who are the sole match of their object, so nobody enrolls as another Defguard user.
    """
    done = already_done or {}
    planned: list[PlannedMember] = []
    for username in dict.fromkeys(members):
        user = users.get(username)
        email = user.email if user else None
        entry = PlannedMember(username, email, Action.NONE)
        planned.append(entry)
        if username in done:
            entry.outcome, entry.reason = Outcome.SKIPPED, already_provisioned(done[username])
            if user is not None and user.is_active and (matches.key == "username" or email):
                # Still matched: the token an earlier run stored on this object must not be
                # replaced by another member's (see _refuse_shared_objects).
                entry.directory_user, _ = _decide_match(_key(user, matches), matches)
            continue
        if user is None:
            entry.outcome, entry.reason = (
                Outcome.FAILED,
                "Defguard lists the member but has no such user",
            )
            continue
        if not user.is_active:
            entry.outcome, entry.reason = Outcome.SKIPPED, "disabled in Defguard"
            entry.disabled = True
            continue
        if matches.key == "email" and not email:
            entry.outcome, entry.reason = Outcome.SKIPPED, "no e-mail address in Defguard"
            continue
        if problem := _unusable_key(user, matches):
            entry.outcome, entry.reason = Outcome.FAILED, problem
            continue
        if unsearchable := matches.unsearchable.get(_key(user, matches)):
            entry.outcome, entry.reason = Outcome.SKIPPED, unsearchable
            continue
        directory_user, problem = _decide_match(_key(user, matches), matches)
        entry.directory_user = directory_user
        if problem:
            entry.outcome, entry.reason = Outcome.FAILED, problem
            continue
        if directory_user is None:
            entry.outcome = Outcome.SKIPPED
            what = "e-mail address" if matches.key == "email" else "account name"
            entry.reason = f"no {directory_name} user with this {what}; no token issued"
            continue
        if not directory_user.enabled and not include_disabled:
            entry.disabled = True
            entry.outcome, entry.reason = (
                Outcome.SKIPPED,
                f"the {directory_name} account is disabled; no token issued (pass "
                "--include-disabled-directory-users to provision disabled accounts too)",
            )
            continue
        if directory_user.guest and not matches.admit_guests:
            entry.outcome, entry.reason = (
                Outcome.SKIPPED,
                f"the {directory_name} account {directory_user.upn or directory_user.id} is a "
                "guest (userType Guest); no token issued (pass --allow-guests to provision "
                "guest accounts too)",
            )
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
    _refuse_shared_objects(planned, directory_name, done)
    return planned


def matched_object(user: DefguardUser, matches: Matches) -> DirectoryUser | None:
    """The one directory object ``user`` maps to, whatever the plan decided for the member
    (sync clears the object of a member disabled in Defguard, whom the plan never matches)."""
    if matches.key == "email" and not user.email:
        return None
    return _decide_match(_key(user, matches), matches)[0]


def candidates(user: DefguardUser, matches: Matches) -> Iterator[DirectoryUser]:
    """Every directory object any stage finds for ``user``, chosen or not, look-alikes too."""
    if matches.key == "email" and not user.email:
        return
    key = _key(user, matches)
    for _, found in matches.stages:
        yield from found.get(key, ())
    for _, alike in matches.confusable.get(key, ()):
        yield alike


def _key(user: DefguardUser, matches: Matches) -> str:
    return fold((user.email or "") if matches.key == "email" else user.username)


def _refuse_shared_objects(
    planned: Sequence[PlannedMember], directory_name: str, done: Mapping[str, str]
) -> None:
    """Fail every member whose directory object is also another member's match.

    Only one token fits on an object, so the second member's token would replace the first's
    and the person who owns the object would enroll as whichever member was written last.
    This happens when two Defguard accounts differ only in the case of their e-mail address or
    of their username (AD compares ``sAMAccountName`` ignoring case), or when one member's
    address is another's alias. Members skipped for other reasons count too: their object
    still belongs to one person, and the mapping is wrong whatever this run does. A member an
    earlier run provisioned keeps its outcome (its token is stored already), but still protects
    its object from the others.
    """
    # One dict entry per member, holding no new object when the id is lower case already (Entra
    # object ids are): at 100,000 members a list per object was 20 MB, the run's peak.
    first: dict[str, PlannedMember] = {}
    sharing: dict[str, list[PlannedMember]] = {}
    for entry in planned:
        if entry.directory_user is not None:
            object_id = entry.directory_user.id
            key = object_id if object_id.islower() else object_id.lower()
            if (earlier := first.setdefault(key, entry)) is not entry:
                sharing.setdefault(key, [earlier]).append(entry)
    del first
    for entries in sharing.values():
        owner = entries[0].directory_user
        assert owner is not None  # only members with an object are in ``sharing``
        object_id = owner.id
        names = [entry.username for entry in entries]
        listed = ", ".join(names[:-1]) + " and " + names[-1]
        for entry in entries:
            if entry.username in done:
                continue
            entry.action, entry.outcome = Action.NONE, Outcome.FAILED
            entry.reason = (
                f"Defguard members {listed} map to the same {directory_name} object "
                f"{object_id}, which can hold one member's token: no token issued for them; "
                "remove the duplicate Defguard account or correct its e-mail address or "
                "username so each member maps to their own object"
            )


NOT_PROCESSED = "not processed"
"""How the reason of a member a run never reached starts (its outcome stays ``failed``)."""
NOT_PROCESSED_KEY = "not_processed"  # the summaries count such members apart from ``failed``


def not_processed(member: PlannedMember) -> bool:
    """Whether the run stopped before it reached ``member``: nothing was tried for it."""
    return member.outcome is Outcome.FAILED and member.reason.startswith(NOT_PROCESSED)


def summary(planned: Iterable[PlannedMember]) -> dict[str, int]:
    """Members per outcome of ``generate-tokens`` (sync's summary is ``reconcile.summary``),
    and apart from ``failed`` those the run never reached (``not_processed``)."""
    counts = {outcome.value: 0 for outcome in GENERATE_OUTCOMES}
    counts[NOT_PROCESSED_KEY] = 0
    for entry in planned:
        if not_processed(entry):
            counts[NOT_PROCESSED_KEY] += 1
        elif entry.outcome is not None and entry.outcome.value in counts:
            counts[entry.outcome.value] += 1
    return counts
