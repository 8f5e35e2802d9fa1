"""What ``dgprov sync`` does with each member and each stored token, and why: no I/O.

``plan.plan`` has already decided which members could get a token at all (matching, duplicates,
disabled accounts); this module adds what the directory holds and what Defguard says the member
did since, and decides one of ``issue``, ``renew``, ``keep``, ``clear`` or ``skip``:

- a token is **used** once the member enrolled after it was issued. ``sync`` issues a
  ``start_enrollment`` token only to a member Defguard does not count as enrolled, and a
  ``start_desktop`` token only to an enrolled member without a device; so a member enrolled since
  an enrollment token, or holding a device since a desktop token, has used it;
- a token is **due** when it has expired or expires within ``renew_before``; a ``start_desktop``
  token is stored with its issue time, and expires that long after it as Defguard's default
  lifetime (``Moment.desktop_lifetime``: from Defguard's settings, or
  ``--desktop-token-lifetime``);
- a value is **not trusted**, whatever else is known of it, when the desktop client would refuse
  it or when its URL is not the one Defguard hands out (``_distrusted``). These checks come
  first: a value failing either is never adopted because ``--state`` has no record of it, nor
  left alone because the member has a device. Where no enrollment URL is known (Defguard 1.6
  without ``--enrollment-url``) the URL cannot be compared, and the run says so;
- a value is not trusted either when its expiry is later than any sync writes (now plus the
  lifetime, plus ``SKEW``), or when it is a desktop value (an issue time, or ``unknown``) on a
  member Defguard shows as not enrolled, who never gets a ``start_desktop`` token;
- ``unknown`` is what earlier versions stored beside a ``start_desktop`` token, without its issue
  time. Kept in the directory, it is **replaced once**: how long that token lasts cannot be
  known (it may have expired long ago, and then the member can never enroll), and the token
  sync issues instead is stored with its issue time, so it is never ``unknown`` again. The
  alternative, stamping "first seen now" beside the old token without re-issuing, would vouch
  for a token that may already be dead for one more lifetime, would need a write of the
  expiry alone (in AD the whole JSON, token included, which sync never reads back), and would
  let whoever plants ``unknown`` keep a token alive. A ``--state`` file (0600, this account's)
  records ``unknown`` only for a token it saw sync write, and ages it from when a run first saw
  it (``SyncState.vouch``), which then reads as an issue time like any other;
- a value with no expiry beside it was not written by sync (or was changed since): it is
  renewed, once, so that from then on sync knows it; but a value ``--state`` merely has no
  record of (``Stored.unrecorded``: a run killed before it could say, another tool) is kept as
  if issued now, so a stopped run's tokens are never destroyed;
- on a member with a device (who gets no token from sync), a value sync did not write is left
  alone (an administrator's desktop token for a second device, perhaps) while the client could
  use it at Defguard's URL; one pointing elsewhere, or that the client would refuse, is a stale
  value nobody needs and is cleared;
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
from .plan import (
    NOT_PROCESSED_KEY,
    Action,
    Decision,
    Outcome,
    PlannedMember,
    candidates,
    matched_object,
    not_processed,
)
from .provision import comparable_url
from .stored_value import (
    INVALID_VALUE,
    REPLACED_VALUE,
    UNKNOWN_EXPIRY,
    desktop_issued,
    desktop_stamp,
)

SYNC_OUTCOMES = (
    Outcome.PROVISIONED,
    Outcome.KEPT,
    Outcome.CLEARED,
    Outcome.SKIPPED,
    Outcome.FAILED,
)
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DAY = datetime.timedelta(hours=24)
SKEW = datetime.timedelta(minutes=5)
"""How much later than now plus the lifetime an expiry sync wrote can be: the clock offset is
measured to the second on each run, so minutes are plenty, and far less than any lifetime."""


@dataclass(frozen=True)
class Moment:
    """The clock of one run, how early tokens are renewed, and what sync itself would write:
    the lifetime of its ``start_enrollment`` tokens, Defguard's default lifetime (that of
    ``start_desktop`` tokens), and the enrollment URL Defguard hands out where it is known."""

    now: datetime.datetime
    renew_before: datetime.timedelta
    lifetime: datetime.timedelta = DAY
    desktop_lifetime: datetime.timedelta = DAY
    enrollment_url: str | None = None


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

    Never for a value sync did not write (no expiry beside it) or that nobody could use: when
    it was issued is unknown, and it may be a desktop token an administrator gave for a second
    device."""
    if stored.expires_at in (None, INVALID_VALUE):
        return False
    if _has_device(user):
        return True
    dead = stored.expires_at == REPLACED_VALUE  # renewed, whichever kind it was
    return not dead and not is_desktop(stored.expires_at) and user.enrolled


def is_desktop(expires_at: str | None) -> bool:
    """Whether sync stored this beside a ``start_desktop`` token."""
    return expires_at == UNKNOWN_EXPIRY or desktop_issued(expires_at) is not None


def _has_device(user: DefguardUser) -> bool:
    return user.enrolled and (user.devices or 0) > 0


def _distrusted(stored: Stored, moment: Moment) -> str | None:
    """Why a value sync's expiry vouches for is still not to be trusted, if it is not."""
    if stored.expires_at == INVALID_VALUE:
        return "the stored value is not one the desktop client accepts (its URL or token)"
    if stored.expires_at == REPLACED_VALUE:
        return "Defguard replaced this token when sync issued another, which was never stored"
    expected = moment.enrollment_url
    if (
        stored.url is not None
        and expected
        and comparable_url(stored.url) != comparable_url(expected)
    ):
        return f"the stored enrollment URL is not the one Defguard hands out ({expected})"
    return None


def _expiry_of(stored: str, user: DefguardUser, moment: Moment) -> tuple[str | None, str]:
    """The expiry (ISO 8601 UTC) a stored value vouches for, or None and why it is renewed."""
    issued_text = desktop_issued(stored)
    if issued_text is not None or stored == UNKNOWN_EXPIRY:
        if not user.enrolled:
            what = "a start_desktop issue time" if issued_text else "expiry 'unknown'"
            return None, (
                f"{what} on a member Defguard shows as not enrolled, who never gets a "
                "start_desktop token: not trusted"
            )
        if issued_text is None:
            return None, (
                "expiry 'unknown', which an earlier dgprov stored beside a start_desktop token: "
                "how long it lasts cannot be known, so it is replaced once (sync now stores "
                "when it issued a token)"
            )
        issued = parse_expiry(issued_text)
        if issued is None:
            return None, "the stored issue time is not ISO 8601"
        if issued > moment.now + SKEW:
            return None, f"issued at {issued_text}, later than now: not trusted"
        return _iso(issued + moment.desktop_lifetime), ""
    expires = parse_expiry(stored)
    if expires is None:
        return None, "the stored expiry is not ISO 8601"
    if expires > moment.now + moment.lifetime + SKEW:
        return None, (
            f"expires at {stored}, later than a token sync issues now would "
            "(--enrollment-token-expiration-time): not trusted"
        )
    return stored, ""


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime(ISO_FORMAT)


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
        if _has_device(user):
            count = user.devices
            _settle(member, Decision.SKIP, Outcome.SKIPPED, f"enrolled, {count} device(s)")
        else:
            member.decision = Decision.ISSUE
        return
    if is_used(user, stored):
        _settle(member, Decision.CLEAR, None, "enrolled since the token was issued")
        return
    distrusted = _distrusted(stored, moment)  # before anything could adopt or leave it alone
    if _has_device(user):  # a value sync wrote would be used: what is left, sync did not write
        if distrusted is not None:
            why = f"enrolled, with a device; {distrusted}: a stale value nobody needs, removed"
            _settle(member, Decision.CLEAR, None, why)
        else:
            why = "enrolled; the stored value was not written by sync and is left alone"
            _settle(member, Decision.SKIP, Outcome.SKIPPED, why)
        return
    if distrusted is not None:
        member.decision, member.reason = Decision.RENEW, distrusted
        return
    if stored.expires_at is None and stored.unrecorded:
        # --state has no record of it (a run killed before it said, or another tool): kept as
        # if sync had issued it now, so it is renewed only once that expiry passes.
        now = _iso(moment.now)
        adopted = desktop_stamp(now) if user.enrolled else _iso(moment.now + moment.lifetime)
        member.expires_at = adopted
        why = "--state has no record of the stored token: kept as if issued now"
        _settle(member, Decision.KEEP, Outcome.KEPT, why)
        return
    if stored.expires_at is None:
        member.decision = Decision.RENEW
        member.reason = "no expiry stored beside the token (not written by sync, or changed)"
        return
    expiry, why = _expiry_of(stored.expires_at, user, moment)
    if expiry is None:
        member.decision, member.reason = Decision.RENEW, why
        return
    expires = parse_expiry(expiry)
    assert expires is not None
    if expires <= moment.now:
        member.decision, member.reason = Decision.RENEW, f"expired at {expiry}"
    elif expires - moment.now <= moment.renew_before:
        member.decision = Decision.RENEW
        member.reason = f"expires at {expiry}, within --renew-before"
    else:
        member.expires_at = stored.expires_at
        _settle(member, Decision.KEEP, Outcome.KEPT, _valid_until(expiry))


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
        if key in claimed or stored.expires_at in (None, INVALID_VALUE):
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
    """Members per decision and per outcome; a member not settled counts as failed, one the
    run never reached as ``not_processed``."""
    decisions = {decision.value: 0 for decision in Decision}
    outcomes = {outcome.value: 0 for outcome in SYNC_OUTCOMES}
    outcomes[NOT_PROCESSED_KEY] = 0
    for member in members:
        if member.decision is not None:
            decisions[member.decision.value] += 1
        if not_processed(member):
            outcomes[NOT_PROCESSED_KEY] += 1
        else:
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
