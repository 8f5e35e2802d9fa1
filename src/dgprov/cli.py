"""The ``dgprov`` entry point: a click group that only registers the commands."""

from __future__ import annotations

import click

from . import __version__
from .commands.demo import demo_command
from .commands.enroll import enroll_command
from .commands.fetch_config import fetch_config_command
from .commands.generate_tokens import generate_tokens_command
from .commands.sandbox import sandbox_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dgprov")
def main() -> None:
    """Zero-touch provisioning of Defguard VPN clients from Entra ID and Active Directory."""


main.add_command(demo_command)
main.add_command(enroll_command)
main.add_command(fetch_config_command)
main.add_command(generate_tokens_command)
main.add_command(sandbox_command)
