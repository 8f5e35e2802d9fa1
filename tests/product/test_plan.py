"""The decision rules of generate-tokens, without any network."""

from __future__ import annotations

import dataclasses

from dgprov.defguard import DefguardUser
from dgprov.directory import DirectoryUser, Matches
from dgprov.plan import Action, EnrolledPolicy, Outcome, candidates, plan, summary

ALICE = DirectoryUser("id-alice", "alice@corp.example", "alice@corp.example")
ERIN = DirectoryUser("id-erin", "erin@corp.example", "erin@corp.example")
ALIAS = DirectoryUser("id-alias", "alias@corp.example", None)
TWIN_A = DirectoryUser("id-a", "a@corp.example", "twin@corp.example")
TWIN_B = DirectoryUser("id-b", "b@corp.example", "twin@corp.example")


def entra(
    by_mail: dict[str, list[DirectoryUser]], other: dict[str, list[DirectoryUser]] | None = None
) -> Matches:
    return Matches([("mail", by_mail), ("userPrincipalName", {}), ("otherMails", other or {})])


def user(
    name: str, email: str | None, *, active: bool = True, enrolled: bool = False
) -> DefguardUser:
    return DefguardUser(name, email, active, enrolled)


def decide(
    members: list[DefguardUser], matches: Matches, **options: object
) -> dict[str, tuple[Action, Outcome | None, str]]:
    planned = plan(
        [m.username for m in members],
        {m.username: m for m in members},
        matches,
        enrolled_policy=options.get("policy", EnrolledPolicy.DESKTOP),  # type: ignore[arg-type]
        already_done=options.get("done"),  # type: ignore[arg-type]
    )
    return {p.username: (p.action, p.outcome, p.reason) for p in planned}


def test_actions_per_member() -> None:
    members = [
        user("alice", "Alice@Corp.example"),
        user("bob", "bob@corp.example", active=False),
        user("carol", None),
        user("dave", "dave@corp.example"),
        user("erin", "erin@corp.example", enrolled=True),
        user("twin", "twin@corp.example"),
    ]
    matches = entra(
        {
            "alice@corp.example": [ALICE],
            "erin@corp.example": [ERIN],
            "twin@corp.example": [TWIN_A, TWIN_B],
        }
    )
    decided = decide(members, matches)
    assert decided["alice"] == (Action.START_ENROLLMENT, None, "")
    assert decided["bob"][1:] == (Outcome.SKIPPED, "disabled in Defguard")
    assert decided["carol"][1:] == (Outcome.SKIPPED, "no e-mail address in Defguard")
    assert (
        decided["dave"][:2] == (Action.NONE, Outcome.SKIPPED)
        and "no token issued" in decided["dave"][2]
    )
    assert decided["erin"][:2] == (Action.START_DESKTOP, None)
    assert (
        decided["twin"][:2] == (Action.NONE, Outcome.FAILED)
        and "ambiguous: 2" in decided["twin"][2]
    )


def test_enrolled_users_can_be_skipped() -> None:
    decided = decide(
        [user("erin", "alice@corp.example", enrolled=True)],
        entra({"alice@corp.example": [ALICE]}),
        policy=EnrolledPolicy.SKIP,
    )
    assert decided["erin"][:2] == (Action.NONE, Outcome.SKIPPED)


def test_an_address_on_two_objects_under_different_keys_is_ambiguous() -> None:
    """One object has it as mail, another in otherMails (a former address reused, an alias
    anyone could set): neither gets the member's token, and both are named."""
    matches = entra({"x@corp.example": [ALICE]}, other={"x@corp.example": [ALIAS]})
    planned = plan(
        ["x"], {"x": user("x", "x@corp.example")}, matches, enrolled_policy=EnrolledPolicy.DESKTOP
    )
    assert planned[0].directory_user is None and planned[0].outcome is Outcome.FAILED
    assert planned[0].reason.startswith("ambiguous: 2 directory objects answer to x@corp.example:")
    assert "id-alice (alice@corp.example) by mail" in planned[0].reason
    assert "id-alias (alias@corp.example) by otherMails" in planned[0].reason
    only_alias = entra({}, other={"x@corp.example": [ALIAS]})
    planned = plan(
        ["x"],
        {"x": user("x", "x@corp.example")},
        only_alias,
        enrolled_policy=EnrolledPolicy.DESKTOP,
    )
    assert planned[0].directory_user == ALIAS and planned[0].action is Action.START_ENROLLMENT


def test_resume_skips_done_members_and_duplicates_are_planned_once() -> None:
    members = ["alice", "alice", "ghost"]
    planned = plan(
        members,
        {"alice": user("alice", "alice@corp.example")},
        entra({"alice@corp.example": [ALICE]}),
        enrolled_policy=EnrolledPolicy.DESKTOP,
        already_done={"alice": "by the run in r.json"},
    )
    assert [(p.username, p.outcome) for p in planned] == [
        ("alice", Outcome.SKIPPED),
        ("ghost", Outcome.FAILED),
    ]
    assert summary(planned) == {"provisioned": 0, "skipped": 1, "failed": 1, "not_processed": 0}


def test_matching_by_account_name_needs_no_email() -> None:
    matches = Matches([("sAMAccountName", {"carol": [ALICE]})], key="username")
    planned = plan(
        ["Carol", "dan"],
        {"Carol": user("Carol", None), "dan": user("dan", None)},
        matches,
        enrolled_policy=EnrolledPolicy.DESKTOP,
    )
    assert planned[0].directory_user == ALICE and planned[0].action is Action.START_ENROLLMENT
    assert planned[1].outcome is Outcome.SKIPPED and "account name" in planned[1].reason


# --------------------------------------------------------------- one directory object, one member


def shared_object_reason(names: str, object_id: str, directory: str = "Entra ID") -> str:
    return (
        f"Defguard members {names} map to the same {directory} object {object_id}, which can "
        "hold one member's token: no token issued for them; remove the duplicate Defguard "
        "account or correct its e-mail address or username so each member maps to their own "
        "object"
    )


def test_addresses_differing_only_in_case_fail_both_members() -> None:
    """Entra matches case-insensitively: both would be written to alice's object, the second
    token replacing the first, and alice would enroll as whichever member was written last."""
    members = [user("alice", "alice@corp.example"), user("Alice2", "ALICE@corp.example")]
    decided = decide(members, entra({"alice@corp.example": [ALICE]}))
    reason = shared_object_reason("alice and Alice2", "id-alice")
    assert decided == {
        "alice": (Action.NONE, Outcome.FAILED, reason),
        "Alice2": (Action.NONE, Outcome.FAILED, reason),
    }


def test_account_names_differing_only_in_case_fail_both_members() -> None:
    """AD's sAMAccountName ignores case, so Defguard's JDoe2 and jdoe2 are one AD account."""
    dn = "CN=John Doe,OU=Staff,DC=corp,DC=example"
    account = DirectoryUser(dn, "jdoe2@corp.example", None)
    matches = Matches([("sAMAccountName", {"jdoe2": [account]})], key="username")
    planned = plan(
        ["JDoe2", "jdoe2", "other"],
        {n: user(n, None) for n in ("JDoe2", "jdoe2", "other")},
        matches,
        enrolled_policy=EnrolledPolicy.DESKTOP,
        directory_name="Active Directory",
    )
    reason = shared_object_reason("JDoe2 and jdoe2", dn, "Active Directory")
    assert [(p.username, p.action, p.outcome, p.reason) for p in planned[:2]] == [
        ("JDoe2", Action.NONE, Outcome.FAILED, reason),
        ("jdoe2", Action.NONE, Outcome.FAILED, reason),
    ]
    assert planned[0].directory_user == account  # the report names the object
    assert planned[2].outcome is Outcome.SKIPPED  # no account: unaffected


def test_an_alias_of_another_members_object_fails_both() -> None:
    """One member found by mail, another by otherMails of the same object: one person, two
    Defguard accounts; object ids compare ignoring case as Graph does."""
    upper = DirectoryUser("ID-ALICE", "alice@corp.example", None)
    members = [user("alice", "alice@corp.example"), user("old", "a.smith@old.example")]
    decided = decide(
        members,
        entra({"alice@corp.example": [ALICE]}, other={"a.smith@old.example": [upper]}),
    )
    assert {d[1] for d in decided.values()} == {Outcome.FAILED}
    assert decided["old"][2] == shared_object_reason("alice and old", "id-alice")


def test_a_skipped_member_sharing_the_object_still_fails_the_other() -> None:
    """An enrolled member skipped by policy still owns the object: the new member's token must
    not land on it, and the skipped one's mapping is just as wrong."""
    members = [
        user("erin", "erin@corp.example", enrolled=True),
        user("erin2", "Erin@Corp.example"),
        user("carl", "c@corp.example"),
        user("carl2", "C@corp.example"),
        user("carl3", "c@CORP.example"),
    ]
    carl = DirectoryUser("id-carl", "c@corp.example", "c@corp.example")
    decided = decide(
        members,
        entra({"erin@corp.example": [ERIN], "c@corp.example": [carl]}),
        policy=EnrolledPolicy.SKIP,
    )
    assert {name: d[:2] for name, d in decided.items()} == {
        name: (Action.NONE, Outcome.FAILED) for name in decided
    }
    assert decided["carl3"][2] == shared_object_reason("carl, carl2 and carl3", "id-carl")


def test_duplicate_member_names_in_the_group_are_not_a_shared_object() -> None:
    """A member listed twice is one member, planned once: nothing to refuse."""
    planned = plan(
        ["alice", "alice"],
        {"alice": user("alice", "alice@corp.example")},
        entra({"alice@corp.example": [ALICE]}),
        enrolled_policy=EnrolledPolicy.DESKTOP,
    )
    assert [(p.username, p.action, p.outcome) for p in planned] == [
        ("alice", Action.START_ENROLLMENT, None)
    ]


# ------------------------------------------------------------------- disabled directory accounts


def test_disabled_directory_accounts_are_skipped_unless_included() -> None:
    """A token on a disabled account is a credential its (former) holder should not get back."""
    disabled = DirectoryUser("id-off", "off@corp.example", "off@corp.example", enabled=False)
    members = [user("off", "off@corp.example"), user("alice", "alice@corp.example")]
    matches = entra({"off@corp.example": [disabled], "alice@corp.example": [ALICE]})
    decided = decide(members, matches)
    assert decided["off"] == (
        Action.NONE,
        Outcome.SKIPPED,
        "the Entra ID account is disabled; no token issued (pass "
        "--include-disabled-directory-users to provision disabled accounts too)",
    )
    assert decided["alice"][:2] == (Action.START_ENROLLMENT, None)
    included = plan(
        ["off"],
        {"off": members[0]},
        matches,
        enrolled_policy=EnrolledPolicy.DESKTOP,
        include_disabled=True,
    )
    assert (included[0].action, included[0].outcome) == (Action.START_ENROLLMENT, None)


def test_a_member_provisioned_earlier_still_protects_its_object() -> None:
    """Resuming after a second account for alice appeared: alice's stored token stays hers."""
    planned = plan(
        ["alice", "Alice2"],
        {
            "alice": user("alice", "alice@corp.example"),
            "Alice2": user("Alice2", "ALICE@corp.example"),
        },
        entra({"alice@corp.example": [ALICE]}),
        enrolled_policy=EnrolledPolicy.DESKTOP,
        already_done={"alice": "by the run in r.json"},
    )
    alice, other = planned
    assert (alice.outcome, alice.reason, alice.directory_user) == (
        Outcome.SKIPPED,
        "already provisioned (by the run in r.json)",
        ALICE,
    )
    assert (other.action, other.outcome) == (Action.NONE, Outcome.FAILED)
    assert other.reason == shared_object_reason("alice and Alice2", "id-alice")


# ------------------------------------------------------------------ case folding and guests


def test_only_ascii_case_is_folded_and_look_alikes_are_ambiguous() -> None:
    """The Kelvin sign (U+212A) lower-cases to k in Python: a member whose Defguard address holds
    it is refused, and so is a member whose address an object only resembles."""
    kelvin = "\u212aim@corp.example"
    lookalike = DirectoryUser("id-mallory", "mallory@corp.example", kelvin)
    kim = DirectoryUser("id-kim", "kim@corp.example", None)
    matches = Matches(
        [("mail", {}), ("userPrincipalName", {"kim@corp.example": [kim]}), ("otherMails", {})],
        confusable={"kim@corp.example": [("mail", lookalike)]},
    )
    members = [user("kim", "KIM@corp.example"), user("k2", kelvin)]
    planned = {
        p.username: p
        for p in plan(
            ["kim", "k2"],
            {m.username: m for m in members},
            matches,
            enrolled_policy=EnrolledPolicy.DESKTOP,
        )
    }
    assert planned["kim"].outcome is Outcome.FAILED and planned["kim"].directory_user is None
    assert "id-kim (kim@corp.example) by userPrincipalName" in planned["kim"].reason
    assert "id-mallory (mallory@corp.example) by mail look-alike" in planned["kim"].reason
    assert planned["k2"].outcome is Outcome.FAILED
    assert "(U+212A '\u212a' may read as 'k')" in planned["k2"].reason and planned[
        "k2"
    ].reason.startswith("ambiguous")
    assert [c.id for c in candidates(members[0], matches)] == ["id-kim", "id-mallory"]


def test_guests_are_skipped_unless_admitted() -> None:
    guest = DirectoryUser(
        "id-guest", "g_partner#EXT#@corp.example", "g@partner.example", guest=True
    )
    found = {"g@partner.example": [guest]}
    planned = plan(
        ["g"],
        {"g": user("g", "g@partner.example")},
        entra(found),
        enrolled_policy=EnrolledPolicy.DESKTOP,
    )
    assert planned[0].outcome is Outcome.SKIPPED and "--allow-guests" in planned[0].reason
    assert planned[0].directory_user == guest  # still theirs: no other member may take it
    admitted = dataclasses.replace(entra(found), admit_guests=True)
    planned = plan(
        ["g"],
        {"g": user("g", "g@partner.example")},
        admitted,
        enrolled_policy=EnrolledPolicy.DESKTOP,
    )
    assert planned[0].action is Action.START_ENROLLMENT
