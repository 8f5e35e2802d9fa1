"""Enrolling a device with a provisioning.json, and refreshing it later: the order of the steps.

The desktop client's order is followed: ``enrollment/start`` with the token, then the session
goes on at the instance's proxy URL (same origin only), a key is registered with
``create_device`` (or found with ``network_info``), the configs are written, and
``activate_user`` comes last because it ends the session. The calls are ``proxy_client.py``'s,
the files ``device_files.py``'s; this module decides when each happens and what a refusal at
each step leaves behind, and is the only one of the three that imports the other two.

A device registered but not written must not cost a second device or the key. So the key is
saved (0600, ``PENDING_FILE``) before ``create_device``, the state file right after it, and the
pending key is removed only once every file is written. A run that finds a pending key reuses it:
``network_info`` returns the device registered with it, and only if there is none is it
registered again.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .answers import Answer
from .device_files import (
    PENDING_FILE,
    STATE_FILE,
    KeyPair,
    WrittenConfig,
    check_writable,
    load_pending,
    load_state,
    new_key_pair,
    planned_paths,
    private_key_from_configs,
    save_pending,
    save_state,
    write_configs,
)
from .errors import (
    IncompleteEnrollment,
    InvalidAnswer,
    InvalidProvisioningValue,
    MfaSetupRequired,
    OriginRefused,
    UsageError,
)
from .proxy_client import (
    TRAFFIC_DISABLE_ALL,
    DeviceAnswer,
    ProxyClient,
    read_device_answer,
    traffic_policy,
)
from .stored_value import FILE_TOKEN_KEY, FILE_URL_KEY, ProvisioningConfig
from .urls import check_enrollment_url, same_origin, shown_origin


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
        "Defguard requires multi-factor authentication at activation, which dgprov cannot set "
        f"up. Nothing was registered: finish in the Defguard desktop app{until}"
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
