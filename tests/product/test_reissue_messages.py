"""When an end user's token is missing or has expired, fetch-config and enroll name the re-issue
for that one member (``--member``), never a run over the whole group: the real CLI against the
sandbox and a real slapd."""

from __future__ import annotations

import json
from pathlib import Path

from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import StartSandbox, graph_client, sign_in
from ..slapd import Slapd, slapd
from .test_enroll import enroll, provisioning_file, tenant
from .test_fetch_config import ad_fetch, fetch, provision

__all__ = ["slapd"]

PAST = "2020-01-01T00:00:00Z"
TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
CSA_TYPE = "#Microsoft.DirectoryServices.CustomSecurityAttributeValue"


def error_line(output: str) -> str:
    return next(line for line in output.splitlines() if ": error: " in line)


def test_enroll_with_an_expired_token_names_the_re_issue_for_one_member(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(tenant())
    provisioning_file(tmp_path, running, running.issue("jdoe", token_expiration_time="1h"))
    running.advance_clock(3601)
    result = enroll(tmp_path)
    assert result.exit_code == 1
    line = error_line(result.output)
    assert line.startswith("dgprov enroll: error: the enrollment token has expired; ")
    assert "dgprov generate-tokens --member <your username> (or sync --member …)" in line
    assert len(line) < 200


def test_fetch_config_from_ad_names_the_member(slapd: Slapd, tmp_path: Path) -> None:
    slapd.add_user("John Doe", "jdoe", "jdoe@corp.example")
    missing = ad_fetch(slapd, tmp_path, "jdoe")
    assert missing.exit_code == 1
    line = error_line(missing.output)
    assert line.startswith("dgprov fetch-config: error: jdoe has no value in")
    assert "dgprov generate-tokens --directory ad --member jdoe (or sync --member jdoe)" in line
    assert len(line) < 200

    value = {
        "enrollmentUrl": "https://e.corp.example/",
        "enrollmentToken": TOKEN,
        "expiresAt": PAST,
    }
    slapd.add_user(
        "Ann Old", "aold", "aold@corp.example", defguardProvisioningConfig=json.dumps(value)
    )
    expired = ad_fetch(slapd, tmp_path, "aold")
    assert expired.exit_code == 0, expired.output  # written all the same: clocks differ
    assert (
        f"warning: the stored enrollment token expired at {PAST}; ask your administrator for "
        "one: dgprov generate-tokens --directory ad --member aold (or sync --member aold)"
    ) in expired.output
    assert TOKEN not in expired.output


def test_fetch_config_from_entra_names_the_re_issue(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    running = start_sandbox(synthetic_tenant(3, 21))
    provision(running, tmp_path)
    upn = running.info["user_upns"][0]  # holds Attribute Assignment Reader
    admin = graph_client(running.info, sign_in(running, running.info["admin_upn"]))

    def assign(**values: str | None) -> None:
        body = {"customSecurityAttributes": {"Defguard": {"@odata.type": CSA_TYPE, **values}}}
        assert admin.patch(f"/users/{upn}", json=body).status_code == 204

    assign(EnrollmentTokenExpiresAt="2999-01-01T00:00:00Z")
    valid = fetch(running, tmp_path, upn, "--output", str(tmp_path / "o.json"))
    assert valid.exit_code == 0 and "expired" not in valid.output

    assign(EnrollmentTokenExpiresAt=PAST)
    expired = fetch(running, tmp_path, upn, "--output", str(tmp_path / "p.json"))
    assert expired.exit_code == 0, expired.output
    assert f"warning: the stored enrollment token expired at {PAST}; ask your" in expired.output
    assert "dgprov generate-tokens --member <your username> (or sync --member …)" in (
        expired.output
    )

    assign(EnrollmentToken=None)
    missing = fetch(running, tmp_path, upn, "--output", str(tmp_path / "q.json"))
    assert missing.exit_code == 1
    line = error_line(missing.output)
    assert f"{upn} has no enrollment token in the set 'Defguard'; ask your administrator" in line
    assert "--member <your username>" in line and len(line) < 200
