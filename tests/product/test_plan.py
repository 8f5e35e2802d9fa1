"""The decision rules of generate-tokens, without any network."""

from __future__ import annotations

from dgprov.defguard import DefguardUser
from dgprov.directory import DirectoryUser, Matches, unmatched
from dgprov.plan import Action, EnrolledPolicy, Outcome, plan, summary

ALICE = DirectoryUser("id-alice", "alice@corp.example", "alice@corp.example")
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
        user("erin", "alice@corp.example", enrolled=True),
        user("twin", "twin@corp.example"),
    ]
    matches = entra({"alice@corp.example": [ALICE], "twin@corp.example": [TWIN_A, TWIN_B]})
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


def test_earlier_stage_wins_over_aliases() -> None:
    matches = entra({"x@corp.example": [ALICE]}, other={"x@corp.example": [ALIAS]})
    planned = plan(
        ["x"], {"x": user("x", "x@corp.example")}, matches, enrolled_policy=EnrolledPolicy.DESKTOP
    )
    assert planned[0].directory_user == ALICE
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
    assert summary(planned) == {"provisioned": 0, "skipped": 1, "failed": 1}


def test_unmatched_keeps_only_addresses_no_stage_found() -> None:
    assert unmatched(["a", "b", "c"], {"a": [ALICE]}, {"b": []}) == ["b", "c"]


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
