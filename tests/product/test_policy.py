"""``fetch-config``'s settings from machine policy (the Windows policy key, macOS managed
preferences): the values, how they are checked, and that the command line still wins."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from dgprov import policy
from dgprov.cli import main
from dgprov.errors import UsageError

WHERE = r"HKLM\SOFTWARE\Policies\dgprov"


def test_values_become_fetch_config_defaults() -> None:
    values = {
        "Source": "broker",
        "Tenant": " contoso.onmicrosoft.com ",
        "ClientId": "11111111-2222-3333-4444-555555555555",
        "BrokerUrl": "https://broker.contoso.example",
        "BrokerScope": "api://broker/Provision",
        "AttributeSetName": "Vpn",
        "AdAttribute": "extensionAttribute7",
        "FutureSetting": "left alone",
        "Tenant2": 7,
    }
    assert policy.parse_policy(values, WHERE) == {
        "source": "broker",
        "tenant": "contoso.onmicrosoft.com",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "broker_url": "https://broker.contoso.example",
        "broker_scope": "api://broker/Provision",
        "attribute_set_name": "Vpn",
        "ad_attribute": "extensionAttribute7",
    }
    assert policy.parse_policy({"Tenant": "", "ClientId": "  "}, WHERE) == {}  # MSI: not given


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"Source": "ldap"}, r"Source is 'ldap': use one of auto, entra, ad, broker"),
        ({"Tenant": 5}, r"\\Tenant: not text"),
        ({"Auth": "client-secret"}, r"Auth is 'client-secret': use one of auto, browser"),
        ({"BrokerUrl": "https://x/\nEvil: 1"}, "not a usable value"),
        ({"ClientId": "x" * 3000}, "longer than 2048"),
    ],
)
def test_bad_values_name_the_place_to_fix(values: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        policy.parse_policy(values, WHERE)


def test_macos_managed_preferences(tmp_path: Path) -> None:
    path = tmp_path / "org.dgprov.plist"
    assert policy.read_macos_values(path) == {}
    path.write_bytes(plistlib.dumps({"Tenant": "contoso.example", "Source": "entra"}))
    assert policy.parse_policy(policy.read_macos_values(path), str(path)) == {
        "tenant": "contoso.example",
        "source": "entra",
    }
    path.write_bytes(b"not a plist")
    with pytest.raises(UsageError, match="not a property list"):
        policy.read_macos_values(path)
    path.write_bytes(plistlib.dumps(["a", "list"]))
    with pytest.raises(UsageError, match="not a dictionary"):
        policy.read_macos_values(path)


def test_the_example_mobileconfig_sets_the_same_names() -> None:
    example = Path(__file__).resolve().parents[2] / "packaging" / "macos" / "dgprov.mobileconfig"
    profile = plistlib.loads(example.read_bytes())
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == policy.MACOS_DOMAIN
    settings = {k: v for k, v in payload.items() if not k.startswith("Payload")}
    assert set(settings) <= set(policy.SETTINGS)
    policy.parse_policy(settings, "example")  # every example value is one dgprov accepts


def test_policy_is_the_default_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Policy says the broker (an unreachable one); the command line says AD, and wins."""
    monkeypatch.setattr(
        policy,
        "machine_defaults",
        lambda: {"source": "broker", "broker_url": "http://127.0.0.1:9/", "tenant": "t"},
    )
    output = ["--output", str(tmp_path / "p.json")]
    from_policy = CliRunner().invoke(main, ["fetch-config", "--client-id", "c", *output])
    assert from_policy.exit_code == 1
    assert "the broker could not be reached" in from_policy.output  # the source from policy
    overridden = CliRunner().invoke(main, ["fetch-config", "--source", "ad", *output])
    assert "the broker" not in overridden.output
    assert "--ldap-url" in overridden.output or "domain" in overridden.output


def test_a_bad_policy_stops_fetch_config_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def bad() -> dict[str, str]:
        raise UsageError(r"HKLM\SOFTWARE\Policies\dgprov\Source is 'x': use one of auto")

    monkeypatch.setattr(policy, "machine_defaults", bad)
    refused = CliRunner().invoke(main, ["fetch-config"])
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        r"dgprov fetch-config: error: HKLM\SOFTWARE\Policies\dgprov\Source is 'x': use one of auto"
    ]
    assert CliRunner().invoke(main, ["enroll", "--help"]).exit_code == 0


def test_the_admx_template_sets_every_value_dgprov_reads() -> None:
    """The ADMX and its ADML: one policy a value, in the key fetch-config reads, each with its
    text and its presentation, so a GPO or Intune's imported ADMX sets exactly these."""
    import xml.etree.ElementTree as ElementTree

    folder = Path(__file__).resolve().parents[2] / "packaging" / "windows" / "admx"
    ns = {"p": "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"}
    admx = ElementTree.parse(folder / "dgprov.admx").getroot()
    adml = ElementTree.parse(folder / "en-US" / "dgprov.adml").getroot()
    strings = {s.get("id") for s in adml.iterfind(".//p:string", ns)}
    presentations = {p.get("id") for p in adml.iterfind(".//p:presentation", ns)}
    values = []
    for entry in admx.iterfind(".//p:policy", ns):
        assert entry.get("key") == policy.WINDOWS_KEY and entry.get("class") == "Machine"
        name = entry.get("name")
        assert {name, f"{name}_Help"} <= strings and name in presentations
        values += [str(text.get("valueName")) for text in entry.iterfind(".//p:text", ns)]
    assert sorted(values) == sorted(policy.SETTINGS)
