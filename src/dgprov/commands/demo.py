"""``dgprov demo``: the whole scenario on the embedded sandbox, with no network and no prompt.

It drives the library API exactly as the commands do. This module and ``sandbox`` are the only
product modules that load ``dgprov_sandbox``, and only when the command runs; ``--broker`` also
loads the broker service (the ``broker`` extra) then, through ``dgprov broker``'s own loader.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .. import api, client_files
from ..errors import EXIT_SOME_FAILED, UsageError
from .broker import load_broker
from .render import echo_err, show_enrolled, show_members
from .sandbox import load_sandbox

DEMO_GROUP = "vpn-users"
DEMO_ATTRIBUTE_SET = "Defguard"
DEMO_PASSWORD = "Demo-Passw0rd!"  # the sample user's new password, in the throwaway sandbox only
DEMO_USER = "jdoe"  # the sample user of the client job, in the example tenant


def sandbox_settings(info: dict[str, Any], **overrides: Any) -> api.EntraSettings:
    """Signing in at the sandbox's authority (``info``: its ready line) with the cache in memory;
    by default as the public client with the device code, which the sandbox approves."""
    settings: dict[str, Any] = {
        "tenant": info["tenant_id"],
        "client_id": info["client_id"],
        "authority": info["authority_url"],
        "graph_url": info["graph_url"],
        "ca_bundle": info["ca_bundle"],
        "auth": "device-code",
        "persist_cache": False,
    }
    return api.EntraSettings(**{**settings, **overrides})


def client_job(settings: api.EntraSettings, heading: str, **fetch_options: Any) -> None:
    """``fetch-config`` (from ``fetch_options``' source) and ``enroll`` for the sample user, in a
    temporary data directory, up to "Client Ready"."""
    echo_err(heading)
    with tempfile.TemporaryDirectory(prefix="dgprov-demo-") as home:
        data_dir = client_files.data_directory(home=Path(home))
        fetched = api.fetch_config(
            entra=settings,
            output=data_dir / client_files.FILE_NAME,
            notify=echo_err,
            **fetch_options,
        )
        path = fetched.path
        assert path is not None
        keys = ", ".join(json.loads(path.read_text("utf-8")))
        click.echo(f"wrote {path} with the keys {keys} (mode {path.stat().st_mode & 0o777:o})")
        echo_err("")
        echo_err("dgprov enroll   (first launch, without the desktop app)")
        enrolled = api.enroll(
            provisioning_file=path,
            output_dir=data_dir / "wireguard",
            device_name="demo-laptop",
            password=lambda: DEMO_PASSWORD,
            ca_bundle=settings.ca_bundle,
        )
        headline = f"Client Ready: {enrolled.username} is enrolled at {enrolled.instance}"
        show_enrolled(enrolled, headline, with_modes=True)
        first = enrolled.configs[0].path
        click.echo(f"{first.name}, as wg-quick reads it, with its private key hidden:")
        click.echo(masked_config(first.read_text("utf-8")))


SECRET_KEYS = ("privatekey", "presharedkey")


def masked_config(text: str) -> str:
    """A wg-quick file for the screen: its keys' values hidden, everything else as written."""
    shown = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip().lower()
        shown.append(f"{line.split('=', 1)[0].rstrip()} = (hidden)" if key in SECRET_KEYS else line)
    return "\n".join(f"    {line}".rstrip() for line in shown)


def demo_client_job(sandbox: Any, settings: api.EntraSettings) -> None:
    """The stored-token client job: the sample user reads their own token from Entra ID."""
    reader = next(
        u
        for u in sandbox.entra.users.values()
        if "Attribute Assignment Reader" in u.directory_roles
    )
    sandbox.entra.auto_approve_upn = reader.user_principal_name
    client_job(
        settings,
        f"dgprov fetch-config --source entra   (signed in as {reader.user_principal_name})",
        source="entra",
        attribute_set_name=DEMO_ATTRIBUTE_SET,
    )


@contextmanager
def sandbox_broker(info: dict[str, Any], **overrides: Any) -> Iterator[str]:
    """``dgprov broker`` in this process against the sandbox whose ready line is ``info``, on a
    free loopback port; yields its URL and stops it gracefully. ``overrides`` replace
    ``BrokerConfig`` fields (the tests point it at a dead Defguard, shorten the windows)."""
    broker = load_broker()
    settings: dict[str, Any] = {
        "defguard_url": info["defguard_url"],
        "group_name": DEMO_GROUP,
        "api_token": info["api_token"],
        "entra": sandbox_settings(
            info,
            client_id=info["broker_client_id"],
            auth="client-secret",
            client_secret=info["broker_client_secret"],
        ),
        "listen": broker.config.parse_listen("127.0.0.1:0"),
        "ca_bundle": info["ca_bundle"],
        "allowed_client_ids": (info["client_id"],),  # dgprov's public client only
    }
    running = broker.start_in_thread(broker.BrokerConfig(**{**settings, **overrides}))
    try:
        yield running.url
    finally:
        running.stop()


def demo_broker_job(sandbox: Any, settings: api.EntraSettings) -> None:
    """The broker design: ``dgprov broker`` against the sandbox, then the client job through
    it, for a sample user who holds no directory role at all."""
    info = sandbox.info
    echo_err(
        f"dgprov broker --url {info['defguard_url']} --group-name {DEMO_GROUP} "
        f"--client-id {info['broker_client_id']} --auth client-secret --listen 127.0.0.1:0"
    )
    with sandbox_broker(info) as broker_url:
        upn = next(
            u.user_principal_name
            for u in sandbox.entra.users.values()
            if u.user_principal_name.startswith(f"{DEMO_USER}@")
        )
        sandbox.entra.auto_approve_upn = upn
        client_job(
            settings,
            f"dgprov fetch-config --source broker --broker-url {broker_url} --broker-scope "
            f"{info['broker_scope']}   (signed in as {upn}, no directory role)",
            source="broker",
            broker_url=broker_url,
            broker_scope=info["broker_scope"],
        )


def without_directory_roles(tenant: dict[str, Any], username: str) -> None:
    """The broker design needs no reader role: take it away from the sample user."""
    for person in tenant["users"]:
        if person.get("username") == username and person.get("entra"):
            person["entra"]["directory_roles"] = []


@click.command("demo")
@click.option(
    "--defguard-version",
    type=click.Choice(["1.6", "2.0"]),
    default="2.0",
    show_default=True,
    help="Which Defguard server line the embedded sandbox emulates.",
)
@click.option(
    "--broker",
    is_flag=True,
    help="The broker design instead: dgprov broker, then fetch-config --source broker.",
)
def demo_command(defguard_version: str, broker: bool) -> None:
    """Run the admin job against the embedded sandbox: a sample tenant with the awkward cases
    (apostrophes and + in addresses, a user only reachable through otherMails, a user missing
    in Entra, two Entra users sharing an address, disabled and enrolled users), with the
    device-code sign-in approved automatically; then the client job and the first launch for
    one sample user, up to WireGuard configurations ("Client Ready"). With --broker, no token is
    stored: the broker mints the sample user's token when their client job asks.
    """
    emulators = load_sandbox()
    options = emulators.SandboxOptions(
        defguard_version="1.6" if defguard_version == "1.6" else "2.0",
        auto_approve_as="admin",
        synthetic_group=False,
    )
    echo_err(f"starting the sandbox (Defguard {defguard_version}, Entra ID, Graph) on 127.0.0.1")
    tenant = emulators.example_tenant()
    # The sample user finishes here, without the desktop app, so the demo tenant does not ask
    # for MFA setup at activation (Defguard derives it from the internal-MFA location otherwise).
    tenant["instance"]["mfa_required"] = False
    echo_err(
        f"the demo turns off MFA at activation for the sample tenant, so {DEMO_USER} can finish "
        "without the desktop app; where Defguard requires it, dgprov enroll stops and names "
        "the desktop app as the next step"
    )
    if broker:
        without_directory_roles(tenant, DEMO_USER)
    exit_status = 0
    try:
        with emulators.Sandbox(tenant, options) as sandbox:
            settings = sandbox_settings(sandbox.info)
            if broker:
                demo_broker_job(sandbox, settings)
            else:
                exit_status = demo_admin_job(sandbox.info, settings)
                echo_err("")
                demo_client_job(sandbox, settings)
    except emulators.SandboxError as exc:
        raise UsageError(f"the sandbox could not start: {exc}") from None
    if not broker:
        echo_err(
            "demo finished: the failed member is the deliberate ambiguous case (two Entra users "
            "share one e-mail address)"
        )
    sys.exit(exit_status)


def demo_admin_job(info: dict[str, Any], settings: api.EntraSettings) -> int:
    """``generate-tokens`` for the sample group; the exit status the demo ends with."""
    echo_err(f"dgprov generate-tokens --url {info['defguard_url']} --group-name {DEMO_GROUP}")
    record = api.generate_tokens(
        url=info["defguard_url"],
        group_name=DEMO_GROUP,
        api_token=info["api_token"],
        entra=settings,
        attribute_set_name=DEMO_ATTRIBUTE_SET,
        ca_bundle=info["ca_bundle"],
        notify=echo_err,
    )
    show_members(record.members)
    status = record.exit_status
    return 0 if status in (0, EXIT_SOME_FAILED) else status
