"""The LDAP client: domain controller choice and base DN (no directory), and TLS against a
real slapd with an LDAPS listener."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dgprov.cli import main
from dgprov.ldap_directory import LdapDirectory, LdapSettings, base_dn_for, choose_srv_target

from ..slapd import PROVISIONER_DN, PROVISIONER_PASSWORD, USERS_DN, Slapd, _free_port, slapd

__all__ = ["slapd"]  # the fixture


def slapd_binary() -> str:
    return shutil.which("slapd") or "/usr/sbin/slapd"


def test_srv_choice() -> None:
    records = [
        (10, 50, 389, "dc2.corp.example.com."),
        (0, 10, 389, "dc9.corp.example.com."),
        (0, 90, 389, "dc1.corp.example.com."),
    ]
    assert choose_srv_target(records) == "dc1.corp.example.com"
    assert choose_srv_target([]) is None


def test_base_dn_from_the_domain() -> None:
    assert base_dn_for("corp.example.com") == "DC=corp,DC=example,DC=com"
    assert base_dn_for("corp.example.com.") == "DC=corp,DC=example,DC=com"


# ------------------------------------------------------------------------------------- LDAPS

TOKEN = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
VALUE = json.dumps({"enrollmentUrl": "https://enroll.corp.example/", "enrollmentToken": TOKEN})


@dataclass
class LdapsServer:
    port: int
    ca_bundle: Path  # the CA that signed the server's certificate, for localhost only


def _certificates(directory: Path) -> Path:
    """A private CA and a server certificate it signed for the name ``localhost`` (no IP
    address): ``localhost`` matches it, ``127.0.0.1`` does not."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dgprov test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(certificate.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return directory / "ca.pem"


@pytest.fixture
def ldaps(slapd: Slapd, tmp_path: Path) -> Iterator[LdapsServer]:
    """A second slapd on the same database, adding an LDAPS listener with the test CA's
    certificate (tests/slapd.py starts plain LDAP only). The first one is stopped, so one
    process owns the database; users added through it before that are there."""
    slapd.add_user("John Doe", "jdoe", "jdoe@corp.example", defguardProvisioningConfig=VALUE)
    slapd.process.terminate()
    slapd.process.wait(timeout=10)
    directory = tmp_path / "slapd"
    ca_bundle = _certificates(directory)
    config = directory / "slapd.conf"
    config.write_text(
        f"TLSCertificateFile {directory}/server.pem\n"
        f"TLSCertificateKeyFile {directory}/server.key\n" + config.read_text()
    )
    port = _free_port()
    listeners = f"{slapd.url}/ ldaps://localhost:{port}/"  # LDAPS beside the plain URL
    process = subprocess.Popen(
        # -d 8 logs "daemon: epoll: listen=…" once every listener is listening
        [slapd_binary(), "-f", str(config), "-h", listeners, "-d", "8"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if "daemon: epoll: listen=" in line:
                started.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert started.wait(20), "slapd did not start"
        yield LdapsServer(port, ca_bundle)
    finally:
        process.terminate()
        process.wait(timeout=10)


def fetch_over(url: str, tmp_path: Path, *extra: str) -> Result:
    args = [
        "fetch-config", "--source", "ad", "--ldap-url", url, "--base-dn", USERS_DN,
        "--bind-dn", PROVISIONER_DN, "--sam-account-name", "jdoe",
        "--output", str(tmp_path / "provisioning.json"), *extra,
    ]  # fmt: skip
    return CliRunner().invoke(main, args, env={"DGPROV_BIND_PASSWORD": PROVISIONER_PASSWORD})


@pytest.mark.parametrize(
    ("scheme", "host", "trust", "accepted"),
    [
        ("LDAPS", "localhost", False, False),  # untrusted: refused whatever the scheme's case
        ("ldaps", "localhost", False, False),
        ("LDAPS", "localhost", True, True),  # the private CA given: accepted
        ("Ldaps", "localhost", True, True),
        ("LDAPS", "127.0.0.1", True, False),  # trusted CA, but not this host name
        ("ldaps", "127.0.0.1", True, False),
    ],
)
def test_ldaps_verifies_certificate_and_host_name(
    ldaps: LdapsServer, tmp_path: Path, scheme: str, host: str, trust: bool, accepted: bool
) -> None:
    """The bind password crosses this connection: an unverified server must never get it."""
    extra = ["--ca-bundle", str(ldaps.ca_bundle)] if trust else []
    result = fetch_over(f"{scheme}://{host}:{ldaps.port}", tmp_path, *extra)
    if accepted:
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "provisioning.json").read_text())["enrollment_token"] == TOKEN
    else:
        assert result.exit_code == 2, result.output
        assert "cannot reach the directory" in result.output and "--ca-bundle" in result.output
        assert not (tmp_path / "provisioning.json").exists()
    assert PROVISIONER_PASSWORD not in result.output


# -------------------------------------------------------------------------------- connections


def test_each_thread_binds_its_own_connection_and_close_unbinds_them_all(slapd: Slapd) -> None:
    """The batch writers' threads reach the server side by side, and no bind outlives close()."""
    directory = LdapDirectory(
        LdapSettings(
            slapd.url, USERS_DN, "defguardProvisioningConfig", PROVISIONER_DN, PROVISIONER_PASSWORD
        )
    )
    opened: list[Any] = []
    threads = [
        threading.Thread(target=lambda: opened.append(directory._connect())) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    mine = directory._connect()
    assert directory._connect() is mine  # a thread keeps its connection
    assert len({id(connection) for connection in [*opened, mine]}) == 4
    assert all(connection.bound for connection in [*opened, mine])
    directory.close()
    assert all(connection.closed for connection in [*opened, mine])
    assert directory._connect() is not mine  # a use after close binds afresh
    directory.close()
