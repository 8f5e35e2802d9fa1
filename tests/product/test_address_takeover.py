"""One member's token must never reach another person through an address (issue 20, findings 3
and 4), in ``generate-tokens``, ``sync`` and the broker, against the sandbox.

The takeovers: an Entra account whose ``mail`` is another member's address (reused after staff
turnover, or set by anyone who may set ``mail``), one whose ``otherMails`` holds it, one whose
``mail`` spells it with the Kelvin sign (U+212A, which ``str.lower()`` turns into ``k``), and
guest accounts. Each is refused with both objects named to the administrator, and nothing is
stored on either object.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..broker_fixtures import broker_process, broker_token
from ..conftest import Running, StartSandbox, example_tenant
from .test_generate_tokens import Invoker, report_rows, stored_attributes, token_hashes
from .test_sync import Sync

KELVIN = "\u212a"
MALLORY = "a0000000-0000-4000-8000-0000000000f1"
MALLORY_UPN = "mallory@contoso.example"


def with_mallory(**entra: Any) -> dict[str, Any]:
    """The example tenant plus Mallory, an Entra account of no Defguard member."""
    tenant = example_tenant()
    tenant["users"].append(
        {
            "username": None,
            "first_name": "Mallory",
            "last_name": "M",
            "entra": {"object_id": MALLORY, "user_principal_name": MALLORY_UPN, **entra},
        }
    )
    return tenant


def entra_of(tenant: dict[str, Any], username: str) -> dict[str, Any]:
    spec: dict[str, Any] = next(u for u in tenant["users"] if u["username"] == username)["entra"]
    return spec


def kim_and_kelvin() -> dict[str, Any]:
    """kim's Entra account has her address as UPN only; Mallory spells it with the Kelvin sign."""
    tenant = with_mallory(mail=f"{KELVIN}im@contoso.example")
    tenant["users"].append(
        {
            "username": "kim",
            "first_name": "Kim",
            "last_name": "K",
            "email": "kim@contoso.example",
            "entra": {
                "object_id": "a0000000-0000-4000-8000-0000000000f2",
                "user_principal_name": "kim@contoso.example",
                "mail": None,
            },
        }
    )
    next(g for g in tenant["groups"] if g["name"] == "vpn-users")["members"].append("kim")
    return tenant


def reused_mail() -> dict[str, Any]:
    """mlopez's Defguard address is her former one, kept in her otherMails; Mallory got it as
    her mail."""
    return with_mallory(mail="maria.lopez@old-contoso.example")


def alias_in_other_mails() -> dict[str, Any]:
    """Mallory lists jdoe's address among her otherMails."""
    return with_mallory(mail=MALLORY_UPN, other_mails=["jdoe@contoso.example"])


CASES: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    # case: (tenant, member, the member's own object id)
    "kelvin sign": (kim_and_kelvin, "kim", "a0000000-0000-4000-8000-0000000000f2"),
    "reused mail": (reused_mail, "mlopez", "a0000000-0000-4000-8000-000000000004"),
    "alias in otherMails": (alias_in_other_mails, "jdoe", "a0000000-0000-4000-8000-000000000002"),
}


def upn_of(tenant: dict[str, Any], object_id: str) -> str:
    return str(
        next(
            u["entra"]["user_principal_name"]
            for u in tenant["users"]
            if u.get("entra") and u["entra"]["object_id"] == object_id
        )
    )


def holds_nothing(running: Running, *upns: str) -> None:
    for upn in upns:
        assert "Defguard" not in (stored_attributes(running, upn) or {}), upn


@pytest.fixture
def invoke(tmp_path: Path) -> Invoker:
    return Invoker(tmp_path / "cache")


@pytest.mark.parametrize("case", list(CASES))
def test_generate_tokens_gives_neither_object_the_token(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path, case: str
) -> None:
    make, member, own = CASES[case]
    tenant = make()
    running = start_sandbox(tenant)
    report = tmp_path / "r.json"
    result = invoke(running, "--report", str(report))
    assert result.exit_code == 1, result.output
    row = report_rows(report)[member]
    assert (row["action"], row["outcome"]) == ("none", "failed"), row
    assert row["reason"].startswith("ambiguous: 2 directory objects answer to")
    for object_id in (own, MALLORY):
        assert object_id in row["reason"] and object_id in result.output
    assert member not in token_hashes(running)
    holds_nothing(running, MALLORY_UPN, upn_of(tenant, own))
    assert report_rows(report)["obrien"]["outcome"] == "provisioned"


@pytest.mark.parametrize("case", ["kelvin sign", "reused mail"])
def test_sync_gives_neither_object_the_token(
    start_sandbox: StartSandbox, tmp_path: Path, case: str
) -> None:
    """sync matches from its one listing of the tenant, not from lookups: the same rule."""
    make, member, own = CASES[case]
    tenant = make()
    running = start_sandbox(tenant)
    path = tmp_path / "sync.json"
    result = Sync(running, tmp_path)("--report", str(path))
    assert result.exit_code == 1, result.output
    rows = {r["username"]: r for r in json.loads(path.read_text())["members"]}
    assert rows[member]["outcome"] == "failed", rows[member]
    assert rows[member]["reason"].startswith("ambiguous: 2 directory objects answer to")
    assert own in rows[member]["reason"] and MALLORY in rows[member]["reason"]
    assert member not in token_hashes(running)
    holds_nothing(running, MALLORY_UPN, upn_of(tenant, own))
    assert rows["obrien"]["outcome"] == "provisioned"


@pytest.mark.parametrize(
    ("make", "member"),
    [(kim_and_kelvin, "kim"), (reused_mail, "mlopez")],
    ids=["kelvin sign", "reused mail"],
)
def test_the_broker_hands_mallory_no_token_and_names_no_account_to_her(
    start_sandbox: StartSandbox, make: Callable[[], dict[str, Any]], member: str
) -> None:
    running = start_sandbox(make())
    with broker_process(running) as broker:
        response = broker.post(broker_token(running, MALLORY_UPN))
        assert (response.status_code, response.json()["error"]) == (409, "ambiguous")
        message = response.json()["message"]
        assert member not in message and "@" not in message  # nobody's account or address
        (line,) = [a for a in broker.audit_lines() if a["status"] == 409]
        assert line["detail"] and member in line["detail"]
    assert running.tokens(member) == []
    assert not any("start" in route for route in running.sandbox.core_requests)


# ---------------------------------------------------------------------------------- guests


def guest_tenant() -> dict[str, Any]:
    tenant = example_tenant()
    entra_of(tenant, "jdoe")["user_type"] = "Guest"
    return tenant


def test_guests_get_no_token_unless_admitted(
    start_sandbox: StartSandbox, invoke: Invoker, tmp_path: Path
) -> None:
    running = start_sandbox(guest_tenant())
    report = tmp_path / "r.json"
    invoke(running, "--report", str(report))
    row = report_rows(report)["jdoe"]
    assert row["outcome"] == "skipped" and "guest (userType Guest)" in row["reason"]
    assert "--allow-guests" in row["reason"]
    assert "jdoe" not in token_hashes(running)
    holds_nothing(running, "jdoe@contoso.example")
    admitted = tmp_path / "admitted.json"
    invoke(running, "--allow-guests", "--report", str(admitted))
    assert report_rows(admitted)["jdoe"]["outcome"] == "provisioned"
    assert "jdoe" in token_hashes(running)


def test_sync_skips_guests_unless_admitted(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    """sync reads userType from its one listing of the tenant."""
    running = start_sandbox(guest_tenant())
    sync = Sync(running, tmp_path)
    report = tmp_path / "s.json"
    sync("--report", str(report))
    row = {r["username"]: r for r in json.loads(report.read_text())["members"]}["jdoe"]
    assert row["outcome"] == "skipped" and "--allow-guests" in row["reason"]
    assert "jdoe" not in token_hashes(running)
    admitted = tmp_path / "admitted.json"
    sync("--allow-guests", "--report", str(admitted))
    rows = {r["username"]: r for r in json.loads(admitted.read_text())["members"]}
    assert rows["jdoe"]["outcome"] == "provisioned"
    assert "jdoe" in token_hashes(running)


def test_the_broker_refuses_guests_unless_admitted(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(guest_tenant())
    token = broker_token(running, "jdoe@contoso.example")
    with broker_process(running) as broker:
        response = broker.post(token)
        assert (response.status_code, response.json()["error"]) == (403, "guest_account")
    assert running.tokens("jdoe") == []
    with broker_process(running, "--allow-guests") as broker:
        assert broker.post(token).status_code == 200
    assert len(running.tokens("jdoe")) == 1


JDOE = "a0000000-0000-4000-8000-000000000002"


def lower_case_guest(start_sandbox: StartSandbox) -> Running:
    """jdoe's Entra account is a guest whose userType reads ``guest``: Graph documents Member
    and Guest, but the value is a free string to a reader, and case says nothing about who
    someone is."""
    running = start_sandbox(example_tenant())
    assert running.sandbox.entra is not None
    running.sandbox.entra.users[JDOE].user_type = "guest"
    return running


def test_sync_skips_a_guest_whatever_the_case_of_its_user_type(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = lower_case_guest(start_sandbox)
    report = tmp_path / "s.json"
    Sync(running, tmp_path)("--report", str(report))
    row = {r["username"]: r for r in json.loads(report.read_text())["members"]}["jdoe"]
    assert row["outcome"] == "skipped" and "--allow-guests" in row["reason"], row
    assert "jdoe" not in token_hashes(running)
    holds_nothing(running, "jdoe@contoso.example")


def test_the_broker_refuses_a_guest_whatever_the_case_of_its_user_type(
    start_sandbox: StartSandbox,
) -> None:
    running = lower_case_guest(start_sandbox)
    token = broker_token(running, "jdoe@contoso.example")
    with broker_process(running) as broker:
        response = broker.post(token)
        assert (response.status_code, response.json()["error"]) == (403, "guest_account")
    assert running.tokens("jdoe") == []


def test_an_address_refused_for_a_character_that_folds_into_ascii_says_which_and_into_what(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """``ß`` may become ``ss`` (U+0130, U+0131 and U+017F also reach ASCII): a directory may take
    such an address for the plain one, so it is refused even where no account holds that plain
    address; the reason names the character and what it may become, so the administrator sees
    why a rare but genuine address is refused."""
    tenant = example_tenant()
    tenant["users"].append(
        {
            "username": "gross",
            "first_name": "Greta",
            "last_name": "Groß",
            "email": "groß@contoso.example",
            "entra": {
                "object_id": "a0000000-0000-4000-8000-0000000000f3",
                "user_principal_name": "greta@contoso.example",
                "mail": "groß@contoso.example",
            },
        }
    )
    next(g for g in tenant["groups"] if g["name"] == "vpn-users")["members"].append("gross")
    running = start_sandbox(tenant)
    report = tmp_path / "s.json"
    Sync(running, tmp_path)("--report", str(report))
    row = {r["username"]: r for r in json.loads(report.read_text())["members"]}["gross"]
    assert row["outcome"] == "failed" and row["reason"].startswith("ambiguous"), row
    assert "U+00DF 'ß' may read as 'ss'" in row["reason"], row["reason"]
    assert "gross" not in token_hashes(running)
