"""The README's "Moving from generate-tokens to sync", run as written: which first sync keeps
the tokens generate-tokens handed out, and which replaces them."""

from __future__ import annotations

from pathlib import Path

from ..conftest import Running, StartSandbox, graph_client, sign_in
from .test_sync import MEMBERS, Sync, rows, stored, tenant, token_hashes

LIFETIME_SECONDS = 24 * 3600
CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"


def test_a_first_sync_with_a_new_state_file_keeps_the_handed_out_tokens(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    jobs = Sync(running, tmp_path)
    assert jobs(command="generate-tokens").exit_code == 0
    handed_out = {name: stored(running, name)["EnrollmentToken"] for name in MEMBERS[:4]}
    issued = token_hashes(running)
    state = str(tmp_path / "state.json")
    first = jobs.report("--state", state)
    assert rows(first) == {name: ("keep", "kept") for name in MEMBERS[:4]}
    assert token_hashes(running) == issued  # nothing issued, so nothing deleted in Defguard
    assert {name: stored(running, name)["EnrollmentToken"] for name in MEMBERS[:4]} == handed_out
    running.advance_clock(LIFETIME_SECONDS + 60)  # one lifetime after that first sync
    later = jobs.report("--state", state)
    assert {decision for decision, _ in rows(later).values()} == {"renew"}


def test_a_first_sync_keeping_expiries_in_the_directory_renews_undated_values_once(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """What the README warns about: no --state, and values with no expiry beside them (stored
    by an earlier dgprov or by Defguard's own scripts): each is renewed once."""
    running = start_sandbox(tenant())
    jobs = Sync(running, tmp_path)
    assert jobs(command="generate-tokens").exit_code == 0
    undate(running, MEMBERS[:4])
    first = jobs.report()
    assert rows(first) == {name: ("renew", "provisioned") for name in MEMBERS[:4]}
    second = jobs.report()
    assert rows(second) == {name: ("keep", "kept") for name in MEMBERS[:4]}


def test_a_first_sync_keeps_what_this_generate_tokens_stored(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """generate-tokens stores each token's expiry beside it, so moving to sync costs nothing."""
    running = start_sandbox(tenant())
    jobs = Sync(running, tmp_path)
    assert jobs(command="generate-tokens").exit_code == 0
    issued = token_hashes(running)
    assert rows(jobs.report()) == {name: ("keep", "kept") for name in MEMBERS[:4]}
    assert token_hashes(running) == issued


def undate(running: Running, usernames: list[str]) -> None:
    """Remove the stored expiry, as values written before generate-tokens stored one have it."""
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))
    body = {
        "customSecurityAttributes": {
            "Defguard": {"@odata.type": CSA_TYPE, "EnrollmentTokenExpiresAt": None}
        }
    }
    for username in usernames:
        upn = next(u for u in running.info["user_upns"] if u.startswith(f"{username}@"))
        assert admin.patch(f"/users/{upn}", json=body).status_code == 204
