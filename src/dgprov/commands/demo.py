"""``dgprov demo``: the whole scenario on the embedded sandbox, with no network and no prompt.

It drives the library API exactly as the three commands do. This module and ``sandbox`` are the
only product modules that load ``dgprov_sandbox``, and only when the command runs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from .. import api, client_files
from ..errors import EXIT_SOME_FAILED, UsageError
from .render import echo_err, show_enrolled, show_members
from .sandbox import load_sandbox

DEMO_GROUP = "vpn-users"
DEMO_ATTRIBUTE_SET = "Defguard"
DEMO_PASSWORD = "Demo-Passw0rd!"  # the sample user's new password, in the throwaway sandbox only


def demo_client_job(sandbox: Any, settings: api.EntraSettings) -> None:
    """``fetch-config`` and ``enroll`` for one sample user, in a temporary data directory."""
    reader = next(
        u
        for u in sandbox.entra.users.values()
        if "Attribute Assignment Reader" in u.directory_roles
    )
    sandbox.entra.auto_approve_upn = reader.user_principal_name
    echo_err(f"dgprov fetch-config --source entra   (signed in as {reader.user_principal_name})")
    with tempfile.TemporaryDirectory(prefix="dgprov-demo-") as home:
        data_dir = client_files.data_directory(home=Path(home))
        fetched = api.fetch_config(
            source="entra",
            entra=settings,
            attribute_set_name=DEMO_ATTRIBUTE_SET,
            output=data_dir / client_files.FILE_NAME,
            notify=echo_err,
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
    try:
        with emulators.Sandbox(tenant, options) as sandbox:
            info = sandbox.info
            settings = api.EntraSettings(
                tenant=info["tenant_id"],
                client_id=info["client_id"],
                authority=info["authority_url"],
                graph_url=info["graph_url"],
                ca_bundle=info["ca_bundle"],
                auth="device-code",
                persist_cache=False,
            )
            echo_err(
                f"dgprov generate-tokens --url {info['defguard_url']} --group-name {DEMO_GROUP}"
            )
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
            echo_err("")
            demo_client_job(sandbox, settings)
    except emulators.SandboxError as exc:
        raise UsageError(f"the sandbox could not start: {exc}") from None
    echo_err(
        "demo finished: the failed member is the deliberate ambiguous case (two Entra users share "
        "one e-mail address)"
    )
    sys.exit(0 if record.exit_status in (0, EXIT_SOME_FAILED) else record.exit_status)
