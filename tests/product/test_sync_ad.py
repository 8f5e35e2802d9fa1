"""``dgprov sync --directory ad`` against a real slapd and the Defguard sandbox, both lines; and
the extra key and attribute sync stores, read the way Defguard's client and scripts read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ldap3
from click.testing import CliRunner, Result

from dgprov import stored_value
from dgprov.cli import main

from ..conftest import Running, StartSandbox
from ..sandbox.upstream.test_client_provisioning_loader import read_provisioning
from ..slapd import PROVISIONER_DN, PROVISIONER_PASSWORD, USERS_DN, Slapd, slapd
from .test_sync import (
    MEMBERS,
    U1,
    U2,
    rows,
    sha,
    stored,
    tenant,
    token_hashes,
    used_enrolls_moves_and_expires,
)
from .test_sync import Sync as EntraSync

__all__ = ["slapd"]  # the fixture
ATTRIBUTE = "defguardProvisioningConfig"


class AdSync:
    """Runs ``dgprov sync --directory ad`` in-process, bound as the provisioning account."""

    def __init__(self, running: Running, server: Slapd, tmp_path: Path) -> None:
        self.running, self.server, self.tmp_path = running, server, tmp_path
        self.runs = 0

    def __call__(self, *extra: str) -> Result:
        args = [
            "sync",
            "--url", self.running.info["defguard_url"],
            "--group-name", "vpn-users",
            "--directory", "ad",
            "--ldap-url", self.server.url,
            "--base-dn", USERS_DN,
            "--ad-attribute", ATTRIBUTE,
            "--bind-dn", PROVISIONER_DN,
            "--yes",
            *extra,
        ]  # fmt: skip
        env = {
            "DEFGUARD_API_TOKEN": self.running.info["api_token"],
            "DGPROV_BIND_PASSWORD": PROVISIONER_PASSWORD,
            "DGPROV_LOCK_FILE": str(self.tmp_path / "sync.lock"),
        }
        return CliRunner().invoke(main, args, env=env)

    def report(self) -> dict[str, Any]:
        self.runs += 1
        path = self.tmp_path / f"report{self.runs}.json"
        result = self("--report", str(path))
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(path.read_text())
        return document


def accounts(server: Slapd) -> dict[str, str]:
    return {name: server.add_user(f"User {name}", name, f"{name}@example.com") for name in MEMBERS}


def change_stamps(server: Slapd, dns: dict[str, str]) -> dict[str, str]:
    """Each entry's ``entryCSN``, which slapd changes on every modification."""
    with server.admin() as connection:
        stamps = {}
        for name, dn in dns.items():
            connection.search(dn, "(objectClass=*)", "BASE", attributes=["entryCSN"])
            stamps[name] = str(connection.entries[0].entryCSN)
        return stamps


def value(server: Slapd, dn: str) -> dict[str, str] | None:
    raw = server.read(dn, ATTRIBUTE)
    return None if raw is None else dict(json.loads(raw))


def test_sync_lifecycle_ad(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path, line: str
) -> None:
    running = start_sandbox(tenant(), line=line)
    dns = accounts(slapd)
    sync = AdSync(running, slapd, tmp_path)

    first = sync.report()
    assert rows(first) == {name: ("issue", "provisioned") for name in MEMBERS[:4]}
    issued = token_hashes(running)
    stored_u1 = value(slapd, dns[U1])
    assert stored_u1 is not None and sha(stored_u1["enrollmentToken"]) in issued[U1]
    assert stored_u1["expiresAt"] == first["members"][0]["expires_at"]

    stamps = change_stamps(slapd, dns)
    assert rows(sync.report()) == {name: ("keep", "kept") for name in MEMBERS[:4]}
    assert token_hashes(running) == issued
    assert change_stamps(slapd, dns) == stamps  # nothing written

    used_enrolls_moves_and_expires(
        running,
        tmp_path,
        sync.report,
        (stored_u1["enrollmentUrl"], stored_u1["enrollmentToken"]),
        lambda name: value(slapd, dns[name]) is not None,
        f"{U2}@corp.example",
    )


def test_the_client_and_the_scripts_ignore_what_sync_stores_beside_the_token(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path
) -> None:
    """Get-ProvisioningConfig.ps1 (client v1.6.9 src-tauri/resources-windows/scripts/):
    ``ConvertFrom-Json`` then ``.enrollmentUrl`` / ``.enrollmentToken`` (AD), and
    ``AdditionalProperties["Defguard"]`` then ``EnrollmentUrl`` / ``EnrollmentToken`` (Entra);
    it writes ``provisioning.json`` with the two snake_case keys, which the client's loader
    reads (ported in tests/sandbox/upstream)."""
    running = start_sandbox(tenant())
    dns = accounts(slapd)
    assert AdSync(running, slapd, tmp_path)().exit_code == 0
    raw = slapd.read(dns[U1], ATTRIBUTE)
    assert raw is not None and '"expiresAt"' in raw
    document = json.loads(raw)  # ConvertFrom-Json: every key becomes a property
    script_reads(running, tmp_path / "ad", document["enrollmentUrl"], document["enrollmentToken"])
    from_ad = stored_value.from_ad_json(raw)  # dgprov's own reader (fetch-config)
    assert from_ad is not None and from_ad.enrollment_token == document["enrollmentToken"]

    assert EntraSync(running, tmp_path / "entra")().exit_code == 0
    csa = stored(running, U1)
    assert set(csa) - {"@odata.type"} == {
        "EnrollmentUrl",
        "EnrollmentToken",
        "EnrollmentTokenExpiresAt",
    }
    script_reads(running, tmp_path / "entra", csa["EnrollmentUrl"], csa["EnrollmentToken"])
    from_entra = stored_value.from_entra_attributes(csa)
    assert from_entra is not None and from_entra.enrollment_token == csa["EnrollmentToken"]


def script_reads(running: Running, folder: Path, url: str, token: str) -> None:
    """The script's ``provisioning.json`` from the two values, loaded as the client loads it;
    the token is the one Defguard issued."""
    folder.mkdir(parents=True, exist_ok=True)
    script_output = {"enrollment_url": url, "enrollment_token": token}
    (folder / "provisioning.json").write_text(json.dumps(script_output, indent=4))
    loaded = read_provisioning(folder)
    assert loaded is not None and loaded.enrollment_token == token
    assert sha(token) in token_hashes(running)[U1]
    assert loaded.enrollment_url == running.info["proxy_url"] + "/"


def test_planted_ad_values_are_renewed(
    start_sandbox: StartSandbox, slapd: Slapd, tmp_path: Path
) -> None:
    """Anyone who may write the attribute chooses its JSON: an expiry in year 9999, a
    ``javascript:`` URL, an empty token or another enrollment URL than Defguard's is not kept,
    as it would not be in Entra."""
    running = start_sandbox(tenant())
    dns = accounts(slapd)
    sync = AdSync(running, slapd, tmp_path)
    assert rows(sync.report()) == {name: ("issue", "provisioned") for name in MEMBERS[:4]}
    first = {name: value(slapd, dns[name]) or {} for name in MEMBERS[:4]}
    changes = [("expiresAt", "9999-12-31T23:59:59Z"), ("enrollmentUrl", "javascript:alert(1)")]
    changes.append(("enrollmentToken", ""))
    changes.append(("enrollmentUrl", "https://vpn.elsewhere.example/"))  # not Defguard's URL
    planted = {
        name: {**first[name], key: text}
        for name, (key, text) in zip(MEMBERS, changes, strict=False)
    }
    with slapd.admin() as connection:
        for name, document in planted.items():
            change = {ATTRIBUTE: [(ldap3.MODIFY_REPLACE, [json.dumps(document)])]}
            assert connection.modify(dns[name], change), connection.result
    before = token_hashes(running)

    decided = rows(sync.report())
    assert decided == {name: ("renew", "provisioned") for name in planted}
    assert len(planted) == 4
    after = token_hashes(running)
    for name in planted:
        now = value(slapd, dns[name])
        assert now is not None and sha(now["enrollmentToken"]) in after[name] != before[name]
        assert now["enrollmentUrl"] == first[name]["enrollmentUrl"]
        assert now["expiresAt"] < "9999"
