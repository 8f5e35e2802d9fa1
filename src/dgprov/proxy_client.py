"""The one client module for the Defguard enrollment proxy: its calls, refusals and answers.

The protocol is the desktop client's: ``POST <enrollment_url>/api/v1/enrollment/start`` with the
token opens a session held in the ``defguard_proxy`` cookie; ``create_device`` registers a public
key and returns one wg-quick config per location (``network_info`` returns them again for a key
registered before); ``activate_user`` sets the password of a user who is not enrolled yet and ends
the session; ``poll`` returns a device's configurations again for its polling token.

What the proxy sends is not trusted: every answer is parsed field by field (``answers.Answer``),
each configuration is rebuilt from validated values (``wireguard.py``), and the proxy's own
address for later refreshes must be the origin the token was sent to.

It is a module of its own because each remote system is reached through exactly one module: the
flow (``enrollment.py``) decides the order of these calls and the files (``device_files.py``)
are written from what ``read_device_answer`` returns, but nothing else builds proxy URLs or reads
its answers. It imports neither of them.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from . import __version__
from .answers import Answer
from .errors import EnrollmentRefused, InvalidWireGuardConfig, TransportFailure
from .reissue import ask_for_one
from .retry import RetryPolicy
from .transport import ServiceConnection
from .urls import shown_origin
from .wireguard import WireGuardConfig, interface_name, parse

SERVICE = "the enrollment proxy"
MFA_MODES = {2: "internal MFA", 3: "external MFA"}
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
    ask = ask_for_one()
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


def _shown(instance: Answer, key: str) -> str | None:
    """A descriptive value of the instance (a number or a string), as text."""
    value = instance.value.get(key)
    return None if value is None or isinstance(value, (dict, list)) else str(value)
