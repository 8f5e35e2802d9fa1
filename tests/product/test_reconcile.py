"""The decisions of ``dgprov sync`` (``reconcile.py``), without a network."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from dgprov.defguard import DefguardUser
from dgprov.directory import DirectoryUser, Matches, Stored
from dgprov.plan import Action, Decision, EnrolledPolicy, Outcome, PlannedMember, plan
from dgprov.reconcile import Moment, is_used, parse_expiry, reconcile, replaced, summary
from dgprov.stored_value import (
    INVALID_VALUE,
    REPLACED_VALUE,
    UNKNOWN_EXPIRY,
    ad_expiry,
    desktop_stamp,
    from_ad_json,
)

NOW = datetime.datetime(2026, 1, 10, 12, 0, tzinfo=datetime.timezone.utc)
MOMENT = Moment(NOW, datetime.timedelta(hours=2))


def iso(hours: float) -> str:
    return (NOW + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def user(
    name: str, *, enrolled: bool = False, devices: int = 0, active: bool = True
) -> DefguardUser:
    return DefguardUser(name, f"{name}@corp.example", active, enrolled, id=1, devices=devices)


def obj(name: str, *, enabled: bool = True) -> DirectoryUser:
    return DirectoryUser(f"ID-{name}", f"{name}@corp.example", f"{name}@corp.example", enabled)


def stored(name: str, expires_at: str | None) -> Stored:
    return Stored(f"ID-{name}", f"{name}@corp.example", b"digest", expires_at)


def decide(
    users: list[DefguardUser],
    held: dict[str, Stored],
    objects: list[DirectoryUser] | None = None,
) -> dict[str, tuple[Decision | None, Outcome | None, str]]:
    objects = objects if objects is not None else [obj(u.username) for u in users]
    matches = Matches([("mail", {o.mail or "": [o] for o in objects})])
    by_name = {u.username: u for u in users}
    planned = plan(
        [u.username for u in users], by_name, matches, enrolled_policy=EnrolledPolicy.DESKTOP
    )
    keyed = {s.object_id.lower(): s for s in held.values()}
    orphans = reconcile(planned, by_name, matches, keyed, MOMENT)
    return {
        (m.username or f"orphan:{m.directory_user.upn if m.directory_user else ''}"): (
            m.decision,
            m.outcome,
            m.reason,
        )
        for m in [*planned, *orphans]
    }


def test_no_stored_token_is_issued() -> None:
    decided = decide([user("ann")], {})
    assert decided["ann"][:2] == (Decision.ISSUE, None)


def test_a_valid_token_is_kept_and_an_expiring_one_renewed() -> None:
    users = [user("keep"), user("soon"), user("gone"), user("edge")]
    held = {
        "keep": stored("keep", iso(3)),
        "soon": stored("soon", iso(1.5)),
        "gone": stored("gone", iso(-1)),
        "edge": stored("edge", iso(2)),  # exactly at --renew-before: renewed
    }
    decided = decide(users, held)
    assert decided["keep"][:2] == (Decision.KEEP, Outcome.KEPT)
    assert decided["soon"][:2] == (Decision.RENEW, None)
    assert decided["gone"][:2] == (Decision.RENEW, None) and "expired" in decided["gone"][2]
    assert decided["edge"][:2] == (Decision.RENEW, None)


def test_an_earlier_versions_unknown_expiry_is_replaced_once() -> None:
    """``unknown`` is what earlier versions stored beside a desktop token, which sync gives only
    to enrolled members: how long it lasts cannot be known, so it is replaced (and the new one
    stored with its issue time); on a member Defguard shows as never enrolled it is not
    trusted either. A desktop issue time on such a member is not trusted, for the same reason."""
    users = [user("desk", enrolled=True), user("never"), user("stamp")]
    held = {name: stored(name, UNKNOWN_EXPIRY) for name in ("desk", "never")}
    held["stamp"] = stored("stamp", desktop_stamp(iso(-1)))
    decided = decide(users, held)
    assert decided["desk"][:2] == (Decision.RENEW, None) and "replaced once" in decided["desk"][2]
    assert decided["never"][:2] == (Decision.RENEW, None) and "not enrolled" in decided["never"][2]
    assert decided["stamp"][:2] == (Decision.RENEW, None) and "not enrolled" in decided["stamp"][2]


def moment(**fields: object) -> Moment:
    return dataclasses.replace(MOMENT, **fields)  # type: ignore[arg-type]


def decide_at(when: Moment, member: DefguardUser, value: Stored) -> tuple[Decision | None, str]:
    matches = Matches([("mail", {member.email or "": [obj(member.username)]})])
    users = {member.username: member}
    planned = plan([member.username], users, matches, enrolled_policy=EnrolledPolicy.DESKTOP)
    reconcile(planned, users, matches, {value.object_id.lower(): value}, when)
    return planned[0].decision, planned[0].reason


@pytest.mark.parametrize(
    ("issued_hours_ago", "lifetime_hours", "decision", "why"),
    [
        (1, 24, Decision.KEEP, "valid until"),
        (23, 24, Decision.RENEW, "within --renew-before"),
        (25, 24, Decision.RENEW, "expired at"),
        (25, 48, Decision.KEEP, "valid until"),  # the server's default lifetime is longer
        (-1, 24, Decision.RENEW, "later than now"),  # issued in the future: not trusted
    ],
)
def test_a_desktop_token_expires_its_servers_default_lifetime_after_it_was_issued(
    issued_hours_ago: float, lifetime_hours: float, decision: Decision, why: str
) -> None:
    when = moment(desktop_lifetime=datetime.timedelta(hours=lifetime_hours))
    value = stored("desk", desktop_stamp(iso(-issued_hours_ago)))
    got = decide_at(when, user("desk", enrolled=True), value)
    assert got[0] is decision and why in got[1]


@pytest.mark.parametrize("expiry", ["9999-12-31T23:59:59Z", iso(24 + 1)])
def test_an_expiry_later_than_sync_would_write_is_not_trusted(expiry: str) -> None:
    """Sync writes now plus the lifetime it states (24h here): later is someone else's claim."""
    decision, why = decide_at(MOMENT, user("ann"), stored("ann", expiry))
    assert decision is Decision.RENEW and "not trusted" in why
    assert decide_at(MOMENT, user("ann"), stored("ann", iso(24)))[0] is Decision.KEEP


def test_a_value_the_client_would_refuse_is_renewed() -> None:
    decision, why = decide_at(MOMENT, user("ann"), stored("ann", INVALID_VALUE))
    assert decision is Decision.RENEW and "desktop client accepts" in why
    # On an enrolled member with a device (who gets no token), a value nobody can use goes.
    used = user("ann", enrolled=True, devices=1)
    assert decide_at(MOMENT, used, stored("ann", INVALID_VALUE))[0] is Decision.CLEAR


def test_the_url_is_checked_before_a_value_is_adopted_or_left_alone() -> None:
    """A value --state has no record of is kept as if issued now, and another tool's value on a
    member with a device is left alone: neither when it points elsewhere than Defguard."""
    when = moment(enrollment_url="https://enroll.corp.example/")
    foreign = dataclasses.replace(stored("ann", None), url="https://evil.example/")
    unrecorded = dataclasses.replace(foreign, unrecorded=True)
    for member in (user("ann"), user("ann", enrolled=True)):
        decision, why = decide_at(when, member, unrecorded)
        assert decision is Decision.RENEW and "not the one Defguard hands out" in why
    with_device = user("ann", enrolled=True, devices=1)
    decision, why = decide_at(when, with_device, foreign)
    assert decision is Decision.CLEAR and "not the one Defguard hands out" in why
    ours = dataclasses.replace(foreign, url="https://enroll.corp.example/")
    assert decide_at(when, with_device, ours)[0] is Decision.SKIP


def test_a_value_whose_url_is_not_defguards_is_renewed() -> None:
    when = moment(enrollment_url="https://Enroll.corp.example")
    value = dataclasses.replace(stored("ann", iso(5)), url="https://enroll.evil.example/")
    decision, why = decide_at(when, user("ann"), value)
    assert decision is Decision.RENEW and "https://Enroll.corp.example" in why
    same = dataclasses.replace(value, url="https://enroll.corp.example/")  # case, slash
    assert decide_at(when, user("ann"), same)[0] is Decision.KEEP


def test_a_value_state_has_no_record_of_is_kept_as_if_issued_now() -> None:
    """``--state`` did not see it written (a run killed first): never renewed on that ground."""
    value = dataclasses.replace(stored("ann", None), unrecorded=True)
    for member, kept in ((user("ann"), iso(24)), (user("ann", enrolled=True), None)):
        matches = Matches([("mail", {"ann@corp.example": [obj("ann")]})])
        users = {"ann": member}
        planned = plan(["ann"], users, matches, enrolled_policy=EnrolledPolicy.DESKTOP)
        reconcile(planned, users, matches, {"id-ann": value}, MOMENT)
        assert (planned[0].decision, planned[0].outcome) == (Decision.KEEP, Outcome.KEPT)
        assert planned[0].expires_at == (kept or desktop_stamp(iso(0)))


def test_a_value_a_stopped_run_replaced_in_defguard_is_renewed() -> None:
    decision, why = decide_at(MOMENT, user("ann"), stored("ann", REPLACED_VALUE))
    assert decision is Decision.RENEW and "replaced" in why


def test_value_without_expiry_or_unreadable_is_renewed() -> None:
    users = [user("other"), user("junk")]
    decided = decide(users, {"other": stored("other", None), "junk": stored("junk", "soon")})
    assert decided["other"][:2] == (Decision.RENEW, None)
    assert decided["junk"][:2] == (Decision.RENEW, None) and "ISO 8601" in decided["junk"][2]


@pytest.mark.parametrize(
    ("facts", "expiry", "used"),
    [
        ({"enrolled": True}, iso(5), True),  # enrollment token, then activated
        ({"enrolled": False}, iso(5), False),
        ({"enrolled": True, "devices": 1}, UNKNOWN_EXPIRY, True),  # desktop token, then a device
        ({"enrolled": True}, UNKNOWN_EXPIRY, False),  # desktop token not used yet
        ({"enrolled": True}, desktop_stamp(iso(-1)), False),
        ({"enrolled": True, "devices": 1}, desktop_stamp(iso(-1)), True),
        # Another tool's value: when it was issued is unknown (a second device's desktop token?).
        ({"enrolled": True, "devices": 2}, None, False),
    ],
)
def test_used_tokens(facts: dict[str, object], expiry: str | None, used: bool) -> None:
    member = user("ann", **facts)  # type: ignore[arg-type]
    assert is_used(member, stored("ann", expiry)) is used
    decision = decide([member], {"ann": stored("ann", expiry)})["ann"][0]
    assert (decision is Decision.CLEAR) is used


def test_enrolled_member_with_a_device_and_nothing_stored_gets_nothing() -> None:
    decided = decide([user("ed", enrolled=True, devices=1), user("pf", enrolled=True)], {})
    assert decided["ed"][:2] == (Decision.SKIP, Outcome.SKIPPED)
    assert decided["pf"][:2] == (Decision.ISSUE, None)  # enrolled, no device: desktop token


def test_disabled_members_are_cleared() -> None:
    users = [user("dora", active=False), user("off"), user("plain", active=False)]
    objects = [obj("dora"), obj("off", enabled=False), obj("plain")]
    held = {"dora": stored("dora", iso(5)), "off": stored("off", None)}
    decided = decide(users, held, objects)
    assert decided["dora"][:2] == (Decision.CLEAR, None)
    assert decided["off"][:2] == (Decision.CLEAR, None)
    assert decided["plain"][:2] == (Decision.SKIP, Outcome.SKIPPED)  # nothing stored


def test_values_sync_wrote_on_objects_no_member_maps_to_are_cleared() -> None:
    held = {
        "ann": stored("ann", iso(5)),
        "left": stored("left", iso(5)),
        "foreign": stored("foreign", None),  # not written by sync: left alone
    }
    decided = decide([user("ann")], held, [obj("ann")])
    assert decided["orphan:left@corp.example"][:2] == (Decision.CLEAR, None)
    assert "orphan:foreign@corp.example" not in decided
    assert decided["ann"][:2] == (Decision.KEEP, Outcome.KEPT)


def test_failed_plan_members_are_left_alone() -> None:
    twins = [user("twin1"), user("twin2")]
    shared = DirectoryUser("ID-shared", "s@corp.example", "s@corp.example")
    matches = Matches([("mail", {"twin1@corp.example": [shared], "twin2@corp.example": [shared]})])
    by_name = {u.username: u for u in twins}
    planned = plan(["twin1", "twin2"], by_name, matches, enrolled_policy=EnrolledPolicy.DESKTOP)
    orphans = reconcile(planned, by_name, matches, {"id-shared": stored("shared", iso(5))}, MOMENT)
    assert orphans == []
    assert {(m.decision, m.outcome) for m in planned} == {(Decision.SKIP, Outcome.FAILED)}


def test_summary_counts_decisions_and_outcomes() -> None:
    members = [
        PlannedMember("a", None, Action.NONE, decision=Decision.KEEP, outcome=Outcome.KEPT),
        PlannedMember("b", None, Action.START_ENROLLMENT, decision=Decision.ISSUE),
    ]
    counts = summary(members)
    assert counts["decision"]["keep"] == 1 and counts["decision"]["issue"] == 1
    assert counts["outcome"]["kept"] == 1 and counts["outcome"]["failed"] == 1  # not settled


def test_replaced_counts_unused_tokens_of_members_to_be_issued() -> None:
    users = {"a": user("a"), "b": user("b", enrolled=True, devices=1), "c": user("c")}
    planned = [PlannedMember(n, None, Action.START_ENROLLMENT, obj(n)) for n in "abc"]
    held = {f"id-{n}": stored(n, iso(5)) for n in "ab"}
    assert replaced(planned, users, held) == 1  # b's is used, c holds nothing


def test_parse_expiry() -> None:
    assert parse_expiry("2026-01-10T12:00:00Z") == NOW
    assert parse_expiry("2026-01-10T13:00:00+01:00") == NOW
    assert parse_expiry("2026-01-10T12:00:00") is None  # no zone: not what sync writes
    assert parse_expiry("unknown") is None


def test_used_tokens_are_cleared_even_when_enrolled_members_are_skipped() -> None:
    users = {"ed": user("ed", enrolled=True, devices=1)}
    matches = Matches([("mail", {"ed@corp.example": [obj("ed")]})])
    planned = plan(["ed"], users, matches, enrolled_policy=EnrolledPolicy.SKIP)
    reconcile(planned, users, matches, {"id-ed": stored("ed", iso(5))}, MOMENT)
    assert (planned[0].decision, planned[0].outcome) == (Decision.CLEAR, None)
    fresh = plan(["ed"], users, matches, enrolled_policy=EnrolledPolicy.SKIP)
    reconcile(fresh, users, matches, {}, MOMENT)
    assert (fresh[0].decision, fresh[0].outcome) == (Decision.SKIP, Outcome.SKIPPED)


def test_another_tools_value_on_an_enrolled_member_is_left_alone() -> None:
    decided = decide([user("ann", enrolled=True, devices=1)], {"ann": stored("ann", None)})
    assert decided["ann"][:2] == (Decision.SKIP, Outcome.SKIPPED)
    assert "not written by sync" in decided["ann"][2]


@pytest.mark.parametrize(
    "expiry", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2026-13-01T00:00:00Z"]
)
def test_an_expiry_out_of_range_is_renewed_not_a_crash(expiry: str) -> None:
    assert parse_expiry(expiry) is None
    decided = decide([user("ann")], {"ann": stored("ann", expiry)})
    assert decided["ann"][:2] == (Decision.RENEW, None)


def test_an_ambiguous_members_object_is_not_cleared_as_an_orphan() -> None:
    """A second object took ann's address: the plan fails her, and her value stays."""
    twin = DirectoryUser("ID-twin", "twin@corp.example", "ann@corp.example")
    ann = user("ann")
    matches = Matches([("mail", {"ann@corp.example": [obj("ann"), twin]})])
    planned = plan(["ann"], {"ann": ann}, matches, enrolled_policy=EnrolledPolicy.DESKTOP)
    orphans = reconcile(planned, {"ann": ann}, matches, {"id-ann": stored("ann", iso(5))}, MOMENT)
    assert (planned[0].decision, planned[0].outcome) == (Decision.SKIP, Outcome.FAILED)
    assert orphans == []


@pytest.mark.parametrize("raw", ["[" * 200_000, '{"enrollmentUrl": "' + "x" * 5000 + '"}'])
def test_a_hostile_ad_value_is_not_that_json(raw: str) -> None:
    """Anyone who may write the AD attribute chooses it: too deep or too long is no value."""
    assert from_ad_json(raw) is None and ad_expiry(raw) is None
