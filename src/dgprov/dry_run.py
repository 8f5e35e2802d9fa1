"""What a dry run says beyond the plan, so that it is a whole preflight: the lifetime the tokens
will get and when they would expire, what can be proved of the write access without writing, and
the plan as a report.

``generate-tokens`` and ``sync`` both use it (``api.py``, ``api_sync.py``), after their plan
and before anything would change. Nothing here writes anywhere but the report: the lines are
pure, apart from one read of Defguard's settings (``generate_lifetimes``) and one of the
directory (``write_access``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .defguard import DefguardClient
from .defguard_settings import server_enrollment
from .directory import Directory, DirectoryUser
from .durations import parse_lifetime
from .errors import PreflightError
from .ldap_directory import LdapDirectory
from .plan import Action, Decision, PlannedMember
from .report import ReportFile, write_report

DAY = 86_400
LIFETIME_OPTION = "--enrollment-token-expiration-time"
DEFGUARD_DEFAULT_SECONDS = DAY  # Defguard's documented default enrollment token lifetime
Notify = Callable[[str], None]


@dataclass(frozen=True)
class Lifetimes:
    """How long the tokens of a run last, and where each figure comes from.

    ``enrollment`` is the lifetime of ``start_enrollment`` tokens; ``desktop`` that of
    ``start_desktop`` tokens, which Defguard always gives its own default lifetime, whatever the
    request asks. Each ``*_source`` says where the figure comes from, for the line shown."""

    enrollment_seconds: int
    enrollment_source: str
    desktop_seconds: int
    desktop_source: str


async def generate_lifetimes(defguard: DefguardClient, expiration: str | None) -> Lifetimes:
    """``generate-tokens``' lifetimes: ``--enrollment-token-expiration-time``, else Defguard's
    default, which its settings state on 2.0 (``defguard_settings.py``; 1.6 does not say)."""
    server = (await server_enrollment(defguard)).desktop_lifetime_seconds
    default, source = (
        (server, "Defguard's settings")
        if server is not None
        else (DEFGUARD_DEFAULT_SECONDS, "Defguard's default, which its API does not show here")
    )
    if expiration is None:
        return Lifetimes(default, source, default, source)
    return Lifetimes(parse_lifetime(expiration), LIFETIME_OPTION, default, source)


async def preflight_plan(
    directory: Directory,
    members: Sequence[PlannedMember],
    targets: Sequence[PlannedMember],
    run: dict[str, Any],
    report: ReportFile | None,
    lifetimes: Lifetimes,
    now: datetime.datetime,
    notify: Notify,
) -> None:
    """The dry run's checks and statements after the plan: the write access on the first of
    ``targets`` (those the run would write), the tokens' lifetimes and expiries (set on the
    members too), then the plan as a report; a check that fails raises before the report."""
    notify(await write_access(directory, targets))
    for line in lifetime_lines(members, now, lifetimes):
        notify(line)
    project_expiries(members, now, lifetimes)
    if report is not None:
        write_plan(report, members, run)


def span(seconds: int) -> str:
    """``86400`` -> ``1d``, ``7200`` -> ``2h``: the largest whole unit, as Defguard writes them."""
    for unit, size in (("w", 7 * DAY), ("d", DAY), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def issuing(members: Iterable[PlannedMember]) -> list[PlannedMember]:
    """The members a run would issue a token for: pending, with an issuing action (and, in
    sync, the decision to issue or renew: a member whose token is cleared keeps its action)."""
    return [
        m
        for m in members
        if m.pending
        and m.action in (Action.START_ENROLLMENT, Action.START_DESKTOP)
        and m.decision in (None, Decision.ISSUE, Decision.RENEW)
    ]


def project_expiries(
    members: Iterable[PlannedMember], now: datetime.datetime, lifetimes: Lifetimes
) -> None:
    """Set each member a run would issue for the expiry its token would get if issued now."""
    for member in issuing(members):
        seconds = (
            lifetimes.desktop_seconds
            if member.action is Action.START_DESKTOP
            else lifetimes.enrollment_seconds
        )
        member.expires_at = _iso(now + datetime.timedelta(seconds=seconds))


def lifetime_lines(
    members: Sequence[PlannedMember], now: datetime.datetime, lifetimes: Lifetimes
) -> list[str]:
    """One line per kind of token the run would issue: how long it lasts, and until when; a
    ``start_desktop`` token's says that it gets Defguard's default lifetime instead."""
    planned = issuing(members)
    instead = (
        f" instead of {LIFETIME_OPTION}" if lifetimes.enrollment_source == LIFETIME_OPTION else ""
    )
    lines = []
    for action, seconds, source, note in (
        (Action.START_ENROLLMENT, lifetimes.enrollment_seconds, lifetimes.enrollment_source, ""),
        (
            Action.START_DESKTOP,
            lifetimes.desktop_seconds,
            lifetimes.desktop_source,
            f" (for members Defguard counts as enrolled) {{get}} Defguard's default "
            f"lifetime{instead}:",
        ),
    ):
        count = sum(1 for m in planned if m.action is action)
        if not count:
            continue
        expiry = _iso(now + datetime.timedelta(seconds=seconds))
        tokens = f"1 {action.value} token" if count == 1 else f"{count} {action.value} tokens"
        one = count == 1
        lasts = note.format(get="gets" if one else "get") or (" lasts" if one else " last")
        lines.append(
            f"lifetime: {tokens}{lasts} {span(seconds)} ({source}); issued now, "
            f"{'it expires' if count == 1 else 'they expire'} at {expiry}"
        )
    return lines


async def write_access(directory: Directory, targets: Sequence[PlannedMember]) -> str:
    """What can be proved, without writing, of the account's right to write where the run
    would: a ``PreflightError`` (exit 2) when the directory says it may not.

    Active Directory computes ``allowedAttributesEffective``, the attributes the bound account
    may write on an object, for whoever asks; other LDAP servers (OpenLDAP) do not, and Graph
    has no equivalent for custom security attributes, so there the run itself checks: a write
    that changes nothing before any token (AD), or the first member written alone (Entra)."""
    user = next((m.directory_user for m in targets if m.directory_user is not None), None)
    if user is None:
        return "write access: not checked, since the run would write nothing"
    if isinstance(directory, LdapDirectory):
        return await _ad_write_access(directory, user)
    return (
        f"write access: not checked; {directory.name} has no way to prove it without writing, "
        "so a run writes its first member alone (the canary) and stops there if refused"
    )


async def _ad_write_access(directory: LdapDirectory, user: DirectoryUser) -> str:
    attribute = directory.settings.attribute
    allowed = await directory.may_write(user.id)
    if allowed is None:
        return (
            f"write access to {attribute!r}: not checked; this directory does not answer "
            "allowedAttributesEffective (Active Directory does), so a run checks it before "
            f"its first token, with a write that changes nothing on {user.id}"
        )
    if not allowed:
        raise PreflightError(
            f"the bind account may not write {attribute!r} (allowedAttributesEffective on "
            f"{user.id} omits it): grant it that right on the user objects"
        )
    return f"write access to {attribute!r}: allowedAttributesEffective on {user.id} lists it"


def write_plan(report: ReportFile, members: Sequence[PlannedMember], run: dict[str, Any]) -> None:
    """The plan as a report: the run's columns, each member still to do ``planned``."""
    write_report(report, members, None, {**run, "dry_run": True})
