"""Client for the Defguard enrollment proxy, and the WireGuard files an enrollment produces.

The protocol is the desktop client's: ``POST <enrollment_url>/api/v1/enrollment/start`` with the
token opens a session held in the ``defguard_proxy`` cookie; ``create_device`` registers a public
key and returns one wg-quick config per location; ``activate_user`` sets the password of a user who
is not enrolled yet and ends the session, so it comes last. The private key is generated here and
only ever written into the config files (mode 0600).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from . import __version__
from .errors import EnrollmentRefused, UsageError
from .private_files import write_private_file
from .stored_value import ProvisioningConfig

MFA_MODES = {2: "internal MFA", 3: "external MFA"}
STATE_FILE = "dgprov-enrollment.json"
PLACEHOLDER = "YOUR_PRIVATE_KEY"


def refusal_message(status: int, error: str) -> str:
    """What each token state means for the person holding it."""
    ask = "ask your administrator to issue a new one with `dgprov generate-tokens`"
    if error == "token expired":
        return f"the enrollment token has expired; {ask}"
    if status == 401 and error == "invalid token":
        return f"the enrollment token is unknown, or was used and its session is over; {ask}"
    if error == "user is disabled":
        return "your Defguard account is disabled; ask your administrator to enable it"
    if status == 403 and error == "invalid token":
        return f"this token is not an enrollment token; {ask}"
    if error == "Session expired":
        return "the enrollment session expired (10 minutes by default); run dgprov enroll again"
    return f"the enrollment proxy answered {status}: {error}"


def check_password(password: str) -> None:
    """Defguard's rule, checked before the server sees it."""
    problems = []
    if not 8 <= len(password) <= 128:
        problems.append("8 to 128 characters")
    if not any(c.islower() for c in password):
        problems.append("a lower-case letter")
    if not any(c.isupper() for c in password):
        problems.append("an upper-case letter")
    if not any(c.isdigit() for c in password):
        problems.append("a digit")
    if not any(c in string.punctuation for c in password):
        problems.append("a punctuation mark")
    if problems:
        raise UsageError(f"the password needs {', '.join(problems)} (Defguard's password rules)")


@dataclass(frozen=True)
class KeyPair:
    private: str
    public: str

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r}, private='***')"


def new_key_pair() -> KeyPair:
    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyPair(base64.b64encode(private).decode(), base64.b64encode(public).decode())


def key_pair_from_private(private: str) -> KeyPair:
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyPair(private, base64.b64encode(public).decode())


def interface_name(location: str, taken: set[str]) -> str:
    """A wg-quick interface name (<= 15 of ``[A-Za-z0-9_=+.-]``) from a location name."""
    base = re.sub(r"[^A-Za-z0-9_=+.-]+", "-", location).strip("-")[:15] or "defguard"
    name, counter = base, 2
    while name in taken:
        suffix = f"-{counter}"
        name, counter = base[: 15 - len(suffix)] + suffix, counter + 1
    return name


class ProxyClient:
    """One enrollment session against the proxy behind ``enrollment_url``."""

    def __init__(self, enrollment_url: str, *, verify: ssl.SSLContext) -> None:
        self.base = enrollment_url.rstrip("/") + "/api/v1"
        self._client = httpx.Client(
            verify=verify, timeout=30, headers={"User-Agent": f"dgprov/{__version__}"}
        )

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = self._client.post(f"{self.base}{path}", json=body)
        except httpx.TransportError as exc:
            raise EnrollmentRefused(
                f"cannot reach the enrollment proxy at {self.base} ({type(exc).__name__}); check "
                "the network, then run dgprov enroll again"
            ) from None
        if response.status_code >= 400:
            try:
                error = str(response.json().get("error", ""))
            except ValueError:
                error = response.text.strip()[:200]
            raise EnrollmentRefused(refusal_message(response.status_code, error))
        return response

    def start(self, token: str) -> dict[str, Any]:
        response = self._post("/enrollment/start", {"token": token})
        if "defguard_proxy" not in self._client.cookies:
            raise EnrollmentRefused(
                "the enrollment proxy opened no session (no defguard_proxy cookie)"
            )
        body: dict[str, Any] = response.json()
        return body

    def create_device(self, name: str, public_key: str) -> dict[str, Any]:
        body: dict[str, Any] = self._post(
            "/enrollment/create_device", {"name": name, "pubkey": public_key}
        ).json()
        return body

    def activate(self, password: str, phone: str | None) -> None:
        self._post("/enrollment/activate_user", {"password": password, "phone_number": phone})

    def poll(self, polling_token: str) -> dict[str, Any]:
        body: dict[str, Any] = self._post("/poll", {"token": polling_token}).json()
        return body


@dataclass(frozen=True)
class WrittenConfig:
    location: str
    path: Path
    mfa: str | None


def write_configs(output_dir: Path, response: dict[str, Any], keys: KeyPair) -> list[WrittenConfig]:
    """One wg-quick file per location, with the private key filled in (0600)."""
    written: list[WrittenConfig] = []
    taken: set[str] = set()
    for config in response.get("configs", []):
        name = interface_name(config["network_name"], taken)
        taken.add(name)
        text = config["config"].replace(PLACEHOLDER, keys.private)
        path = output_dir / f"{name}.conf"
        write_private_file(path, text.encode())
        written.append(
            WrittenConfig(
                config["network_name"], path, MFA_MODES.get(config.get("location_mfa_mode") or 1)
            )
        )
    return written


def save_state(
    path: Path, response: dict[str, Any], keys: KeyPair, configs: list[WrittenConfig]
) -> None:
    """What ``--refresh`` needs later; never the private key (it stays in the config files)."""
    instance = response.get("instance") or {}
    state = {
        "instance": {k: instance.get(k) for k in ("id", "name", "url", "proxy_url", "username")},
        "polling_token": response.get("token"),
        "device": {
            "id": response["device"]["id"],
            "name": response["device"]["name"],
            "public_key": keys.public,
        },
        "configs": [str(c.path) for c in configs],
    }
    write_private_file(path, (json.dumps(state, indent=2) + "\n").encode())


def load_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text("utf-8"))
        _ = state["instance"]["proxy_url"], state["polling_token"], state["device"]["public_key"]
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot read the enrollment state ({exc.strerror}); enroll first"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{path}: not a dgprov enrollment state file; enroll again") from None
    return state


def private_key_from_configs(paths: list[str], public_key: str) -> KeyPair:
    """The device's key pair, recovered from a config file it was written into."""
    for raw in paths:
        try:
            text = Path(raw).read_text("utf-8")
        except OSError:
            continue
        match = re.search(r"^PrivateKey\s*=\s*(\S+)", text, re.MULTILINE)
        if match:
            keys = key_pair_from_private(match.group(1))
            if keys.public == public_key:
                return keys
    raise UsageError("no WireGuard config with this device's private key was found; enroll again")


@dataclass(frozen=True)
class Enrolled:
    username: str
    instance: str
    configs: list[WrittenConfig]


def enroll_device(
    config: ProvisioningConfig,
    output_dir: Path,
    *,
    device_name: str,
    password: Callable[[], str],
    phone: str | None = None,
    verify: ssl.SSLContext,
) -> Enrolled:
    """Start the session, register a new key, write the configs, then activate if needed.

    ``password`` is asked for only when the account is not enrolled yet, and before anything is
    registered, so a refused password changes nothing.
    """
    client = ProxyClient(config.enrollment_url, verify=verify)
    try:
        started = client.start(config.enrollment_token)
        user = started["user"]
        chosen = None if user["enrolled"] else password()
        keys = new_key_pair()
        response = client.create_device(device_name, keys.public)
        configs = write_configs(output_dir, response, keys)
        save_state(output_dir / STATE_FILE, response, keys, configs)
        if chosen is not None:
            client.activate(chosen, phone)
    finally:
        client.close()
    return Enrolled(user["login"], started["instance"]["name"], configs)


def refresh_device(output_dir: Path, *, verify: ssl.SSLContext) -> Enrolled:
    """New configurations for an enrolled device, through its polling token; same key."""
    state_path = output_dir / STATE_FILE
    state = load_state(state_path)
    keys = private_key_from_configs(state["configs"], state["device"]["public_key"])
    client = ProxyClient(state["instance"]["proxy_url"], verify=verify)
    try:
        response = client.poll(state["polling_token"])["device_config"]
    finally:
        client.close()
    configs = write_configs(output_dir, response, keys)
    save_state(state_path, response, keys, configs)
    return Enrolled(state["instance"]["username"], state["instance"]["name"], configs)
