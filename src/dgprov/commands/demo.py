"""``dgprov demo``: the whole scenario on the embedded sandbox, with no network and no prompt.

This module and ``sandbox`` are the only product modules allowed to import ``dgprov.sandbox``.
"""

from __future__ import annotations

import asyncio
import sys

import click

from ..entra_auth import EntraSettings
from ..errors import DgprovError
from ..plan import EnrolledPolicy
from ..provision import ProvisionConfig
from ..sandbox import Sandbox, SandboxError, SandboxOptions, example_tenant
from .generate_tokens import entra_opener, run_generate_tokens, show_members

DEMO_GROUP = "vpn-users"


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
    device-code sign-in approved automatically.
    """
    tenant = example_tenant()
    options = SandboxOptions(
        defguard_version="1.6" if defguard_version == "1.6" else "2.0",
        auto_approve_as="admin",
        synthetic_group=False,
    )
    click.echo(
        f"starting the sandbox (Defguard {defguard_version}, Entra ID, Graph) on 127.0.0.1",
        err=True,
    )
    try:
        with Sandbox(tenant, options) as sandbox:
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
    except SandboxError as exc:
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
