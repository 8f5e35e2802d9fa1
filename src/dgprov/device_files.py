"""What an enrollment leaves on disk: the key pair, the wg-quick files, the state, the pending key.

The private key is generated here and written only into files readable by their owner (0600):
the config files, and until those exist a pending-key file (``PENDING_FILE``). The state file
(``STATE_FILE``) keeps what ``--refresh`` needs later (the polling token, the public key, the
paths of the configs), never the private key: ``--refresh`` reads it back from a config file, or
from the pending key.

Each config is rendered from the model (``wireguard.py``) as the desktop client would bring it
up, including its rule for routing all traffic. Kept apart from the flow (``enrollment.py``),
which decides when each file is written, so that what is written and how it is read back are in
one place; it reads the proxy's answer (``proxy_client.DeviceAnswer``) and never the network.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .private_files import write_private_file
from .proxy_client import TRAFFIC_FORCE_ALL, TRAFFIC_NONE, DeviceAnswer
from .urls import same_origin, shown_origin
from .wireguard import as_client_writes

STATE_FILE = "dgprov-enrollment.json"
PENDING_FILE = "dgprov-pending-key.json"


@dataclass(frozen=True)
class KeyPair:
    private: str
    public: str

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r}, private='***')"


# cryptography is imported where a key is made: every other command starts without it.


def new_key_pair() -> KeyPair:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    private = X25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return key_pair_from_private(base64.b64encode(private).decode())


def key_pair_from_private(private: str) -> KeyPair:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyPair(private, base64.b64encode(public).decode())


def routes_all_traffic(policy: int, chosen: bool) -> bool:
    """The client's rule (location.rs:290-298): forced, disabled, or the user's choice."""
    if policy == TRAFFIC_FORCE_ALL:
        return True
    return chosen and policy == TRAFFIC_NONE


@dataclass(frozen=True)
class WrittenConfig:
    location: str
    path: Path
    mfa: str | None


def write_configs(
    output_dir: Path, device: DeviceAnswer, keys: KeyPair, *, route_all_traffic: bool = False
) -> tuple[list[WrittenConfig], list[str]]:
    """One wg-quick file per location (0600), rendered from the model as the desktop client
    would bring it up; and what failed."""
    written: list[WrittenConfig] = []
    problems = list(device.problems)
    route_all = routes_all_traffic(device.traffic_policy, route_all_traffic)
    for location in device.locations:
        path = output_dir / f"{location.file_name}.conf"
        config = as_client_writes(location.config, route_all_traffic=route_all)
        try:
            write_private_file(path, config.render(keys.private).encode())
        except OSError as exc:
            problems.append(f"location {location.name!r}: cannot write {path} ({exc.strerror})")
            continue
        written.append(WrittenConfig(location.name, path, location.mfa))
    return written, problems


def planned_paths(output_dir: Path, device: DeviceAnswer) -> list[str]:
    return [str(output_dir / f"{location.file_name}.conf") for location in device.locations]


# ------------------------------------------------------------------------------- local state


def check_writable(directory: Path) -> None:
    """Refuse an output directory that cannot hold files, before anything is registered.

    Nothing is created: the nearest existing ancestor must be a directory in which a file can be
    made (a temporary one, removed at once), so the directories can be made later.
    """
    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{existing} is not a directory"
    else:
        try:
            tempfile.TemporaryFile(dir=existing).close()
        except OSError as exc:
            problem = f"cannot create files in {existing} ({exc.strerror})"
    if problem is not None:
        raise UsageError(
            f"--output-dir {directory}: {problem}; choose another directory or fix its "
            "permissions (nothing was registered)"
        )


def save_state(
    path: Path,
    device: DeviceAnswer,
    keys: KeyPair,
    configs: list[str],
    *,
    route_all_traffic: bool = False,
    enrollment_url: str | None = None,
) -> None:
    """What ``--refresh`` needs later; never the private key (in the config files, or pending).

    ``instance.proxy_url`` is where the session went on (and where polls go), ``enrollment_url``
    the address in provisioning.json; ``route_all_traffic`` is the person's choice, applied again
    on refresh as the instance's traffic policy then allows."""
    state = {
        "instance": device.instance,
        "enrollment_url": enrollment_url,
        "polling_token": device.polling_token,
        "device": {"id": device.device_id, "name": device.device_name, "public_key": keys.public},
        "configs": configs,
        "route_all_traffic": route_all_traffic,
        "client_traffic_policy": device.traffic_policy,
    }
    write_private_file(path, (json.dumps(state, indent=2) + "\n").encode())


def load_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(path.read_text("utf-8"))
        _ = state["instance"]["proxy_url"], state["polling_token"], state["device"]["public_key"]
        if not isinstance(state["instance"]["proxy_url"], str):
            raise TypeError
    except OSError as exc:
        raise UsageError(
            f"{path}: cannot read the enrollment state ({exc.strerror}); enroll first"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{path}: not a dgprov enrollment state file; enroll again") from None
    return state


def save_pending(path: Path, keys: KeyPair, enrollment_url: str) -> None:
    body = {"enrollment_url": enrollment_url, "private_key": keys.private}
    write_private_file(path, (json.dumps(body, indent=2) + "\n").encode())


def load_pending(path: Path, enrollment_url: str | None = None) -> KeyPair | None:
    """The key of an enrollment whose files were not all written; None when there is none.

    With ``enrollment_url``, a key saved for another enrollment URL is refused rather than
    overwritten: it may be the only copy of another device's key.
    """
    if not path.exists():
        return None
    try:
        body = json.loads(path.read_text("utf-8"))
        keys = key_pair_from_private(str(body["private_key"]))
        saved_for = str(body["enrollment_url"])
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        raise UsageError(
            f"{path}: not a dgprov pending-key file; move it away, then run dgprov enroll again"
        ) from None
    if enrollment_url is not None and not same_origin(saved_for, enrollment_url):
        raise UsageError(
            f"{path} holds the key of an unfinished enrollment at {shown_origin(saved_for)}; "
            "finish that one or move the file away, or use another --output-dir"
        )
    return keys


def private_key_from_configs(paths: list[str], public_key: str) -> KeyPair | None:
    """The device's key pair, recovered from a config file it was written into."""
    for raw in paths:
        try:
            text = Path(raw).read_text("utf-8")
        except OSError:
            continue
        match = re.search(r"^PrivateKey\s*=\s*(\S+)", text, re.MULTILINE)
        if match:
            try:
                keys = key_pair_from_private(match.group(1))
            except (ValueError, binascii.Error):
                continue
            if keys.public == public_key:
                return keys
    return None
