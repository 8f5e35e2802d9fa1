"""``dgprov generate-tokens --directory ad`` against a real slapd and the Defguard sandbox."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import ldap3
import pytest
from click.testing import CliRunner, Result

from dgprov.cli import main

from .. import slapd as slapd_module
from ..conftest import Running, StartSandbox, example_tenant
from ..slapd import (
    PROVISIONER_DN,
    PROVISIONER_PASSWORD,
    READER_DN,
    READER_PASSWORD,
    USERS_DN,
    Slapd,
    slapd,
)

__all__ = ["slapd"]  # the fixture


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def run(
    running: Running,
    server: Slapd,
    *extra: str,
    command: str = "generate-tokens",
    bind_dn: str = PROVISIONER_DN,
    password: str = PROVISIONER_PASSWORD,
    attribute: str = "defguardProvisioningConfig",
) -> Result:
    """``command --directory ad`` in-process against ``server``, bound as ``bind_dn``."""
    args = [
        command,
        "--url", running.info["defguard_url"],
        "--group-name", "vpn-users",
        "--directory", "ad",
        "--ldap-url", server.url,
        "--base-dn", USERS_DN,
        "--ad-attribute", attribute,
        "--bind-dn", bind_dn,
        "--yes",
        *extra,
    ]  # fmt: skip
    env = {"DEFGUARD_API_TOKEN": running.info["api_token"], "DGPROV_BIND_PASSWORD": password}
    return CliRunner().invoke(main, args, env=env)


def populate(server: Slapd) -> dict[str, str]:
    """AD accounts for the example tenant's members (no 'ghost'), keyed by username."""
    return {
        "jdoe": server.add_user("John Doe", "jdoe", "jdoe@contoso.example"),
        "obrien": server.add_user(
            "Siobhan OBrien", "obrien", "siobhan.o'brien+vpn@contoso.example"
        ),
        "mlopez": server.add_user("Maria Lopez", "mlopez", "maria.lopez@old-contoso.example"),
        "twin": server.add_user("Tess Twin", "twin", "shared@contoso.example"),
        "nomail": server.add_user("Nora Nomail", "nomail"),
        "pfetch": server.add_user("Paula Prefetched", "pfetch", "paula@contoso.example"),
        "enrolled": server.add_user("Ed Enrolled", "enrolled", "ed@contoso.example"),
        "ldapuser": server.add_user("Lee Ldap", "ldapuser", "lee@contoso.example"),
    }


def tokens(running: Running) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for token in running.anonymous.get("/_sandbox/tokens").json()["tokens"]:
        found.setdefault(token["username"], set()).add(token["token_sha256"])
    return found


def with_member(user: dict[str, Any]) -> dict[str, Any]:
    """The example tenant with one more Defguard user, a member of vpn-users."""
    tenant = example_tenant()
    tenant["users"].append(user)
    tenant["groups"][1]["members"].append(user["username"])
    return tenant


def report_rows(path: Path) -> dict[str, dict[str, Any]]:
    return {r["username"]: r for r in json.loads(path.read_text())["members"]}


def test_flow_by_account_name(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path, line: str
) -> None:
    running = start_sandbox(example_tenant(), line)
    dns = populate(slapd)
    report = tmp_path / "r.json"
    result = run(running, slapd, "--report", str(report))
    assert result.exit_code == 0, result.output
    rows = report_rows(report)
    outcomes = {name: (row["action"], row["outcome"]) for name, row in rows.items()}
    assert outcomes["ghost"] == ("none", "skipped") and "account name" in rows["ghost"]["reason"]
    assert outcomes["dora"] == ("none", "skipped")
    assert outcomes["nomail"] == ("start_enrollment", "provisioned")  # no e-mail needed here
    assert outcomes["pfetch"] == ("start_desktop", "provisioned")
    assert {n for n, o in outcomes.items() if o[1] == "provisioned"} == set(dns)
    issued = tokens(running)
    for name, dn in dns.items():
        stored = slapd.read(dn, "defguardProvisioningConfig")
        assert stored is not None
        value = json.loads(stored)
        assert stored == json.dumps(value, separators=(",", ":"))  # compact JSON
        # The two keys Defguard's MSI script reads, then the expiry a later sync dates it by.
        assert list(value) == ["enrollmentUrl", "enrollmentToken", "expiresAt"]
        desktop = rows[name]["action"] == "start_desktop"
        expected = "start_desktop issued " if desktop else rows[name]["expires_at"]
        assert value["expiresAt"].startswith(expected)
        assert value["enrollmentUrl"] == running.info["proxy_url"] + "/"
        assert issued[name] == {sha(value["enrollmentToken"])}
        assert rows[name]["directory_id"] == dn
    assert "ghost" not in issued


def test_match_by_mail_escapes_and_detects_duplicates(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path
) -> None:
    running = start_sandbox(
        with_member(
            {
                "username": "wild",
                "first_name": "W",
                "last_name": "Ild",
                "email": "w*@contoso.example",
            }
        )
    )
    populate(slapd)
    slapd.add_user("Tom Twin", "ttwin", "SHARED@contoso.example")
    slapd.add_user("Walter A", "wa", "wa@contoso.example")  # would match an unescaped w*
    report = tmp_path / "r.json"
    result = run(running, slapd, "--match-by", "mail", "--report", str(report))
    assert result.exit_code == 1
    rows = report_rows(report)
    assert rows["obrien"]["outcome"] == "provisioned"  # apostrophe and + in the filter value
    assert rows["twin"]["outcome"] == "failed" and "ambiguous" in rows["twin"]["reason"]
    assert rows["wild"]["outcome"] == "skipped"
    assert rows["nomail"]["outcome"] == "skipped" and "no e-mail" in rows["nomail"]["reason"]
    assert "wild" not in tokens(running) and "twin" not in tokens(running)


def test_json_in_description(start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant())
    dns = populate(slapd)
    result = run(running, slapd, attribute="description")
    assert result.exit_code == 0, result.output
    value = json.loads(slapd.read(dns["jdoe"], "description") or "")
    assert sha(value["enrollmentToken"]) in tokens(running)["jdoe"]


def test_wrong_bind_password(start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant())
    populate(slapd)
    result = run(running, slapd, password="wrong")
    assert result.exit_code == 2 and "refused the bind" in result.output
    assert "wrong" not in result.output.replace("refused", "")
    assert tokens(running) == {}


def test_unknown_attribute_and_missing_rights_stop_before_any_token(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path
) -> None:
    running = start_sandbox(example_tenant())
    populate(slapd)
    unknown = run(running, slapd, attribute="defguardConfig")
    assert unknown.exit_code == 2 and "no attribute 'defguardConfig'" in unknown.output
    reader = run(running, slapd, bind_dn=READER_DN, password=READER_PASSWORD)
    assert reader.exit_code == 2 and "may not write" in reader.output
    assert tokens(running) == {}


def test_ad_usage_errors(start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path) -> None:
    running = start_sandbox(example_tenant())
    missing = CliRunner().invoke(
        main,
        [
            "generate-tokens",
            "--url",
            running.info["defguard_url"],
            "--group-name",
            "vpn-users",
            "--directory",
            "ad",
        ],
        env={"DEFGUARD_API_TOKEN": running.info["api_token"]},
    )
    assert missing.exit_code == 2 and "--ldap-url, --base-dn, --ad-attribute" in missing.output
    plain = run(running, Slapd("ldap://dc1.corp.example", slapd.process))
    assert plain.exit_code == 2 and "use ldaps://" in plain.output


# ------------------------------------------------------- one account, one member; disabled accounts


def test_account_names_differing_only_in_case_are_one_account(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path
) -> None:
    """Defguard's JDoe2 and jdoe2 are two users, but AD's sAMAccountName ignores case: both
    would be written to one account, whose owner would then enroll as either. Neither gets a
    token."""
    tenant = example_tenant()
    for name in ("JDoe2", "jdoe2"):
        tenant["users"].append(
            {"username": name, "first_name": "J", "last_name": "Doe", "email": None, "entra": None}
        )
        tenant["groups"][1]["members"].append(name)
    running = start_sandbox(tenant)
    dns = populate(slapd)
    shared = slapd.add_user("John Doe Two", "jdoe2", "jdoe2@contoso.example")
    report = tmp_path / "r.json"
    result = run(running, slapd, "--report", str(report))
    assert result.exit_code == 1, result.output
    rows = report_rows(report)
    for name in ("JDoe2", "jdoe2"):
        assert (rows[name]["action"], rows[name]["outcome"]) == ("none", "failed")
        assert rows[name]["directory_id"] == shared
        assert rows[name]["reason"].startswith(
            f"Defguard members JDoe2 and jdoe2 map to the same Active Directory object {shared},"
        )
    issued = tokens(running)
    assert "JDoe2" not in issued and "jdoe2" not in issued
    assert slapd.read(shared, "defguardProvisioningConfig") is None
    assert {n for n, r in rows.items() if r["outcome"] == "provisioned"} == set(dns)


ACCOUNT_CONTROL = """
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
    EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
"""


@pytest.fixture
def ad_slapd(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Slapd:
    """The test slapd with AD's userAccountControl on the user class."""
    schema = slapd_module.AD_SCHEMA.replace(
        "extensionAttribute3 $ defguardProvisioningConfig )",
        "extensionAttribute3 $ defguardProvisioningConfig $ userAccountControl )",
    )
    assert schema != slapd_module.AD_SCHEMA
    monkeypatch.setattr(slapd_module, "AD_SCHEMA", ACCOUNT_CONTROL + schema)
    server: Slapd = request.getfixturevalue("slapd")
    return server


def test_disabled_ad_accounts_are_skipped_unless_included(
    start_sandbox: StartSandbox, ad_slapd: Slapd, tmp_path: Path
) -> None:
    """ACCOUNTDISABLE (bit 2 of userAccountControl): 514 is a disabled normal account."""
    running = start_sandbox(example_tenant())
    dns = populate(ad_slapd)
    with ad_slapd.admin() as connection:
        for name, control in (("jdoe", "514"), ("obrien", "512"), ("mlopez", "66048")):
            assert connection.modify(
                dns[name], {"userAccountControl": [(ldap3.MODIFY_REPLACE, [control])]}
            ), connection.result
    report = tmp_path / "r.json"
    result = run(running, ad_slapd, "--report", str(report))
    assert result.exit_code == 0, result.output
    rows = report_rows(report)
    assert (rows["jdoe"]["outcome"], rows["jdoe"]["reason"]) == (
        "skipped",
        "the Active Directory account is disabled; no token issued (pass "
        "--include-disabled-directory-users to provision disabled accounts too)",
    )
    assert rows["obrien"]["outcome"] == rows["mlopez"]["outcome"] == "provisioned"
    assert "jdoe" not in tokens(running)
    assert ad_slapd.read(dns["jdoe"], "defguardProvisioningConfig") is None
    included = tmp_path / "included.json"
    again = run(running, ad_slapd, "--include-disabled-directory-users", "--report", str(included))
    assert again.exit_code == 0, again.output
    assert report_rows(included)["jdoe"]["outcome"] == "provisioned"
    stored = json.loads(ad_slapd.read(dns["jdoe"], "defguardProvisioningConfig") or "")
    assert tokens(running)["jdoe"] == {sha(stored["enrollmentToken"])}


def test_an_account_name_spelled_with_the_kelvin_sign_gets_no_token(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path
) -> None:
    """slapd's caseIgnoreMatch folds the Kelvin sign (U+212A) into k, as Python's lower()
    does: the account K-im (kim has none in AD) must not receive member kim's token."""
    running = start_sandbox(
        with_member(
            {
                "username": "kim",
                "first_name": "Kim",
                "last_name": "K",
                "email": "kim@contoso.example",
            }
        )
    )
    populate(slapd)
    mallory = slapd.add_user("Mallory M", "\u212aim")
    report = tmp_path / "r.json"
    result = run(running, slapd, "--report", str(report))
    assert result.exit_code == 1, result.output
    row = report_rows(report)["kim"]
    assert (row["action"], row["outcome"]) == ("none", "failed"), row
    assert row["reason"].startswith("ambiguous: 1 directory object answers to kim:")
    assert mallory in row["reason"] and "look-alike" in row["reason"]
    assert "kim" not in tokens(running)
    assert slapd.read(mallory, "defguardProvisioningConfig") is None
    assert report_rows(report)["jdoe"]["outcome"] == "provisioned"
