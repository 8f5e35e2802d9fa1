"""The wg-quick model: what dgprov agrees to write into a file that wg-quick runs as root.

Pure functions, no network: the proxy's part is in ``test_enroll.py`` (a forwarder adding a
PostUp to the sandbox's answer). Here every key and value rule, and the file names.
"""

from __future__ import annotations

import base64

import pytest

from dgprov.errors import DgprovError
from dgprov.wireguard import interface_name, parse

SERVER_KEY = base64.b64encode(bytes(range(32))).decode()
DEVICE_KEY = base64.b64encode(bytes(range(100, 132))).decode()
DEFGUARD = f"""[Interface]
PrivateKey = YOUR_PRIVATE_KEY
Address = 10.10.0.2/24
DNS = 10.10.0.1

[Peer]
PublicKey = {SERVER_KEY}
AllowedIPs = 10.10.0.0/24,192.168.10.0/24
Endpoint = vpn.contoso.example:51820
PersistentKeepalive = 25
"""


def test_defguard_config_is_rendered_with_the_device_key() -> None:
    rendered = parse(DEFGUARD).render(DEVICE_KEY)
    assert rendered == (
        "[Interface]\n"
        f"PrivateKey = {DEVICE_KEY}\n"
        "Address = 10.10.0.2/24\n"
        "DNS = 10.10.0.1\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {SERVER_KEY}\n"
        "AllowedIPs = 10.10.0.0/24, 192.168.10.0/24\n"
        "Endpoint = vpn.contoso.example:51820\n"
        "PersistentKeepalive = 25\n"
    )
    assert parse(rendered) == parse(DEFGUARD)  # the model survives its own rendering


def test_every_known_key_in_any_case() -> None:
    text = f"""# a comment
[interface]
address = 10.10.0.2/32, fd00::2/128
dns = 10.10.0.1, corp.example
mtu = 1420
listenport = 51000
[PEER]
publickey = {SERVER_KEY}
presharedkey = {DEVICE_KEY}
allowedips = 0.0.0.0/0
allowedips = ::/0
endpoint = [2001:db8::1]:51820
persistentkeepalive = off
"""
    config = parse(text)
    assert [str(a) for a in config.addresses] == ["10.10.0.2/32", "fd00::2/128"]
    assert config.dns == ("10.10.0.1", "corp.example")
    assert (config.mtu, config.listen_port) == (1420, 51000)
    peer = config.peers[0]
    assert [str(n) for n in peer.allowed_ips] == ["0.0.0.0/0", "::/0"]
    assert peer.endpoint == "[2001:db8::1]:51820" and peer.persistent_keepalive is None
    assert "PresharedKey = " in config.render(DEVICE_KEY)


@pytest.mark.parametrize(
    ("line", "section", "problem"),
    [
        ("PostUp = iptables -F", "[Interface]", "PostUp would run a command as root"),
        ("PreUp = touch /tmp/x", "[Interface]", "PreUp would run a command as root"),
        ("PostDown = rm -rf /", "[Interface]", "PostDown would run a command as root"),
        ("predown = reboot", "[Interface]", "predown would run a command as root"),
        ("PostUp = x", "[Peer]", "PostUp would run a command as root"),
        ("Table = off", "[Interface]", "'Table' is not a key dgprov writes"),
        ("SaveConfig = true", "[Interface]", "'SaveConfig' is not a key dgprov writes"),
        ("FwMark = 51820", "[Interface]", "'FwMark' is not a key dgprov writes"),
        ("Endpoint = 1.2.3.4:5", "[Interface]", "'Endpoint' is not a key dgprov writes"),
    ],
)
def test_command_and_unknown_keys_are_refused(line: str, section: str, problem: str) -> None:
    text = DEFGUARD.replace(f"{section}\n", f"{section}\n{line}\n")
    with pytest.raises(DgprovError) as caught:
        parse(text)
    assert problem in str(caught.value) and "line " in str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (SERVER_KEY, "not-base64!", "PublicKey is not a WireGuard key"),
        (SERVER_KEY, base64.b64encode(bytes(31)).decode(), "PublicKey is not a WireGuard key"),
        ("10.10.0.2/24", "10.10.0.300/24", "Address: '10.10.0.300/24'"),
        ("10.10.0.2/24", "fe80::1%eth0", "Address: 'fe80::1%eth0'"),
        ("10.10.0.2/24", "10.10.0.2/24 PostUp = x", "Address: "),
        ("192.168.10.0/24", "192.168.10.0/33", "AllowedIPs: '192.168.10.0/33'"),
        ("DNS = 10.10.0.1", "DNS = 10.10.0.1; reboot", "DNS: '10.10.0.1; reboot'"),
        (":51820", "", "Endpoint is not host:port"),
        (":51820", ":0", "Endpoint is not host:port"),
        ("vpn.contoso.example:", "vpn contoso:", "Endpoint's host"),
        ("= 25", "= -1", "PersistentKeepalive is not a number"),
        ("DNS = 10.10.0.1", "MTU = 1e3", "MTU is not a number"),
        ("Address = 10.10.0.2/24\n", "", "[Interface] has no Address"),
        ("[Peer]", "[Peers]", "unknown section"),
        (f"PublicKey = {SERVER_KEY}\n", "", "has no PublicKey"),
        ("DNS = 10.10.0.1", "DNS = 10.10.0.1\n[Interface]", "expected one [Interface]"),
        ("Endpoint = ", "Endpoint = 1.1.1.1:1\nEndpoint = ", "Endpoint is given twice"),
    ],
)
def test_invalid_values_are_refused(old: str, new: str, problem: str) -> None:
    assert old in DEFGUARD
    with pytest.raises(DgprovError) as caught:
        parse(DEFGUARD.replace(old, new, 1))
    assert problem in str(caught.value)


@pytest.mark.parametrize("separator", ["\r", "\x0b", "\x0c", "\x1c", "\u2028"])
def test_no_line_can_be_smuggled_inside_a_value(separator: str) -> None:
    """Any line break Python knows starts a line the parser sees, so a hook hidden after one
    is found; and nothing from a value reaches the file unparsed."""
    text = DEFGUARD.replace("DNS = 10.10.0.1", f"DNS = 10.10.0.1{separator}PostUp = reboot")
    with pytest.raises(DgprovError) as caught:
        parse(text)
    assert "PostUp would run a command" in str(caught.value)


def test_file_names_are_safe_on_every_system() -> None:
    taken: set[str] = set()
    names = [
        interface_name(location, taken)
        for location in [
            "HQ", "hq", "Hq", "CON", "nul", "Com1", "LPT9.backup", "trailing. ",
            "../../etc/passwd", "...", "Zürich office", "a" * 40, "a" * 40,
        ]
    ]  # fmt: skip
    assert names == [
        "HQ", "hq-2", "Hq-3", "wg-CON", "wg-nul", "wg-Com1", "wg-LPT9.backup", "trailing",
        "etc-passwd", "defguard", "Z-rich-office", "a" * 15, "a" * 13 + "-2",
    ]  # fmt: skip
    assert len({name.lower() for name in names}) == len(names)
    assert all(len(name) <= 15 and not name.endswith((".", " ")) for name in names)


@pytest.mark.parametrize("route_all", [False, True])
def test_as_client_writes_keepalive_25_and_all_traffic(route_all: bool) -> None:
    """client v1.6.9 location.rs:272-298: keepalive 25 whatever the location says; all traffic
    replaces every peer's AllowedIPs."""
    from dgprov.wireguard import as_client_writes

    config = parse(DEFGUARD.replace("PersistentKeepalive = 25", "PersistentKeepalive = 7"))
    text = as_client_writes(config, route_all_traffic=route_all).render(DEVICE_KEY)
    assert "PersistentKeepalive = 25" in text and "= 7" not in text
    expected = "0.0.0.0/0, ::/0" if route_all else "10.10.0.0/24, 192.168.10.0/24"
    assert f"AllowedIPs = {expected}\n" in text
