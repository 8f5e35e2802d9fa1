"""Which Defguard member a signed-in Entra user is, and what the broker answers: no I/O here.

The broker runs ``generate-tokens``' own mapping backwards. ``generate-tokens`` maps each group
member to a directory object (``plan.plan``: the address looked up in mail, userPrincipalName
and otherMails, refused when it finds more than one object; two members on one object refused);
the broker asks the same question for the members whose e-mail address is one of the caller's
addresses and keeps those that land on the caller's object id. So a user who could not receive
a stored token from ``generate-tokens`` cannot obtain one from the broker either, and the other
way round. Addresses compare by ASCII case only (``addresses``); a caller's address that only
looks like a member's is refused as ambiguous.

A 409 never names an account to the caller (who may be the person trying to take it over): the
caller hears a fixed message and the audit line carries the names (``Refusal.detail``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..addresses import confusable, describe, fold, skeleton
from ..defguard import DefguardUser
from ..directory import DirectoryUser, Matches
from ..plan import Action, EnrolledPolicy, Outcome, PlannedMember, plan


class Refusal(Exception):
    """An answer other than a token: HTTP status, the JSON ``error`` code and the message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, for 429
        self.detail = detail  # for the audit line only, never the caller


AMBIGUOUS = (
    "your account does not map to exactly one Defguard member, so no token was issued; give "
    "your administrator the request id"
)


def ambiguous(detail: str) -> Refusal:
    """The 409 of an unclear mapping: the accounts it involves go to the audit line only."""
    return Refusal(409, "ambiguous", AMBIGUOUS, detail=detail)


@dataclass(frozen=True)
class Grant:
    """The member to issue a token for, and which kind."""

    username: str
    action: Action


EmailIndex = Mapping[str, Sequence[str]]
"""Folded e-mail address (``addresses.fold``) -> the Defguard usernames that have it."""


def email_index(users: Mapping[str, DefguardUser]) -> dict[str, list[str]]:
    """Built once per read of Defguard's users, so a request costs lookups, not a scan."""
    index: dict[str, list[str]] = {}
    for user in users.values():
        if user.email:
            index.setdefault(fold(user.email), []).append(user.username)
    return index


def candidates(addresses: Iterable[str], index: EmailIndex) -> list[str]:
    """Defguard users whose e-mail address is one of the caller's (mail, UPN, otherMails)."""
    return sorted({name for a in addresses for name in index.get(fold(a), ())})


def look_alikes(addresses: Iterable[str], index: EmailIndex) -> list[tuple[str, str]]:
    """``(caller's address, username)`` for each member whose address one of the caller's
    only resembles: characters that case-fold into ASCII (``addresses.skeleton``)."""
    return [
        (address, name)
        for address in addresses
        if confusable(address)
        for name in index.get(skeleton(address), ())
    ]


def _mapped_to(
    object_id: str,
    usernames: Sequence[str],
    users: Mapping[str, DefguardUser],
    matches: Matches,
) -> tuple[list[PlannedMember], list[PlannedMember]]:
    """``(members on the caller's object, members whose lookup was ambiguous)``.

    Planned as if every candidate were active and the caller's account enabled, so the mapping
    is known for disabled ones too; whether they may have a token is decided afterwards.
    """
    as_active = {name: dataclasses.replace(users[name], is_active=True) for name in usernames}
    planned = plan(
        usernames,
        as_active,
        dataclasses.replace(matches, admit_guests=True),
        enrolled_policy=EnrolledPolicy.DESKTOP,
        include_disabled=True,
    )
    mine = [
        e
        for e in planned
        if e.directory_user is not None and e.directory_user.id.lower() == object_id
    ]
    unclear = [
        e
        for e in planned
        if e.directory_user is None
        and e.outcome is Outcome.FAILED
        and e.reason.startswith("ambiguous")
    ]
    return mine, unclear


def decide(
    object_id: str,
    upn: str | None,
    group_members: Sequence[str],
    users: Mapping[str, DefguardUser],
    index: EmailIndex,
    entra_user: DirectoryUser | None,
    addresses: Sequence[str],
    matches: Matches,
    *,
    refuse_enrolled: bool,
    admit_guests: bool = False,
) -> Grant:
    """The member to provision for the caller, or the ``Refusal`` that says why not."""
    who = upn or object_id
    if entra_user is None:
        raise Refusal(
            404, "no_defguard_user", f"Entra has no user {object_id}; nothing to provision"
        )
    if entra_user.guest and not admit_guests:
        raise Refusal(
            403,
            "guest_account",
            f"{who} is a guest account (userType Guest); this broker provisions members of the "
            "tenant only",
        )
    in_group = set(group_members)
    for address, name in look_alikes(addresses, index):
        if name in in_group:
            raise ambiguous(
                f"the Entra account {who} has the address {address!r}, whose characters "
                f"{describe(address)} case-fold into ASCII like Defguard member {name}'s "
                f"address {users[name].email}; no token issued"
            )
    found = candidates(addresses, index)
    members = [name for name in found if name in in_group]
    mine, unclear = _mapped_to(object_id, members, users, matches)
    if len(mine) > 1:
        names = " and ".join(e.username for e in mine)
        raise ambiguous(
            f"Defguard members {names} both map to {who}; an administrator must remove the "
            "duplicate account or correct its e-mail address"
        )
    if not mine and unclear:
        raise ambiguous(f"Defguard member {unclear[0].username}: {unclear[0].reason}")
    if not mine:
        outsiders = [name for name in found if name not in in_group]
        if _mapped_to(object_id, outsiders, users, matches)[0]:
            raise Refusal(
                403,
                "not_in_group",
                f"{who} is not a member of the Defguard group this broker provisions",
            )
        raise Refusal(404, "no_defguard_user", f"Defguard has no user for {who}")
    (entry,) = mine
    if not users[entry.username].is_active:
        raise Refusal(403, "user_disabled", f"the Defguard user of {who} is disabled")
    if not entra_user.enabled:
        raise Refusal(403, "account_disabled", f"the Entra account {who} is disabled")
    if entry.action is Action.START_DESKTOP and refuse_enrolled:
        raise enrolled_refusal(who)
    return Grant(entry.username, entry.action)


def enrolled_refusal(who: str) -> Refusal:
    message = f"{who} is already enrolled; this broker issues no tokens to enrolled users"
    return Refusal(403, "enrolled", message)
