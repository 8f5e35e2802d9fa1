"""Join detection on captured outputs of each platform's tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgprov.join import (
    JoinState,
    parse_console_user,
    parse_dsconfigad,
    parse_dsregcmd,
    parse_loginctl_sessions,
    parse_realm_list,
    parse_sssd_conf,
)

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


@pytest.mark.parametrize(
    ("name", "kind", "domain"),
    [
        ("dsregcmd_ad.txt", "ad", "CORP"),
        ("dsregcmd_entra.txt", "entra", "Contoso"),
        ("dsregcmd_hybrid.txt", "ad", "CORP"),  # hybrid uses AD, as Defguard's script does
        ("dsregcmd_workgroup.txt", "none", None),
    ],
)
def test_dsregcmd(name: str, kind: str, domain: str | None) -> None:
    state = parse_dsregcmd(sample(name))
    assert (state.kind, state.domain) == (kind, domain)


def test_hybrid_evidence_says_so() -> None:
    assert "hybrid" in parse_dsregcmd(sample("dsregcmd_hybrid.txt")).evidence


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("realm_list_joined.txt", JoinState("ad", "corp.example.com")),
        ("realm_list_discovered.txt", JoinState("none")),
        ("realm_list_empty.txt", JoinState("none")),
    ],
)
def test_realm_list(name: str, expected: JoinState) -> None:
    state = parse_realm_list(sample(name))
    assert (state.kind, state.domain) == (expected.kind, expected.domain)


def test_sssd_conf() -> None:
    assert (
        parse_sssd_conf(sample("sssd_ad.conf")).kind,
        parse_sssd_conf(sample("sssd_ad.conf")).domain,
    ) == (
        "ad",
        "corp.example.com",
    )
    assert parse_sssd_conf(sample("sssd_entra.conf")).kind == "entra"
    assert (
        parse_sssd_conf("[sssd]\ndomains = local\n[domain/local]\nid_provider = files\n").kind
        == "none"
    )
    assert parse_sssd_conf("not an ini file").kind == "none"


def test_dsconfigad() -> None:
    bound = parse_dsconfigad(sample("dsconfigad_bound.txt"))
    assert (bound.kind, bound.domain) == ("ad", "corp.example.com")
    assert parse_dsconfigad(sample("dsconfigad_unbound.txt")).kind == "none"


def test_graphical_session_user() -> None:
    details = {
        "c1": "Name=gdm\nType=wayland\nActive=no\nClass=greeter\n",
        "2": "Name=alice\nType=wayland\nActive=yes\nClass=user\n",
        "11": "Name=bob\nType=tty\nActive=yes\nClass=user\n",
    }
    assert parse_loginctl_sessions(sample("loginctl_sessions.txt"), details) == "alice"
    details["2"] = details["2"].replace("Active=yes", "Active=no")
    assert parse_loginctl_sessions(sample("loginctl_sessions.txt"), details) is None


def test_windows_console_user() -> None:
    assert parse_console_user("CORP\\jdoe\r\n") == "CORP\\jdoe"
    assert parse_console_user("\r\n") is None
