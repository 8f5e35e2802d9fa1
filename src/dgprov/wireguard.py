"""wg-quick configurations: parsed into a typed model with an allow-list, rendered from the model.

The enrollment proxy sends each location's configuration as wg-quick text. wg-quick runs
``PreUp``/``PostUp``/``PreDown``/``PostDown`` as shell commands, as root, and ``Table`` and
``SaveConfig`` change the machine's routing and the file itself; so a proxy that could put text
into these files could run anything on every enrolled machine. dgprov therefore never copies the
text: it reads the keys it knows, checks every value (keys are base64 of 32 bytes, addresses parse
as IP networks, ``Endpoint`` is host:port, ...) and writes a new file from those values only. Any
other key, hooks included, is refused with the location's name, never silently dropped: a
configuration with a hook is evidence that the server is not what it should be.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from .errors import InvalidWireGuardConfig

IpInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

COMMAND_KEYS = frozenset({"preup", "postup", "predown", "postdown"})
INTERFACE_KEYS = {k.lower(): k for k in ("PrivateKey", "Address", "DNS", "MTU", "ListenPort")}
PEER_KEYS = {
    k.lower(): k
    for k in ("PublicKey", "PresharedKey", "AllowedIPs", "Endpoint", "PersistentKeepalive")
}
LIST_KEYS = frozenset({"Address", "DNS", "AllowedIPs"})  # wg-quick accumulates repeated lines
HOST_NAME = re.compile(
    r"(?=.{1,253}\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?\Z"
)
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{device}{n}" for device in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]}
)
INTERFACE_NAME_LENGTH = 15  # IFNAMSIZ - 1: what wg-quick accepts on Linux
ENTRY = {
    "Address": "an IP address with an optional prefix length",
    "AllowedIPs": "an IP network",
    "DNS": "an IP address or a DNS search domain",
}
ENTRY_CHARACTERS = re.compile(r"[0-9A-Za-z.:/-]+\Z")
CLIENT_KEEPALIVE = 25  # client v1.6.9 location.rs:272: the desktop client always writes 25
ALL_TRAFFIC: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("0.0.0.0/0"),
    ipaddress.ip_network("::/0"),
)
T = TypeVar("T")


@dataclass(frozen=True)
class Peer:
    public_key: str
    preshared_key: str | None = None
    allowed_ips: tuple[IpNetwork, ...] = ()
    endpoint: str | None = None
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class WireGuardConfig:
    """One location's configuration, without the device's private key (added when rendered)."""

    addresses: tuple[IpInterface, ...]
    peers: tuple[Peer, ...]
    dns: tuple[str, ...] = ()
    mtu: int | None = None
    listen_port: int | None = None

    def render(self, private_key: str) -> str:
        """The wg-quick file: only the keys of the model, each value in its canonical form."""
        lines = ["[Interface]", f"PrivateKey = {wireguard_key(private_key, 'PrivateKey')}"]
        lines.append(f"Address = {', '.join(map(str, self.addresses))}")
        if self.dns:
            lines.append(f"DNS = {', '.join(self.dns)}")
        if self.mtu is not None:
            lines.append(f"MTU = {self.mtu}")
        if self.listen_port is not None:
            lines.append(f"ListenPort = {self.listen_port}")
        for peer in self.peers:
            lines += ["", "[Peer]", f"PublicKey = {peer.public_key}"]
            if peer.preshared_key is not None:
                lines.append(f"PresharedKey = {peer.preshared_key}")
            if peer.allowed_ips:
                lines.append(f"AllowedIPs = {', '.join(map(str, peer.allowed_ips))}")
            if peer.endpoint is not None:
                lines.append(f"Endpoint = {peer.endpoint}")
            if peer.persistent_keepalive is not None:
                lines.append(f"PersistentKeepalive = {peer.persistent_keepalive}")
        return "\n".join(lines) + "\n"


@dataclass
class _Section:
    name: str
    line: int
    values: dict[str, list[str]] = field(default_factory=dict)


def parse(text: str) -> WireGuardConfig:
    """The model of a wg-quick text; ``InvalidWireGuardConfig`` names the line and the key.

    Keys are matched without regard to case (as ``wg`` does) and written back in their usual
    spelling. The private key in the text (Defguard sends a placeholder) is ignored: the
    device's own key is added when the file is rendered.
    """
    sections: list[_Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            name = line.strip("[]").strip().lower()
            if line[-1:] != "]" or name not in ("interface", "peer"):
                raise InvalidWireGuardConfig(f"line {number}: unknown section {line[:40]!r}")
            sections.append(_Section(name, number))
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not sections:
            raise InvalidWireGuardConfig(f"line {number}: expected 'Key = value' inside a section")
        section = sections[-1]
        known = INTERFACE_KEYS if section.name == "interface" else PEER_KEYS
        if key.lower() in COMMAND_KEYS:
            raise InvalidWireGuardConfig(
                f"line {number}: {key} would run a command as root when the tunnel starts or "
                "stops; dgprov never writes commands into WireGuard files"
            )
        if key.lower() not in known:
            raise InvalidWireGuardConfig(
                f"line {number}: {key[:40]!r} is not a key dgprov writes in [{section.name}] "
                f"(it writes only {', '.join(known.values())})"
            )
        canonical = known[key.lower()]
        if canonical in section.values and canonical not in LIST_KEYS:
            raise InvalidWireGuardConfig(f"line {number}: {canonical} is given twice")
        section.values.setdefault(canonical, []).append(value.strip())
    interfaces = [s for s in sections if s.name == "interface"]
    if len(interfaces) != 1:
        raise InvalidWireGuardConfig(f"expected one [Interface] section, found {len(interfaces)}")
    peers = [_peer(s) for s in sections if s.name == "peer"]
    if not peers:
        raise InvalidWireGuardConfig("no [Peer] section")
    interface = interfaces[0].values
    addresses = tuple(_each(interface.get("Address", []), "Address", _ip_interface))
    if not addresses:
        raise InvalidWireGuardConfig("[Interface] has no Address")
    return WireGuardConfig(
        addresses=addresses,
        peers=tuple(peers),
        dns=tuple(_each(interface.get("DNS", []), "DNS", _dns_entry)),
        mtu=_number(interface.get("MTU"), "MTU", 576, 65535),
        listen_port=_number(interface.get("ListenPort"), "ListenPort", 1, 65535),
    )


def _peer(section: _Section) -> Peer:
    values = section.values
    if "PublicKey" not in values:
        raise InvalidWireGuardConfig(f"the [Peer] at line {section.line} has no PublicKey")
    keepalive = values.get("PersistentKeepalive")
    if keepalive is not None and keepalive[0].lower() == "off":
        keepalive = None
    return Peer(
        public_key=wireguard_key(values["PublicKey"][0], "PublicKey"),
        preshared_key=(
            wireguard_key(values["PresharedKey"][0], "PresharedKey")
            if "PresharedKey" in values
            else None
        ),
        allowed_ips=tuple(_each(values.get("AllowedIPs", []), "AllowedIPs", _ip_network)),
        endpoint=_endpoint(values["Endpoint"][0]) if "Endpoint" in values else None,
        persistent_keepalive=_number(keepalive, "PersistentKeepalive", 0, 65535),
    )


def wireguard_key(value: str, key: str) -> str:
    """A WireGuard key: base64 of exactly 32 bytes, in its canonical spelling."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidWireGuardConfig(f"{key} is not a WireGuard key (base64 of 32 bytes)")
    return base64.b64encode(raw).decode()


def _each(values: list[str], key: str, parse_one: Callable[[str], T]) -> list[T]:
    """Every comma-separated entry of a list key, parsed; the first bad one is named."""
    parsed = []
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        try:
            if not ENTRY_CHARACTERS.match(item):  # e.g. an IPv6 scope, "fe80::1%anything"
                raise ValueError(item)
            parsed.append(parse_one(item))
        except ValueError:
            raise InvalidWireGuardConfig(f"{key}: {item[:60]!r} is not {ENTRY[key]}") from None
    return parsed


def _ip_interface(value: str) -> IpInterface:
    return ipaddress.ip_interface(value)


def _ip_network(value: str) -> IpNetwork:
    return ipaddress.ip_network(value, strict=False)


def _dns_entry(value: str) -> str:
    """A resolver address, or a search domain (wg-quick passes names on to resolvconf)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if HOST_NAME.match(value):
            return value
        raise


def _endpoint(value: str) -> str:
    """``host:port`` with an IPv4 address, a ``[IPv6]`` address or a DNS name."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidWireGuardConfig("Endpoint is not host:port")
    if host.startswith("[") and host.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1])}]:{int(port)}"
        except ValueError:
            raise InvalidWireGuardConfig("Endpoint has an invalid IPv6 address") from None
    try:
        return f"{ipaddress.IPv4Address(host)}:{int(port)}"
    except ValueError:
        pass
    if not HOST_NAME.match(host):
        raise InvalidWireGuardConfig("Endpoint's host is neither an IP address nor a DNS name")
    return f"{host}:{int(port)}"


def _number(values: list[str] | None, key: str, low: int, high: int) -> int | None:
    if values is None:
        return None
    value = values[0]
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidWireGuardConfig(f"{key} is not a number from {low} to {high}")
    return int(value)


def interface_name(location: str, taken: set[str]) -> str:
    """A file and interface name for a location, distinct from every name in ``taken``.

    wg-quick wants at most 15 of ``[A-Za-z0-9_=+.-]``; Windows refuses device names such as
    ``CON`` or ``COM1`` (with any extension) and drops trailing dots and spaces; macOS and Windows
    compare names without regard to case, so ``HQ`` and ``hq`` must not share a file. ``taken``
    holds the lower-cased names already given and is updated.
    """
    base = re.sub(r"[^A-Za-z0-9_=+.-]+", "-", location).strip("-.")[:INTERFACE_NAME_LENGTH]
    base = base.rstrip("-.") or "defguard"
    if base.split(".")[0].upper() in WINDOWS_RESERVED:
        base = f"wg-{base}"[:INTERFACE_NAME_LENGTH].rstrip("-.")
    name, counter = base, 2
    while name.lower() in taken:
        suffix = f"-{counter}"
        name, counter = base[: INTERFACE_NAME_LENGTH - len(suffix)] + suffix, counter + 1
    taken.add(name.lower())
    return name


def as_client_writes(config: WireGuardConfig, *, route_all_traffic: bool) -> WireGuardConfig:
    """The configuration the desktop client would bring up (client v1.6.9 location.rs:272-298):
    ``PersistentKeepalive = 25`` on every peer whatever the location says, and with
    ``route_all_traffic`` every peer's AllowedIPs replaced by the default routes."""
    peers = tuple(
        replace(
            peer,
            persistent_keepalive=CLIENT_KEEPALIVE,
            allowed_ips=ALL_TRAFFIC if route_all_traffic else peer.allowed_ips,
        )
        for peer in config.peers
    )
    return replace(config, peers=peers)
