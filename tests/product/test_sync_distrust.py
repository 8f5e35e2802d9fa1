"""Values sync must not keep on their own say (Entra): an expiry later than sync writes, a URL
that is not the one Defguard hands out, a URL the client would refuse, and ``unknown`` (what
earlier versions stored beside a desktop token) on a member Defguard shows as never enrolled.
Each is renewed by the next run; the others' tokens are kept."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from dgprov.stored_value import token_digest

from ..conftest import Running, StartSandbox, graph_client, sign_in
from .test_sync import (
    HOUR,
    PASSWORD,
    U1,
    U2,
    U3,
    U4,
    Sync,
    rows,
    sha,
    stored,
    tenant,
    token_hashes,
)

CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"


def plant(running: Running, username: str, **values: str) -> None:
    """Change a member's values as anyone allowed to assign the attributes can, through Graph."""
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    body = {"customSecurityAttributes": {"Defguard": {"@odata.type": CSA_TYPE, **values}}}
    response = admin.patch(f"/users/{username}@example.com", json=body)
    assert response.status_code == 204, response.text


def test_planted_values_are_renewed(start_sandbox: StartSandbox, line: str, tmp_path: Path) -> None:
    running = start_sandbox(tenant(), line=line)
    sync = Sync(running, tmp_path)
    # 2.0 shows its public proxy URL in its settings; 1.6 shows none: the option states it.
    extra = ["--enrollment-url", running.info["proxy_url"]] if line == "1.6" else []
    assert rows(sync.report(*extra)) == {n: ("issue", "provisioned") for n in [U1, U2, U3, U4]}
    plant(running, U1, EnrollmentTokenExpiresAt="9999-12-31T23:59:59Z")
    plant(running, U2, EnrollmentUrl="https://enroll.attacker.example/")
    plant(running, U3, EnrollmentUrl="javascript:alert(1)")
    plant(running, U4, EnrollmentTokenExpiresAt="unknown")  # U4 never enrolled
    before = token_hashes(running)

    report = sync.report(*extra)
    assert rows(report) == {n: ("renew", "provisioned") for n in [U1, U2, U3, U4]}
    reasons = {r["username"]: r["reason"] for r in report["members"]}
    assert "not trusted" in reasons[U1] and "not the one Defguard hands out" in reasons[U2]
    assert "desktop client accepts" in reasons[U3] and "not enrolled" in reasons[U4]
    after = token_hashes(running)
    for name in (U1, U2, U3, U4):
        values = stored(running, name)
        assert after[name] != before[name] and sha(values["EnrollmentToken"]) in after[name]
        assert values["EnrollmentUrl"].rstrip("/") == running.info["proxy_url"]
        assert values["EnrollmentTokenExpiresAt"] < "9999"
    assert rows(sync.report(*extra)) == {n: ("keep", "kept") for n in [U1, U2, U3, U4]}


def test_an_unknown_expiry_state_recorded_is_aged_from_when_first_seen(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """A state file of an earlier version says ``unknown`` (a desktop token, no issue time) for
    an enrolled member without a device: kept while it may be valid, renewed once it is older
    than the server's default lifetime. The same on a member Defguard shows as never enrolled,
    who never gets a desktop token, is not trusted: renewed at once."""
    document = with_enrolled({U1: 0})
    attribute_set = document["entra"]["attribute_sets"][0]
    attribute_set["attributes"] = attribute_set["attributes"][:2]
    running = start_sandbox(document)
    sync = Sync(running, tmp_path)
    state = tmp_path / "state.json"
    assert sync("--state", str(state)).exit_code == 0
    recorded: dict[str, Any] = json.loads(state.read_text())
    earlier = {token_digest(stored(running, name)["EnrollmentToken"]).hex() for name in (U1, U2)}
    for entry in recorded["objects"]:
        if entry["token_sha256_128"] in earlier:
            entry["expires_at"] = "unknown"  # as the earlier version wrote it
    state.write_text(json.dumps(recorded))
    state.chmod(0o600)
    issued = token_hashes(running)

    first = sync.report("--state", str(state))
    assert rows(first)[U1] == ("keep", "kept") and rows(first)[U2] == ("renew", "provisioned")
    assert "not enrolled" in next(r["reason"] for r in first["members"] if r["username"] == U2)
    running.advance_clock(20 * HOUR)  # 20 hours after U1's was first seen
    assert rows(sync.report("--state", str(state)))[U1] == ("keep", "kept")
    assert token_hashes(running)[U1] == issued[U1]
    running.advance_clock(5 * HOUR)  # 25h since first seen, past the default 24h
    assert rows(sync.report("--state", str(state)))[U1] == ("renew", "provisioned")
    assert token_hashes(running)[U1] != issued[U1]


# ------------------------------------------------------- second review (R1, R2, R3 of issue 20)

EVIL_URL = "https://enroll.attacker.example/"


def with_enrolled(
    devices: dict[str, int], document: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``tenant()`` with these members enrolled (a password set), each with that many devices."""
    document = document or tenant()
    for spec in document["users"]:
        count = devices.get(spec["username"])
        if count is None:
            continue
        spec["password"] = PASSWORD
        spec["devices"] = [
            {"name": f"{spec['username']}-{n}", "pubkey": wireguard_key(spec["username"], n)}
            for n in range(count)
        ]
    return document


def wireguard_key(username: str, n: int) -> str:
    return base64.b64encode(hashlib.sha256(f"{username}/{n}".encode()).digest()).decode()


def test_an_earlier_versions_unknown_expiry_is_renewed_once(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """``unknown`` beside the token of an enrolled member without a device (what an earlier
    dgprov stored beside a start_desktop token, or a planted value), without --state: how long
    that token lasts cannot be known, so it is replaced, once, by one whose issue time is
    stored; before, it was kept until the member used it, that is forever once it expired."""
    running = start_sandbox(with_enrolled({U1: 0}))
    sync = Sync(running, tmp_path)
    assert rows(sync.report())[U1] == ("issue", "provisioned")
    plant(running, U1, EnrollmentTokenExpiresAt="unknown")
    issued = token_hashes(running)[U1]

    report = sync.report()
    assert rows(report)[U1] == ("renew", "provisioned")
    reason = next(r["reason"] for r in report["members"] if r["username"] == U1)
    assert "'unknown'" in reason and "replaced once" in reason
    (token,) = running.tokens(U1)
    assert token["issued_by"] == "start_desktop" and token["token_sha256"] not in issued
    assert stored(running, U1)["EnrollmentTokenExpiresAt"].startswith("start_desktop issued ")
    assert rows(sync.report())[U1] == ("keep", "kept")  # once: now its issue time is known


def test_a_desktop_issue_time_on_a_member_who_never_enrolled_is_not_trusted(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """sync gives a start_desktop token only to an enrolled member: such an issue time beside
    the token of a member Defguard shows as never enrolled was not written by sync."""
    running = start_sandbox(tenant())
    sync = Sync(running, tmp_path)
    first = sync.report()
    assert rows(first)[U1] == ("issue", "provisioned")
    (token,) = running.tokens(U1)
    issued_at = str(token["created_at"])  # the sandbox's clock, ISO 8601
    plant(running, U1, EnrollmentTokenExpiresAt=f"start_desktop issued {issued_at[:19]}Z")
    running.advance_clock(HOUR)  # within the lifetime of either kind
    issued = token_hashes(running)

    report = sync.report()
    assert rows(report)[U1] == ("renew", "provisioned") and rows(report)[U2] == ("keep", "kept")
    reason = next(r["reason"] for r in report["members"] if r["username"] == U1)
    assert "not enrolled" in reason and "not trusted" in reason
    assert token_hashes(running)[U1] != issued[U1] and token_hashes(running)[U2] == issued[U2]


def test_state_never_adopts_a_value_pointing_elsewhere(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """--state keeps a value it has no record of as if issued now (a stopped run's token), but
    not one whose URL is not the one Defguard hands out: that is renewed, by every run."""
    document = tenant()
    attribute_set = document["entra"]["attribute_sets"][0]
    attribute_set["attributes"] = attribute_set["attributes"][:2]
    running = start_sandbox(document)
    sync = Sync(running, tmp_path)
    state = str(tmp_path / "state.json")
    assert set(rows(sync.report("--state", state)).values()) == {("issue", "provisioned")}
    plant(running, U1, EnrollmentUrl=EVIL_URL, EnrollmentToken="planted-token-1")
    plant(running, U2, EnrollmentToken="planted-token-2")  # Defguard's URL: adopted

    report = sync.report("--state", state)
    assert rows(report)[U1] == ("renew", "provisioned")
    reasons = {r["username"]: r["reason"] for r in report["members"]}
    assert "not the one Defguard hands out" in reasons[U1]
    assert rows(report)[U2] == ("keep", "kept") and "no record" in reasons[U2]
    assert stored(running, U1)["EnrollmentUrl"].rstrip("/") == running.info["proxy_url"]
    assert sha(stored(running, U1)["EnrollmentToken"]) in token_hashes(running)[U1]


def test_a_foreign_value_on_a_member_with_a_device_is_left_alone_only_if_usable(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """A member with a device gets no token from sync; a value sync did not write on their
    object is left alone (an administrator's desktop token for a second device?) unless it
    points elsewhere than Defguard's enrollment URL or the client would refuse it: then it is
    a stale value nobody needs, and it is removed."""
    running = start_sandbox(with_enrolled({U1: 1, U2: 1, U3: 1}))
    plant(running, U1, EnrollmentUrl=EVIL_URL, EnrollmentToken="foreign-token-1")
    plant(running, U2, EnrollmentUrl=running.info["proxy_url"], EnrollmentToken="foreign-2")
    plant(running, U3, EnrollmentUrl="javascript:alert(1)", EnrollmentToken="foreign-token-3")
    sync = Sync(running, tmp_path)

    report = sync.report()
    got = rows(report)
    reasons = {r["username"]: r["reason"] for r in report["members"]}
    assert got[U1] == ("clear", "cleared") and "not the one Defguard hands out" in reasons[U1]
    assert got[U3] == ("clear", "cleared") and "desktop client accepts" in reasons[U3]
    assert got[U2] == ("skip", "skipped") and "left alone" in reasons[U2]
    assert "EnrollmentToken" not in stored(running, U1)
    assert "EnrollmentToken" not in stored(running, U3)
    assert stored(running, U2)["EnrollmentToken"] == "foreign-2"
    assert not {U1, U2, U3} & set(token_hashes(running))  # no token issued to any of them
    assert rows(sync.report())[U2] == ("skip", "skipped")


def test_a_run_with_no_enrollment_url_to_compare_with_says_so(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """Defguard 1.6 shows no enrollment URL: without --enrollment-url no stored URL can be
    compared with it, and the run says so once, naming the option."""
    running = start_sandbox(tenant(), line="1.6")
    sync = Sync(running, tmp_path)
    result = sync()
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "--enrollment-url" in line]
    assert len(said) == 1 and "not compared" in said[0], result.output
    stated = sync("--enrollment-url", running.info["proxy_url"])
    assert stated.exit_code == 0 and "--enrollment-url" not in stated.output, stated.output
