"""The parts of the LDAP client that need no directory: domain controller choice, base DN."""

from __future__ import annotations

from dgprov.ldap_directory import base_dn_for, choose_srv_target


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
