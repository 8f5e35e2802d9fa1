"""The broker's pure parts without a network: who the caller is (``broker/decisions.py``), the
per-user window and the TTL cache (``broker/limits.py``)."""

from __future__ import annotations

import asyncio

import pytest

from dgprov.broker.decisions import AMBIGUOUS, Refusal, decide, email_index
from dgprov.broker.limits import RateLimiter, TtlCache
from dgprov.defguard import DefguardUser
from dgprov.directory import DirectoryUser, Matches
from dgprov.plan import Action

ME = DirectoryUser("oid-me", "me@corp.example", "me@corp.example")
OTHER = DirectoryUser("oid-other", "other@corp.example", "shared@corp.example")


def user(name: str, email: str, *, active: bool = True, enrolled: bool = False) -> DefguardUser:
    return DefguardUser(name, email, active, enrolled)


def run(
    users: list[DefguardUser],
    by_mail: dict[str, list[DirectoryUser]],
    *,
    group: list[str] | None = None,
    me: DirectoryUser = ME,
    refuse_enrolled: bool = False,
    addresses: tuple[str, ...] = ("me@corp.example",),
    admit_guests: bool = False,
) -> tuple[str, Action]:
    grant = decide(
        "oid-me",
        "me@corp.example",
        group if group is not None else [u.username for u in users],
        {u.username: u for u in users},
        email_index({u.username: u for u in users}),
        me,
        list(addresses),
        Matches([("mail", by_mail)]),
        refuse_enrolled=refuse_enrolled,
        admit_guests=admit_guests,
    )
    return grant.username, grant.action


def refusal(*args: object, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(Refusal) as caught:
        run(*args, **kwargs)  # type: ignore[arg-type]
    return caught.value.status, caught.value.code


def test_grants() -> None:
    me = {"me@corp.example": [ME]}
    assert run([user("me", "Me@Corp.example")], me) == ("me", Action.START_ENROLLMENT)
    enrolled = [user("me", "me@corp.example", enrolled=True)]
    assert run(enrolled, me) == ("me", Action.START_DESKTOP)
    assert refusal(enrolled, me, refuse_enrolled=True) == (403, "enrolled")


def test_refusals() -> None:
    me = {"me@corp.example": [ME]}
    assert refusal([user("me", "me@corp.example")], me, group=[]) == (403, "not_in_group")
    assert refusal([user("x", "x@corp.example")], me) == (404, "no_defguard_user")
    assert refusal([user("me", "me@corp.example", active=False)], me) == (403, "user_disabled")
    disabled = DirectoryUser("oid-me", "me@corp.example", "me@corp.example", enabled=False)
    assert refusal([user("me", "me@corp.example")], me, me=disabled) == (403, "account_disabled")
    twins = [user("me", "me@corp.example"), user("me2", "ME@corp.example")]
    assert refusal(twins, me) == (409, "ambiguous")
    shared = {"shared@corp.example": [ME, OTHER]}
    addresses = ("me@corp.example", "shared@corp.example")
    assert refusal([user("s", "shared@corp.example")], shared, addresses=addresses) == (
        409,
        "ambiguous",
    )


def test_an_address_another_object_has_as_mail_is_ambiguous_and_named_only_in_the_audit() -> None:
    """The caller lists other@ in their otherMails, and Graph finds other@ as someone else's
    mail: the member is neither's (generate-tokens refuses it the same way), and the 409 names
    nobody to the caller; the detail, for the audit line, names both objects."""
    found = {"other@corp.example": [OTHER]}
    aliases = {"other@corp.example": [ME]}
    members = [user("o", "other@corp.example")]
    with pytest.raises(Refusal) as caught:
        decide(
            "oid-me",
            "me@corp.example",
            ["o"],
            {"o": members[0]},
            email_index({"o": members[0]}),
            ME,
            ["me@corp.example", "other@corp.example"],
            Matches([("mail", found), ("userPrincipalName", {}), ("otherMails", aliases)]),
            refuse_enrolled=False,
        )
    refused = caught.value
    assert (refused.status, refused.code, refused.message) == (409, "ambiguous", AMBIGUOUS)
    assert refused.detail is not None
    assert "oid-other" in refused.detail and "oid-me" in refused.detail
    assert refused.detail.startswith("Defguard member o: ambiguous")


def test_a_look_alike_address_of_the_caller_is_ambiguous() -> None:
    """The caller's mail holds the Kelvin sign (U+212A), which str.lower() turns into k."""
    members = [user("kim", "kim@corp.example")]
    with pytest.raises(Refusal) as caught:
        run(members, {}, addresses=("\u212aim@corp.example",))
    refused = caught.value
    assert (refused.status, refused.code, refused.message) == (409, "ambiguous", AMBIGUOUS)
    assert refused.detail is not None and "U+212A" in refused.detail and "kim" in refused.detail


def test_guests_are_refused_unless_admitted() -> None:
    guest = DirectoryUser("oid-me", "me@corp.example", "me@corp.example", guest=True)
    me = {"me@corp.example": [guest]}
    assert refusal([user("me", "me@corp.example")], me, me=guest) == (403, "guest_account")
    assert run([user("me", "me@corp.example")], me, me=guest, admit_guests=True) == (
        "me",
        Action.START_ENROLLMENT,
    )


def test_rate_limiter_window() -> None:
    now = [100.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert limiter.wait_left("a") == 0
    limiter.record("a")
    now[0] += 20
    assert limiter.wait_left("a") == 40 and limiter.wait_left("b") == 0
    now[0] += 40
    assert limiter.wait_left("a") == 0
    assert RateLimiter(0).wait_left("a") == 0


def test_ttl_cache_loads_once_and_expires() -> None:
    now = [0.0]
    cache: TtlCache[int] = TtlCache(30, clock=lambda: now[0])
    loads: list[int] = []

    async def load() -> int:
        loads.append(1)
        await asyncio.sleep(0)
        return len(loads)

    async def scenario() -> list[int]:
        first = await asyncio.gather(*(cache.get("k", load) for _ in range(5)))
        now[0] = 31
        return [*first, await cache.get("k", load)]

    assert asyncio.run(scenario()) == [1, 1, 1, 1, 1, 2]
