"""A real OpenLDAP ``slapd`` per test, with a small Active-Directory-like schema.

The schema reuses AD's own OIDs for ``sAMAccountName``, ``extensionAttribute1..3`` and the ``user``
class, and adds ``defguardProvisioningConfig`` (the attribute Defguard's MSI reads) under a test
arc. Access control mirrors a delegated setup: a provisioning account may write the provisioning
attributes, a reader account may only read.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ldap3
import pytest

SUFFIX = "dc=corp,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-Passw0rd"
PROVISIONER_DN = f"cn=provisioner,ou=Service,{SUFFIX}"
PROVISIONER_PASSWORD = "Prov1sioner-Passw0rd"
READER_DN = f"cn=reader,ou=Service,{SUFFIX}"
READER_PASSWORD = "Reader-Passw0rd"
USERS_DN = f"ou=Users,{SUFFIX}"
SCHEMA_DIR = Path("/etc/ldap/schema")
PROVISIONING_ATTRIBUTES = [
    "defguardProvisioningConfig",
    "extensionAttribute1",
    "extensionAttribute2",
    "extensionAttribute3",
    "description",
]
MODULE_DIR = Path("/usr/lib/ldap")

AD_SCHEMA = """
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.423 NAME 'extensionAttribute1'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.424 NAME 'extensionAttribute2'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.425 NAME 'extensionAttribute3'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'defguardProvisioningConfig'
    EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{2048} SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' SUP inetOrgPerson STRUCTURAL
    MAY ( sAMAccountName $ userPrincipalName $ extensionAttribute1 $ extensionAttribute2 $
          extensionAttribute3 $ defguardProvisioningConfig ) )
"""

EFFECTIVE_RIGHTS_SCHEMA = """
attributetype ( 1.2.840.113556.1.4.914 NAME 'allowedAttributesEffective'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'effectiveRights' AUXILIARY
    MAY allowedAttributesEffective )
"""
"""Active Directory constructs ``allowedAttributesEffective`` for whoever asks: the attributes
that account may write on the object. slapd computes no such thing; with ``effective_rights``
the test stores the list the provisioning account would get (``Slapd.answer_effective_rights``)
and an ACL shows it to that account only, so another account, as on AD, reads none."""
EFFECTIVE_RIGHTS_ACCESS = """access to attrs=allowedAttributesEffective
    by dn.exact="{provisioner}" read
    by * none
"""

CONFIG = """
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {directory}/ad.schema
pidfile {directory}/slapd.pid
modulepath {modules}
moduleload back_mdb
database mdb
maxsize 104857600
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {directory}/db
index objectClass eq
index sAMAccountName,mail eq
{effective_rights_access}access to attrs={provisioning_attributes}
    by dn.exact="{provisioner}" write
    by self read
    by dn.exact="{reader}" read
    by * none
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by * read
"""


@dataclass
class Slapd:
    url: str
    process: subprocess.Popen[bytes]

    def admin(self) -> ldap3.Connection:
        return ldap3.Connection(ldap3.Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)

    def add_user(
        self,
        cn: str,
        sam: str | None,
        mail: str | None = None,
        **attributes: str,
    ) -> str:
        dn = f"cn={cn},{USERS_DN}"
        values: dict[str, str] = {"cn": cn, "sn": cn.split()[-1], **attributes}
        if sam:
            values["sAMAccountName"] = sam
            values["userPrincipalName"] = f"{sam}@corp.example"
        if mail:
            values["mail"] = mail
        with self.admin() as connection:
            assert connection.add(
                dn, ["top", "person", "organizationalPerson", "inetOrgPerson", "user"], values
            ), connection.result
        return dn

    def answer_effective_rights(self, dn: str, attributes: list[str]) -> None:
        """Store what AD would answer the provisioning account for ``allowedAttributesEffective``
        on ``dn`` (a slapd started with ``effective_rights`` only)."""
        with self.admin() as connection:
            assert connection.modify(
                dn,
                {
                    "objectClass": [(ldap3.MODIFY_ADD, ["effectiveRights"])],
                    "allowedAttributesEffective": [(ldap3.MODIFY_REPLACE, attributes)],
                },
            ), connection.result

    def read(self, dn: str, attribute: str) -> str | None:
        with self.admin() as connection:
            connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute])
            values = connection.entries[0].entry_attributes_as_dict.get(attribute, [])
            return str(values[0]) if values else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    binary = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(binary).exists():
        pytest.skip(
            "OpenLDAP slapd is not installed (make test installs it: apt-get install slapd)"
        )
    with running_slapd(tmp_path / "slapd", binary) as server:
        yield server


@pytest.fixture
def effective_rights_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A slapd that answers ``allowedAttributesEffective`` as Active Directory does (see
    ``EFFECTIVE_RIGHTS_SCHEMA``)."""
    binary = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(binary).exists():
        pytest.skip(
            "OpenLDAP slapd is not installed (make test installs it: apt-get install slapd)"
        )
    with running_slapd(tmp_path / "slapd", binary, effective_rights=True) as server:
        yield server


@contextmanager
def running_slapd(
    directory: Path, binary: str = "/usr/sbin/slapd", *, effective_rights: bool = False
) -> Iterator[Slapd]:
    """A slapd with the schema, the service accounts and ``ou=Users``, stopped at the end
    (the fixture's, and ``bench/sync.py``'s); ``effective_rights`` as
    ``EFFECTIVE_RIGHTS_SCHEMA`` says."""
    (directory / "db").mkdir(parents=True)
    extra = EFFECTIVE_RIGHTS_SCHEMA if effective_rights else ""
    (directory / "ad.schema").write_text(AD_SCHEMA + extra)
    (directory / "slapd.conf").write_text(
        CONFIG.format(
            schema=SCHEMA_DIR,
            directory=directory,
            modules=MODULE_DIR,
            suffix=SUFFIX,
            root_dn=ROOT_DN,
            root_password=ROOT_PASSWORD,
            provisioner=PROVISIONER_DN,
            provisioning_attributes=",".join(PROVISIONING_ATTRIBUTES),
            reader=READER_DN,
            effective_rights_access=(
                EFFECTIVE_RIGHTS_ACCESS.format(provisioner=PROVISIONER_DN)
                if effective_rights
                else ""
            ),
        )
    )
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    process = subprocess.Popen(
        [binary, "-f", str(directory / "slapd.conf"), "-h", f"{url}/", "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Slapd(url, process)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.admin().unbind()
            break
        except ldap3.core.exceptions.LDAPException:
            if process.poll() is not None or time.monotonic() > deadline:
                error = process.stderr.read().decode() if process.stderr else ""
                process.kill()
                raise RuntimeError(f"slapd did not start: {error}") from None
            time.sleep(0.05)
    with server.admin() as connection:
        connection.add(SUFFIX, ["dcObject", "organization"], {"dc": "corp", "o": "Corp"})
        for unit in ("Users", "Service"):
            connection.add(f"ou={unit},{SUFFIX}", ["organizationalUnit"], {"ou": unit})
        for dn, password in ((PROVISIONER_DN, PROVISIONER_PASSWORD), (READER_DN, READER_PASSWORD)):
            cn = dn.split(",")[0][3:]
            connection.add(dn, ["person"], {"cn": cn, "sn": cn, "userPassword": password})
    try:
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)
