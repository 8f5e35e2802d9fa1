"""The ``dgprov`` entry point: a click group that registers the commands and handles errors.

Every command raises ``DgprovError`` subclasses and lets them reach this one handler, which
prints ``dgprov <command>: error: <message>`` on stderr (and to the log, for --log-file) and
exits with the error's status.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from . import __version__, policy
from .commands.broker import broker_command
from .commands.demo import demo_command
from .commands.enroll import enroll_command
from .commands.fetch_config import fetch_config_command
from .commands.generate_tokens import generate_tokens_command
from .commands.logon_action import logon_action_command
from .commands.sandbox import sandbox_command
from .commands.sync import sync_command
from .errors import EXIT_USAGE, DgprovError

log = logging.getLogger("dgprov")


class DgprovGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DgprovError as exc:
            log.info(f"failed: {exc}")
            click.echo(f"{_command(ctx)}: error: {exc}", err=True)
            ctx.exit(exc.exit_status)
        except click.UsageError as exc:
            # click's own "Usage: … Error: Invalid value …" (a directory given as a file, an
            # unknown option), in dgprov's one error style, with --help named as the way on.
            message = exc.format_message().rstrip(".")
            joint = " " if message.endswith("?") else "; "  # after click's "Did you mean …?"
            click.echo(
                f"{_command(ctx)}: error: {message}{joint}see {_command(ctx)} --help", err=True
            )
            ctx.exit(EXIT_USAGE)


def _command(ctx: click.Context) -> str:
    return f"dgprov {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "dgprov"


@click.group(cls=DgprovGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dgprov")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Zero-touch provisioning of Defguard VPN clients from Entra ID and Active Directory."""
    if ctx.invoked_subcommand == "fetch-config":
        # Machine policy (HKLM\SOFTWARE\Policies\dgprov, macOS managed preferences) gives
        # fetch-config its defaults; what the command line says still wins.
        ctx.default_map = {"fetch-config": policy.machine_defaults()}


main.add_command(broker_command)
main.add_command(demo_command)
main.add_command(enroll_command)
main.add_command(fetch_config_command)
main.add_command(generate_tokens_command)
main.add_command(logon_action_command)
main.add_command(sandbox_command)
main.add_command(sync_command)
