"""``dgprov demo``: the whole scenario on the embedded sandbox, with no network and no prompt.

This module and ``sandbox`` are the only product modules that load ``dgprov_sandbox``, lazily.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .. import client_files
from ..enrollment import enroll_device
from ..entra_auth import EntraSettings
from ..errors import DgprovError
from ..fetch import fetch_from_entra
from ..plan import EnrolledPolicy
from ..provision import ProvisionConfig
from .generate_tokens import entra_opener, run_generate_tokens, show_members
from .sandbox import load_sandbox

DEMO_GROUP = "vpn-users"
DEMO_PASSWORD = "Demo-Passw0rd!"  # the sample user's new password, in the throwaway sandbox only


def demo_client_job(sandbox: Any, settings: EntraSettings) -> None:
    """``fetch-config`` and ``enroll`` for one sample user, in a temporary data directory."""
    assert sandbox.entra is not None
    reader = next(
        u
        for u in sandbox.entra.users.values()
        if "Attribute Assignment Reader" in u.directory_roles
    )
    sandbox.entra.auto_approve_upn = reader.user_principal_name
    click.echo(
        f"dgprov fetch-config --source entra   (signed in as {reader.user_principal_name})",
        err=True,
    )
    config = asyncio.run(
        fetch_from_entra(settings, "Defguard", lambda message: click.echo(message, err=True))
    )
    with tempfile.TemporaryDirectory(prefix="dgprov-demo-") as home:
        data_dir = client_files.data_directory(home=Path(home))
        path = data_dir / client_files.FILE_NAME
        client_files.write(path, config)
        keys = ", ".join(json.loads(path.read_text("utf-8")))
        click.echo(f"wrote {path} with the keys {keys} (mode {path.stat().st_mode & 0o777:o})")
        click.echo("", err=True)
        click.echo("dgprov enroll   (first launch, without the desktop app)", err=True)
        enrolled = enroll_device(
            client_files.read(path),
            data_dir / "wireguard",
            device_name="demo-laptop",
            password=lambda: DEMO_PASSWORD,
            verify=ssl.create_default_context(cafile=settings.ca_bundle),
        )
        click.echo(f"Client Ready: {enrolled.username} is enrolled at {enrolled.instance}")
        for written in enrolled.configs:
            note = (
                f" (needs {written.mfa}: connect with the Defguard desktop client)"
                if written.mfa
                else ""
            )
            mode = written.path.stat().st_mode & 0o777
            click.echo(f"  {written.location}: {written.path} (mode {mode:o}){note}")


@click.command("demo")
@click.option(
    "--defguard-version",
    type=click.Choice(["1.6", "2.0"]),
    default="2.0",
    show_default=True,
    help="Which Defguard server line the embedded sandbox emulates.",
)
def demo_command(defguard_version: str) -> None:
    """Run the admin job against the embedded sandbox: a sample tenant with the awkward cases
    (apostrophes and + in addresses, a user only reachable through otherMails, a user missing
    in Entra, two Entra users sharing an address, disabled and enrolled users), with the
    device-code sign-in approved automatically; then the client job and the first launch for
    one sample user, up to WireGuard configurations ("Client Ready").
    """
    try:
        emulators = load_sandbox()
    except DgprovError as exc:
        click.echo(f"dgprov demo: error: {exc}", err=True)
        sys.exit(exc.exit_status)
    tenant = emulators.example_tenant()
    options = emulators.SandboxOptions(
        defguard_version="1.6" if defguard_version == "1.6" else "2.0",
        auto_approve_as="admin",
        synthetic_group=False,
    )
    click.echo(
        f"starting the sandbox (Defguard {defguard_version}, Entra ID, Graph) on 127.0.0.1",
        err=True,
    )
    try:
        with emulators.Sandbox(tenant, options) as sandbox:
            info = sandbox.info
            settings = EntraSettings(
                tenant=info["tenant_id"],
                client_id=info["client_id"],
                authority=info["authority_url"],
                graph_url=info["graph_url"],
                ca_bundle=info["ca_bundle"],
                auth="device-code",
                persist_cache=False,
            )
            click.echo(
                f"dgprov generate-tokens --url {info['defguard_url']} --group-name {DEMO_GROUP}",
                err=True,
            )
            status, members = asyncio.run(
                run_generate_tokens(
                    url=info["defguard_url"],
                    api_token=info["api_token"],
                    open_directory=entra_opener(settings, "Defguard"),
                    config=ProvisionConfig(
                        group_name=DEMO_GROUP, enrolled_policy=EnrolledPolicy.DESKTOP
                    ),
                    report=None,
                    dry_run=False,
                    confirm=False,
                    ca_bundle=info["ca_bundle"],
                )
            )
            show_members(members)
            click.echo("", err=True)
            demo_client_job(sandbox, settings)
    except emulators.SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    except DgprovError as exc:
        click.echo(f"dgprov demo: error: {exc}", err=True)
        sys.exit(exc.exit_status)
    click.echo(
        "demo finished: the failed member is the deliberate ambiguous case (two Entra users share "
        "one e-mail address)",
        err=True,
    )
    sys.exit(0 if status in (0, 1) else status)
