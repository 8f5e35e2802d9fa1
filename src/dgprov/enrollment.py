"""Client for the Defguard enrollment proxy, and the WireGuard files an enrollment produces.

The protocol is the desktop client's: ``POST <enrollment_url>/api/v1/enrollment/start`` with the
token opens a session held in the ``defguard_proxy`` cookie; ``create_device`` registers a public
key and returns one wg-quick config per location (``network_info`` returns them again for a key
registered before); ``activate_user`` sets the password of a user who is not enrolled yet and ends
the session, so it comes last. The private key is generated here and written only into files
readable by their owner (0600): the config files, and until those exist a pending-key file.

What the proxy sends is not trusted: every answer is parsed field by field (``answers.Answer``),
each configuration is rebuilt from validated values (``wireguard.py``), and the proxy's own
address for later refreshes must be the origin the token was sent to.

A device registered but not written must not cost a second device or the key. So the key is
saved (0600, ``PENDING_FILE``) before ``create_device``, the state file right after it, and the
pending key is removed only once every file is written. A run that finds a pending key reuses it:
``network_info`` returns the device registered with it, and only if there is none is it
registered again.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
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
from .answers import Answer
from .errors import (
    EnrollmentRefused,
    IncompleteEnrollment,
    InvalidAnswer,
    InvalidProvisioningValue,
    InvalidWireGuardConfig,
    TransportFailure,
    UsageError,
)
from .private_files import write_private_file
from .retry import RetryPolicy
from .stored_value import FILE_TOKEN_KEY, FILE_URL_KEY, ProvisioningConfig
from .transport import ServiceConnection
from .urls import check_enrollment_url, same_origin, shown_origin
from .wireguard import WireGuardConfig, interface_name, parse

SERVICE = "the enrollment proxy"
MFA_MODES = {2: "internal MFA", 3: "external MFA"}
STATE_FILE = "dgprov-enrollment.json"
PENDING_FILE = "dgprov-pending-key.json"
POLICY = RetryPolicy(attempts=1, deadline=60.0)
"""One attempt per call: ``create_device`` is not idempotent, and a person is waiting."""


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


class ProxyClient:
    """One enrollment session against the proxy behind ``enrollment_url``."""

    def __init__(self, enrollment_url: str, *, verify: ssl.SSLContext) -> None:
        self.base = enrollment_url.rstrip("/") + "/api/v1"
        self.http = ServiceConnection(
            SERVICE,
            1,  # one client, so the session cookie is kept between the calls
            base_url=self.base,
            policy=POLICY,
            verify=verify,
            timeout=30,
            headers={"User-Agent": f"dgprov/{__version__}"},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _post(
        self, path: str, body: dict[str, Any], *, absent: int | None = None
    ) -> httpx.Response | None:
        """The proxy's answer; None for the status ``absent`` (e.g. 404, "no such device")."""
        try:
            response = await self.http.request("POST", path, json=body)
        except TransportFailure as exc:  # one attempt: says what failed, and the fix
            raise EnrollmentRefused(f"{exc} (at {shown_origin(self.base)})") from None
        if absent is not None and response.status_code == absent:
            return None
        if response.status_code >= 400:
            try:
                body_value = response.json()
            except ValueError:
                body_value = None
            if isinstance(body_value, dict):
                error = str(body_value.get("error", ""))[:200]
            else:
                error = response.text.strip()[:200]
            raise EnrollmentRefused(refusal_message(response.status_code, error))
        return response

    async def _answer(self, path: str, body: dict[str, Any]) -> Answer:
        response = await self._post(path, body)
        assert response is not None
        return Answer.of(response, SERVICE)

    async def start(self, token: str) -> Answer:
        response = await self._post("/enrollment/start", {"token": token})
        assert response is not None
        if "defguard_proxy" not in response.cookies:
            raise EnrollmentRefused(
                "the enrollment proxy opened no session (no defguard_proxy cookie)"
            )
        return Answer.of(response, SERVICE)

    async def create_device(self, name: str, public_key: str) -> Answer:
        return await self._answer("/enrollment/create_device", {"name": name, "pubkey": public_key})

    async def network_info(self, public_key: str) -> Answer | None:
        """The configurations of the device registered with ``public_key``; None if none is."""
        response = await self._post("/enrollment/network_info", {"pubkey": public_key}, absent=404)
        return None if response is None else Answer.of(response, SERVICE)

    async def activate(self, password: str, phone: str | None) -> None:
        await self._post("/enrollment/activate_user", {"password": password, "phone_number": phone})

    async def poll(self, polling_token: str) -> Answer:
        return (await self._answer("/poll", {"token": polling_token})).child("device_config")


# -------------------------------------------------------------------------- the device's answer


@dataclass(frozen=True)
class Location:
    name: str
    file_name: str
    config: WireGuardConfig
    mfa: str | None


@dataclass(frozen=True)
class DeviceAnswer:
    """What ``create_device``, ``network_info`` and ``poll`` return, read and checked."""

    device_id: int
    device_name: str
    polling_token: str | None
    instance: dict[str, str | None]
    locations: list[Location]
    problems: list[str]  # one per location that cannot be written, with the reason


def read_device_answer(answer: Answer, proxy_url: str) -> DeviceAnswer:
    """The device, instance and every location; a bad location is a problem, not the end.

    One location the proxy describes badly should not cost the others, and the device is
    registered already; so each location is parsed on its own and its problem is kept. The
    instance's ``proxy_url`` (where ``--refresh`` sends the polling token) is ``proxy_url``, the
    address the token was sent to, whatever the answer names: an answer cannot move a secret.
    """
    device = answer.child("device")
    instance = answer.child("instance") if answer.has("instance") else None
    taken: set[str] = set()
    locations: list[Location] = []
    problems: list[str] = []
    for item in answer.items("configs"):
        name = item.text("network_name")
        try:
            config = parse(item.text("config"))
        except InvalidWireGuardConfig as exc:
            problems.append(f"location {name!r}: {exc}")
            continue
        mode = item.optional_integer("location_mfa_mode") or 1
        locations.append(Location(name, interface_name(name, taken), config, MFA_MODES.get(mode)))
    described: dict[str, str | None] = {"id": None, "name": None, "url": None, "username": None}
    if instance is not None:
        described = {key: _shown(instance, key) for key in described}
    return DeviceAnswer(
        device_id=device.integer("id"),
        device_name=device.text("name"),
        polling_token=answer.optional_text("token"),
        instance={**described, "proxy_url": proxy_url},
        locations=locations,
        problems=problems,
    )


def _shown(instance: Answer, key: str) -> str | None:
    """A descriptive value of the instance (a number or a string), as text."""
    value = instance.value.get(key)
    return None if value is None or isinstance(value, (dict, list)) else str(value)


@dataclass(frozen=True)
class WrittenConfig:
    location: str
    path: Path
    mfa: str | None


def write_configs(
    output_dir: Path, device: DeviceAnswer, keys: KeyPair
) -> tuple[list[WrittenConfig], list[str]]:
    """One wg-quick file per location (0600), rendered from the model; and what failed."""
    written: list[WrittenConfig] = []
    problems = list(device.problems)
    for location in device.locations:
        path = output_dir / f"{location.file_name}.conf"
        try:
            write_private_file(path, location.config.render(keys.private).encode())
        except OSError as exc:
            problems.append(f"location {location.name!r}: cannot write {path} ({exc.strerror})")
            continue
        written.append(WrittenConfig(location.name, path, location.mfa))
    return written, problems


def planned_paths(output_dir: Path, device: DeviceAnswer) -> list[str]:
    return [str(output_dir / f"{location.file_name}.conf") for location in device.locations]


# ------------------------------------------------------------------------------- local state


def checked_provisioning(config: ProvisioningConfig, path: Path) -> ProvisioningConfig:
    """``config`` if the desktop client could use it (``ProvisioningConfig.validated``: https,
    http on loopback only, a printable token), else a usage error naming the file and the field.
    Checked before any network call, since the token is sent to that URL."""

    def refused(field: str, exc: InvalidProvisioningValue) -> UsageError:
        return UsageError(
            f"{path}: {field}: {exc}; nothing was sent: run dgprov fetch-config again, or ask "
            "your administrator for a new token"
        )

    try:
        check_enrollment_url(config.enrollment_url)
    except InvalidProvisioningValue as exc:
        raise refused(FILE_URL_KEY, exc) from None
    try:
        return config.validated()
    except InvalidProvisioningValue as exc:
        raise refused(FILE_TOKEN_KEY, exc) from None


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


def save_state(path: Path, device: DeviceAnswer, keys: KeyPair, configs: list[str]) -> None:
    """What ``--refresh`` needs later; never the private key (in the config files, or pending)."""
    state = {
        "instance": device.instance,
        "polling_token": device.polling_token,
        "device": {"id": device.device_id, "name": device.device_name, "public_key": keys.public},
        "configs": configs,
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


@dataclass(frozen=True)
class Enrolled:
    username: str
    instance: str
    configs: list[WrittenConfig]


def _finish(
    output_dir: Path, device: DeviceAnswer, keys: KeyPair, pending: Path
) -> list[WrittenConfig]:
    """State first, then the files; ``pending`` (which holds ``keys``) goes only when every
    file is written."""
    save_state(output_dir / STATE_FILE, device, keys, planned_paths(output_dir, device))
    written, problems = write_configs(output_dir, device, keys)
    if problems:
        raise IncompleteEnrollment(
            f"the device is registered, but {len(problems)} WireGuard configuration(s) were not "
            f"written: {'; '.join(problems)}. {_kept(pending)}"
        )
    pending.unlink(missing_ok=True)
    return written


def _kept(pending: Path) -> str:
    return (
        f"The private key is kept in {pending} (readable by you only); run dgprov enroll again "
        "once fixed: the same device is reused"
    )


async def enroll_device(
    config: ProvisioningConfig,
    output_dir: Path,
    *,
    device_name: str,
    password: Callable[[], str],
    phone: str | None = None,
    verify: ssl.SSLContext,
) -> Enrolled:
    """Start the session, register a key (or find the one registered before), write the
    configs, then activate if needed.

    ``password`` is asked for only when the account is not enrolled yet, and before anything
    is registered, so a refused password changes nothing.
    """
    check_writable(output_dir)
    pending = output_dir / PENDING_FILE
    keys = load_pending(pending, config.enrollment_url)
    client = ProxyClient(config.enrollment_url, verify=verify)
    try:
        started = await client.start(config.enrollment_token)
        user = started.child("user")
        login = user.text("login")
        instance = started.child("instance")
        instance_name = instance.text("name")
        chosen = None if user.flag("enrolled") else password()
        answer = await client.network_info(keys.public) if keys is not None else None
        if keys is None:
            keys = new_key_pair()
        if answer is None:
            output_dir.mkdir(parents=True, exist_ok=True)
            save_pending(pending, keys, config.enrollment_url)
            answer = await client.create_device(device_name, keys.public)
        try:
            device = read_device_answer(answer, config.enrollment_url)
        except InvalidAnswer as exc:
            raise IncompleteEnrollment(f"{exc}. {_kept(pending)}") from None
        try:
            written = _finish(output_dir, device, keys, pending)
        except IncompleteEnrollment:
            if chosen is not None:  # the account becomes usable; the files follow on a re-run
                await client.activate(chosen, phone)
            raise
        if chosen is not None:
            await client.activate(chosen, phone)
    finally:
        await client.aclose()
    return Enrolled(login, instance_name, written)


async def refresh_device(output_dir: Path, *, verify: ssl.SSLContext) -> Enrolled:
    """New configurations for an enrolled device, through its polling token; same key.

    The key comes from a config file written before or, after an enrollment that could not
    write them, from the pending-key file.
    """
    state_path = output_dir / STATE_FILE
    state = load_state(state_path)
    public_key = state["device"]["public_key"]
    pending = output_dir / PENDING_FILE
    saved = load_pending(pending)
    if saved is not None and saved.public != public_key:
        raise UsageError(
            f"{pending} holds the key of another unfinished enrollment; finish it with dgprov "
            "enroll, or move the file away"
        )
    keys = private_key_from_configs(state["configs"], public_key) or saved
    if keys is None:
        raise UsageError(
            "no WireGuard config or pending key with this device's private key was found; "
            "enroll again"
        )
    proxy_url = check_enrollment_url(state["instance"]["proxy_url"])
    client = ProxyClient(proxy_url, verify=verify)
    try:
        answer = await client.poll(str(state["polling_token"]))
    finally:
        await client.aclose()
    polled = read_device_answer(answer, proxy_url)
    # A poll issues no new polling token (upstream answers null): the one held stays valid.
    device = replace(polled, polling_token=polled.polling_token or str(state["polling_token"]))
    if saved is None:
        save_pending(pending, keys, proxy_url)
    written = _finish(output_dir, device, keys, pending)
    instance = state["instance"]
    return Enrolled(str(instance.get("username")), str(instance.get("name")), written)
