"""Join detection on captured outputs of each platform's tool."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dgprov import join
from dgprov.environment import SECRET_VARIABLES
from dgprov.join import (
    JoinState,
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


def test_tools_run_without_dgprovs_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tool join detection starts (here stand-ins on PATH that record their environment
    and print a real sample) gets dgprov's environment minus its secrets."""
    outputs = {
        "dsregcmd": sample("dsregcmd_entra.txt"),
        "dsconfigad": sample("dsconfigad_bound.txt"),
        "realm": sample("realm_list_joined.txt"),
        "loginctl": "2 1000 alice seat0 tty2\nName=alice\nType=wayland\nActive=yes\nClass=user",
    }
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, output in outputs.items():
        script = tools / name
        script.write_text(f"#!/bin/sh\nenv > '{tmp_path / name}.env'\ncat <<'EOF'\n{output}\nEOF\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    secrets = {name: f"secret-value-of-{name.lower()}" for name in SECRET_VARIABLES}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    assert join.detect("win32").kind == "entra"
    assert join.detect("darwin").domain == "corp.example.com"
    assert join.detect("linux").domain == "corp.example.com"
    assert join.graphical_session_user() == "alice"
    for name in outputs:
        recorded = (tmp_path / f"{name}.env").read_text()
        assert "PATH=" in recorded, name
        for variable, value in secrets.items():
            assert variable not in recorded and value not in recorded, (name, variable)
    assert all(os.environ[name] == value for name, value in secrets.items())  # ours unchanged
