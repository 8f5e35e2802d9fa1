"""What ``dgprov sync`` does with each member and each stored token, and why: no I/O.

``plan.plan`` has already decided which members could get a token at all (matching, duplicates,
disabled accounts); this module adds what the directory holds and what Defguard says the member
did since, and decides one of ``issue``, ``renew``, ``keep``, ``clear`` or ``skip``:

- a token is **used** once the member enrolled after it was issued. ``sync`` issues a
  ``start_enrollment`` token only to a member Defguard does not count as enrolled, and a
  ``start_desktop`` token only to an enrolled member without a device; so a member enrolled since
  an enrollment token, or holding a device since a desktop token, has used it;
- a token is **due** when it has expired or expires within ``renew_before``; a ``start_desktop``
  token's expiry is Defguard's default, which dgprov cannot read, so it is never guessed: such a
  token is kept until the member uses it (it is never replaced on a guess, since replacing
  destroys a token someone may be typing in);
- a value with no expiry beside it was not written by sync (or was changed since): it is
  renewed, once, so that from then on sync knows it;
- the stored value of a member disabled in Defguard or in the directory, and a value sync wrote
  on an object no member maps to any more (the member left the group), is cleared.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .defguard import DefguardUser
from .directory import DirectoryUser, Matches, Stored
from .plan import Action, Decision, Outcome, PlannedMember, candidates, matched_object
from .stored_value import UNKNOWN_EXPIRY

SYNC_OUTCOMES = (
    Outcome.PROVISIONED,
    Outcome.KEPT,
    Outcome.CLEARED,
    Outcome.SKIPPED,
    Outcome.FAILED,
)
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Moment:
    """The clock of one run and how early tokens are renewed."""

    now: datetime.datetime
    renew_before: datetime.timedelta


def parse_expiry(text: str) -> datetime.datetime | None:
    """An ISO 8601 expiry as sync writes it (or any ISO 8601 with an offset), in UTC."""
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return None
        return moment.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError):  # e.g. 9999-12-31T23:59:59-05:00 is past year 9999
        return None


def is_used(user: DefguardUser, stored: Stored) -> bool:
    """Whether the member enrolled after ``stored`` was issued (see the module docstring).

    Never for a value sync did not write (no expiry beside it): when it was issued is unknown,
    and it may be a desktop token an administrator gave for a second device."""
    if stored.expires_at is None:
        return False
    if user.enrolled and (user.devices or 0) > 0:
        return True
    enrollment_token = stored.expires_at not in (None, UNKNOWN_EXPIRY)
    return enrollment_token and user.enrolled


def _settle(member: PlannedMember, decision: Decision, outcome: Outcome | None, why: str) -> None:
    member.decision, member.outcome, member.reason = decision, outcome, why


def decide(
    member: PlannedMember,
    user: DefguardUser | None,
    stored: Stored | None,
    moment: Moment,
) -> None:
    """Set ``member.decision`` (and, for members nothing will be done for, the outcome)."""
    if member.outcome is Outcome.FAILED:
        _settle(member, Decision.SKIP, Outcome.FAILED, member.reason)
        return
    if member.outcome is not None:  # skipped by the plan
        if stored is not None and member.disabled:
            _settle(member, Decision.CLEAR, None, f"{member.reason}: its stored token is removed")
        elif stored is not None and user is not None and is_used(user, stored):
            _settle(member, Decision.CLEAR, None, f"{member.reason}; enrolled since issued")
        else:
            _settle(member, Decision.SKIP, member.outcome, member.reason)
        return
    assert user is not None
    if stored is None:
        if user.enrolled and (user.devices or 0) > 0:
            count = user.devices
            _settle(member, Decision.SKIP, Outcome.SKIPPED, f"enrolled, {count} device(s)")
        else:
            member.decision = Decision.ISSUE
        return
    if is_used(user, stored):
        _settle(member, Decision.CLEAR, None, "enrolled since the token was issued")
        return
    if stored.expires_at is None:
        if user.enrolled and (user.devices or 0) > 0:
            _settle(
                member,
                Decision.SKIP,
                Outcome.SKIPPED,
                "enrolled; the stored value was not written by sync and is left alone",
            )
            return
        member.decision = Decision.RENEW
        member.reason = "no expiry stored beside the token (not written by sync, or changed)"
        return
    if stored.expires_at == UNKNOWN_EXPIRY:
        member.expires_at = UNKNOWN_EXPIRY
        _settle(
            member,
            Decision.KEEP,
            Outcome.KEPT,
            "start_desktop token with Defguard's default lifetime, which dgprov cannot read: "
            "kept until the member enrolls",
        )
        return
    expires = parse_expiry(stored.expires_at)
    if expires is None:
        member.decision, member.reason = Decision.RENEW, "the stored expiry is not ISO 8601"
    elif expires <= moment.now:
        member.decision, member.reason = Decision.RENEW, f"expired at {stored.expires_at}"
    elif expires - moment.now <= moment.renew_before:
        member.decision = Decision.RENEW
        member.reason = f"expires at {stored.expires_at}, within --renew-before"
    else:
        member.expires_at = stored.expires_at
        _settle(member, Decision.KEEP, Outcome.KEPT, _valid_until(stored.expires_at))


@functools.lru_cache(maxsize=4096)
def _valid_until(expiry: str) -> str:
    """One reason string per distinct expiry: 100,000 kept members share a few hundred."""
    return f"valid until {expiry}"


def reconcile(
    planned: Sequence[PlannedMember],
    users: Mapping[str, DefguardUser],
    matches: Matches,
    held: Mapping[str, Stored],
    moment: Moment,
) -> list[PlannedMember]:
    """Decide for every planned member, then add one ``clear`` row per object holding a value
    sync wrote that no member maps to; return those rows (the caller appends them)."""
    claimed: set[str] = set()
    for member in planned:
        user = users.get(member.username)
        obj = member.directory_user
        if obj is None and user is not None and member.disabled:
            obj = matched_object(user, matches)  # the plan never matches a disabled member
            member.directory_user = obj
        if obj is not None:
            claimed.add(obj.id.lower())
        if user is not None:
            # An object a member's address or name finds is theirs to keep even when the plan
            # could not decide between several (ambiguous): never an orphan to clear.
            claimed.update(candidate.id.lower() for candidate in candidates(user, matches))
        decide(member, user, held.get(obj.id.lower()) if obj is not None else None, moment)
    orphans: list[PlannedMember] = []
    for key, stored in held.items():
        if key in claimed or stored.expires_at is None:
            continue  # a member's, or not written by sync: never another tool's value
        orphan = PlannedMember(
            "",
            None,
            Action.NONE,
            DirectoryUser(stored.object_id, stored.upn, None),
            reason="no member of the group maps to this object (left the group, or the "
            "member's e-mail address or username changed): the value sync stored is removed",
            expires_at=stored.expires_at,
        )
        orphan.decision = Decision.CLEAR
        orphans.append(orphan)
    return orphans


def summary(members: Iterable[PlannedMember]) -> dict[str, dict[str, int]]:
    """Members per decision and per outcome; a member not settled counts as failed."""
    decisions = {decision.value: 0 for decision in Decision}
    outcomes = {outcome.value: 0 for outcome in SYNC_OUTCOMES}
    for member in members:
        if member.decision is not None:
            decisions[member.decision.value] += 1
        outcomes[(member.outcome or Outcome.FAILED).value] += 1
    return {"decision": decisions, "outcome": outcomes}


def replaced(
    planned: Iterable[PlannedMember], users: Mapping[str, DefguardUser], held: Mapping[str, Stored]
) -> int:
    """Members ``generate-tokens`` will issue for whose object holds a token not yet used:
    Defguard deletes a user's unused tokens on every issue, so each of these stops working."""
    count = 0
    for member in planned:
        obj, user = member.directory_user, users.get(member.username)
        if not member.pending or obj is None or user is None:
            continue
        stored = held.get(obj.id.lower())
        if stored is not None and not is_used(user, stored):
            count += 1
    return count
