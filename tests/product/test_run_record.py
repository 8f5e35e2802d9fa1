"""The run record a ``generate_tokens`` call returns, as a library caller sees it."""

from __future__ import annotations

from dgprov.api import RunRecord
from dgprov.directory import DirectoryUser
from dgprov.plan import Action, Outcome, PlannedMember


def test_repr_stays_short_whatever_the_number_of_members() -> None:
    """asyncio formats the finished main task (its result included) when ``asyncio.run``
    restores the SIGINT handler; a repr that grew with the members was a run's memory peak."""
    members = [
        PlannedMember(
            f"user{index:06d}",
            f"user{index:06d}@corp.example",
            Action.START_ENROLLMENT,
            DirectoryUser(f"id-{index:06d}", f"user{index:06d}@corp.example", None),
            Outcome.PROVISIONED,
        )
        for index in range(10_000)
    ]
    record = RunRecord(members=members, run={"group": "vpn-users"})

    text = repr(record)

    assert len(text) < 300
    assert "members=10000" in text
    assert "'provisioned': 10000" in text
    assert "user000001" not in text
