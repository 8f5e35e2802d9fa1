"""The broker's pure parts without a network: who the caller is (``broker/decisions.py``), the
per-user window and the TTL cache (``broker/limits.py``)."""

from __future__ import annotations

import asyncio

import pytest

from dgprov.broker.decisions import Refusal, decide, email_index
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


def test_an_alias_belongs_to_whoever_has_it_as_primary_mail() -> None:
    """The caller lists other@ among their addresses, but Graph finds other@ as someone else's
    mail: that member is not theirs (generate-tokens' first-stage rule)."""
    found = {"other@corp.example": [OTHER]}
    members = [user("o", "other@corp.example")]
    assert refusal(members, found, addresses=("me@corp.example", "other@corp.example")) == (
        404,
        "no_defguard_user",
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
