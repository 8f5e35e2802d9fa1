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
import os
import re
import ssl
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
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
    MfaSetupRequired,
    OriginRefused,
    TransportFailure,
    UsageError,
)
from .private_files import write_private_file
from .retry import RetryPolicy
from .stored_value import FILE_TOKEN_KEY, FILE_URL_KEY, ProvisioningConfig
from .transport import ServiceConnection
from .urls import check_enrollment_url, same_origin, shown_origin
from .wireguard import WireGuardConfig, as_client_writes, interface_name, parse

SERVICE = "the enrollment proxy"
MFA_MODES = {2: "internal MFA", 3: "external MFA"}
STATE_FILE = "dgprov-enrollment.json"
PENDING_FILE = "dgprov-pending-key.json"
POLICY = RetryPolicy(attempts=1, deadline=60.0)
"""One attempt per call: ``create_device`` is not idempotent, and a person is waiting."""
CLIENT_VERSION = "1.6.9"
"""Sent as ``defguard-client-version``: the desktop client whose behaviour dgprov follows (C4-C9);
at or above core's and the proxy's minimum client version (1.6.0), and core shows every location
(Windows service locations are hidden only from clients that send no version headers)."""
PLATFORMS = {"linux": "linux", "win32": "windows", "darwin": "macos"}
TRAFFIC_NONE, TRAFFIC_DISABLE_ALL, TRAFFIC_FORCE_ALL = 0, 1, 2
"""``InstanceInfo.client_traffic_policy``: 0 the user chooses per location, 1 routing all traffic
is disabled (the server's AllowedIPs), 2 all traffic is forced (client location.rs:290-298)."""
ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
PHONE_NUMBER = re.compile(
    rf"(\+?\d{{1,3}}[{RUST_WHITESPACE}]?)?(\(\d{{1,3}}\)|\d{{1,3}})[-{RUST_WHITESPACE}]?\d{{1,4}}"
    rf"[-{RUST_WHITESPACE}]?\d{{1,4}}?\Z"
)
r"""Core's ``PHONE_NUMBER_REGEX`` (v2.0.1 lib.rs:231, v1.6.6 :177) as Rust's regex reads it:
``\d`` is any Unicode decimal digit (as Python's), ``\s`` the White_Space property (Python's
also takes U+001C-U+001F, hence the class), ``$`` only at the very end (``\Z``); matched at the
start (``re.match``) for its ``^``."""


def poll_refusal_message(status: int, error: str) -> str:
    """What a refused poll (``--refresh``) means: core answers 403 for an unknown polling token
    and for a disabled owner (v2.0.1 enterprise/grpc/polling.rs:41, :87)."""
    if status == 403:
        return (
            f"the enrollment proxy refused the polling token (403: {error}): the polling token "
            "is no longer valid or your Defguard account is disabled; enroll again with a new "
            "token from your administrator (dgprov fetch-config, then dgprov enroll)"
        )
    return f"the enrollment proxy answered {status}: {error}"


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
    """Core's ``check_password_strength`` (v2.0.1 handlers/user.rs:96-118), checked before the
    server sees it: 8 to 128 *bytes* of UTF-8, and ASCII classes only (``is_ascii_*``), so
    "é" counts two towards the length and is neither a lower-case letter nor punctuation."""
    problems = []
    if not 8 <= len(password.encode("utf-8")) <= 128:
        problems.append("8 to 128 bytes (a character outside ASCII counts 2 to 4)")
    if not any("a" <= c <= "z" for c in password):
        problems.append("an ASCII lower-case letter (a-z)")
    if not any("A" <= c <= "Z" for c in password):
        problems.append("an ASCII upper-case letter (A-Z)")
    if not any("0" <= c <= "9" for c in password):
        problems.append("an ASCII digit (0-9)")
    if not any(c in ASCII_PUNCTUATION for c in password):
        problems.append("an ASCII punctuation mark such as ! or -")
    if problems:
        raise UsageError(f"the password needs {', '.join(problems)} (Defguard's password rules)")


def check_phone(phone: str) -> None:
    """Core's phone rule, checked before anything is sent (core refuses after the session)."""
    if PHONE_NUMBER.match(phone) is None:
        raise UsageError(
            "--phone: Defguard refuses this phone number; use digits with an optional +country "
            "code, spaces or dashes, e.g. +48 123 456 789"
        )


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


def api_base(url: str) -> str:
    """The client's ``buildProxyUrl``: one trailing ``/`` stripped, then ``/api/v1``."""
    return url.removesuffix("/") + "/api/v1"


def client_headers() -> dict[str, str]:
    """What the desktop client sends with every proxy call (C9)."""
    return {
        "User-Agent": f"dgprov/{__version__}",
        "defguard-client-version": CLIENT_VERSION,
        "defguard-client-platform": PLATFORMS.get(sys.platform, sys.platform),
    }


class ProxyClient:
    """One enrollment session against the proxy behind ``enrollment_url``.

    After ``start`` the session continues at ``instance.proxy_url`` as the desktop client does
    (``follow``), with the session cookie sent explicitly, and only within the enrollment URL's
    origin: the cookie holds the token.
    """

    def __init__(self, enrollment_url: str, *, verify: ssl.SSLContext) -> None:
        self.base = api_base(enrollment_url)
        self.session: str | None = None
        self.http = ServiceConnection(
            SERVICE,
            1,
            base_url=self.base,
            policy=POLICY,
            verify=verify,
            timeout=30,
            headers=client_headers(),
        )

    def follow(self, proxy_url: str) -> None:
        """Send the rest of the session to ``proxy_url`` (checked to be the same origin)."""
        self.base = api_base(proxy_url)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        absent: int | None = None,
        explain: Callable[[int, str], str] = refusal_message,
    ) -> httpx.Response | None:
        """The proxy's answer; None for the status ``absent`` (e.g. 404, "no such device")."""
        headers = {"Cookie": f"defguard_proxy={self.session}"} if self.session else {}
        try:
            response = await self.http.request("POST", self.base + path, json=body, headers=headers)
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
            raise EnrollmentRefused(explain(response.status_code, error))
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
        self.session = response.cookies["defguard_proxy"]
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
        response = await self._post("/poll", {"token": polling_token}, explain=poll_refusal_message)
        assert response is not None
        return Answer.of(response, SERVICE).child("device_config")


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
    traffic_policy: int = TRAFFIC_NONE


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
    policy = TRAFFIC_NONE
    if instance is not None:
        described = {key: _shown(instance, key) for key in described}
        policy = traffic_policy(instance)
    return DeviceAnswer(
        device_id=device.integer("id"),
        device_name=device.text("name"),
        polling_token=answer.optional_text("token"),
        instance={**described, "proxy_url": proxy_url},
        locations=locations,
        problems=problems,
        traffic_policy=policy,
    )


def traffic_policy(instance: Answer) -> int:
    """``client_traffic_policy`` as the client reads it: absent or unknown values are 0."""
    value = instance.optional_integer("client_traffic_policy")
    return value if value in (TRAFFIC_DISABLE_ALL, TRAFFIC_FORCE_ALL) else TRAFFIC_NONE


def routes_all_traffic(policy: int, chosen: bool) -> bool:
    """The client's rule (location.rs:290-298): forced, disabled, or the user's choice."""
    if policy == TRAFFIC_FORCE_ALL:
        return True
    return chosen and policy == TRAFFIC_NONE


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


@dataclass(frozen=True)
class Enrolled:
    username: str
    instance: str
    configs: list[WrittenConfig]
    provisioning_note: str | None = None  # what became of the used provisioning.json


def _finish(
    output_dir: Path,
    device: DeviceAnswer,
    keys: KeyPair,
    pending: Path,
    *,
    route_all_traffic: bool,
    enrollment_url: str | None,
) -> list[WrittenConfig]:
    """State first, then the files; ``pending`` (which holds ``keys``) goes only when every
    file is written."""
    save_state(
        output_dir / STATE_FILE,
        device,
        keys,
        planned_paths(output_dir, device),
        route_all_traffic=route_all_traffic,
        enrollment_url=enrollment_url,
    )
    written, problems = write_configs(output_dir, device, keys, route_all_traffic=route_all_traffic)
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


def followed_proxy_url(started: Answer, enrollment_url: str) -> str:
    """Where the session goes on after ``start``: ``instance.proxy_url``, as the desktop client
    does (C4), if it is the enrollment URL's origin; the token and the session cookie never
    leave that origin. No proxy_url (an empty one) keeps the enrollment URL."""
    instance = started.child("instance")
    proxy_url = instance.optional_text("proxy_url")
    if not proxy_url:
        return enrollment_url
    if not proxy_url.lower().startswith(("https://", "http://")) or not same_origin(
        proxy_url, enrollment_url
    ):
        raise OriginRefused(
            f"Defguard's public proxy URL ({shown_origin(proxy_url)}) is not the origin of the "
            f"enrollment URL ({shown_origin(enrollment_url)}); dgprov sends the session only to "
            "the enrollment URL's origin, so nothing was registered: ask your administrator to "
            "make Defguard's public proxy URL and the enrollment URL agree"
        )
    return proxy_url


def refuse_without_mfa(started: Answer) -> None:
    """Defguard asks for MFA set-up before activation (``settings.mfa_required``; the desktop app
    has no "Skip" then, client ChooseMfaStep.tsx:68); dgprov does not set MFA up, so it stops
    here: after ``start``, before a device is registered, the password sent or the file moved."""
    if not started.has("settings") or not started.child("settings").flag("mfa_required"):
        return
    deadline = started.optional_integer("deadline_timestamp")
    until = (
        f" before {datetime.fromtimestamp(deadline, timezone.utc):%Y-%m-%d %H:%M} UTC"
        if deadline is not None
        else ""
    )
    raise MfaSetupRequired(
        "Defguard requires multi-factor authentication to be set up when the account is "
        "activated, which dgprov cannot do: open the Defguard desktop app, which reads the same "
        f"provisioning.json, and finish there{until} (the session this started ends then; after "
        "it, ask your administrator for a new token). Nothing was registered"
    )


async def enroll_device(
    config: ProvisioningConfig,
    output_dir: Path,
    *,
    device_name: str,
    password: Callable[[], str],
    phone: str | None = None,
    verify: ssl.SSLContext,
    route_all_traffic: bool = False,
) -> Enrolled:
    """Start the session, go on at the instance's proxy URL, register a key (or find the one
    registered before), write the configs, then activate if needed.

    ``password`` is asked for only when the account is not enrolled yet, and before anything
    is registered, so a refused password changes nothing. An account that must set up MFA, a
    proxy URL of another origin, or ``route_all_traffic`` where the instance disables it are
    refused right after ``start``: nothing registered, the token good for the session.
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
        proxy_url = followed_proxy_url(started, config.enrollment_url)
        if route_all_traffic and traffic_policy(instance) == TRAFFIC_DISABLE_ALL:
            raise UsageError(
                "--route-all-traffic: your administrator disabled routing all traffic through "
                "the VPN (client traffic policy 1); run dgprov enroll again without it "
                "(nothing was registered)"
            )
        enrolled = user.flag("enrolled")
        if not enrolled:
            refuse_without_mfa(started)
        client.follow(proxy_url)
        chosen = None if enrolled else password()
        answer = await client.network_info(keys.public) if keys is not None else None
        if keys is None:
            keys = new_key_pair()
        if answer is None:
            output_dir.mkdir(parents=True, exist_ok=True)
            save_pending(pending, keys, config.enrollment_url)
            answer = await client.create_device(device_name, keys.public)
        try:
            device = read_device_answer(answer, proxy_url)
        except InvalidAnswer as exc:
            raise IncompleteEnrollment(f"{exc}. {_kept(pending)}") from None
        try:
            written = _finish(
                output_dir,
                device,
                keys,
                pending,
                route_all_traffic=route_all_traffic,
                enrollment_url=config.enrollment_url,
            )
        except IncompleteEnrollment:
            if chosen is not None:  # the account becomes usable; the files follow on a re-run
                await client.activate(chosen, phone)
            raise
        if chosen is not None:
            await client.activate(chosen, phone)
    finally:
        await client.aclose()
    return Enrolled(login, instance_name, written)


async def refresh_device(
    output_dir: Path, *, verify: ssl.SSLContext, route_all_traffic: bool | None = None
) -> Enrolled:
    """New configurations for an enrolled device, through its polling token; same key.

    The key comes from a config file written before or, after an enrollment that could not
    write them, from the pending-key file. ``route_all_traffic`` None keeps the saved choice.
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
    if route_all_traffic is None:
        route_all_traffic = state.get("route_all_traffic") is True
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
    enrollment_url = state.get("enrollment_url")
    written = _finish(
        output_dir,
        device,
        keys,
        pending,
        route_all_traffic=route_all_traffic,
        enrollment_url=enrollment_url if isinstance(enrollment_url, str) else None,
    )
    instance = state["instance"]
    return Enrolled(str(instance.get("username")), str(instance.get("name")), written)


def retire_provisioning_file(path: Path) -> str:
    """Rename a used provisioning.json in place, so the desktop app, which reads it whenever it
    has no instance and never deletes it (C3), does not start a second enrollment with the
    token and register a second device (C5). Renaming keeps the file's 0600 mode. Returns the
    line to show; a failed rename is said, not raised: the enrollment itself succeeded."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.used-{stamp}")
    try:
        os.replace(path, target)
    except OSError as exc:
        return (
            f"warning: could not rename {path} ({exc.strerror}); delete it, or the Defguard "
            "desktop app may use the spent token and register a second device"
        )
    return (
        f"renamed {path} to {target.name} (its token is spent; the desktop app will not reuse it)"
    )
