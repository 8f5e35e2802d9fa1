"""Values sync must not keep on their own say (Entra): an expiry later than sync writes, a URL
that is not the one Defguard hands out, a URL the client would refuse, and ``unknown`` (what
earlier versions stored beside a desktop token) on a member Defguard shows as never enrolled.
Each is renewed by the next run; the others' tokens are kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dgprov.stored_value import token_digest

from ..conftest import Running, StartSandbox, graph_client, sign_in
from .test_sync import HOUR, U1, U2, U3, U4, Sync, rows, sha, stored, tenant, token_hashes

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
    a member Defguard shows as never enrolled: kept while it may be valid, renewed once it is
    older than the server's default lifetime."""
    document = tenant()
    attribute_set = document["entra"]["attribute_sets"][0]
    attribute_set["attributes"] = attribute_set["attributes"][:2]
    running = start_sandbox(document)
    sync = Sync(running, tmp_path)
    state = tmp_path / "state.json"
    assert sync("--state", str(state)).exit_code == 0
    recorded: dict[str, Any] = json.loads(state.read_text())
    token = stored(running, U1)["EnrollmentToken"]
    for entry in recorded["objects"]:
        if entry["token_sha256_128"] == token_digest(token).hex():
            entry["expires_at"] = "unknown"  # as the earlier version wrote it
    state.write_text(json.dumps(recorded))
    state.chmod(0o600)
    issued = token_hashes(running)[U1]

    for hours in (0, 20):  # first seen now, then 20 hours later
        running.advance_clock(hours * HOUR)
        assert rows(sync.report("--state", str(state)))[U1] == ("keep", "kept")
    assert token_hashes(running)[U1] == issued
    running.advance_clock(5 * HOUR)  # 25h since first seen, past the default 24h
    assert rows(sync.report("--state", str(state)))[U1] == ("renew", "provisioned")
    assert token_hashes(running)[U1] != issued
