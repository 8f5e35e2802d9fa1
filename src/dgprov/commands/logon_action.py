"""``dgprov logon-action register|remove``: the scheduled task that runs ``fetch-config`` at each
user's logon. dgprov's MSI runs these as SYSTEM; an administrator can run them to repair."""

from __future__ import annotations

import click

from .. import logon_action
from .render import echo_err


@click.group("logon-action")
def logon_action_command() -> None:
    """The Windows task that runs fetch-config --at-logon in each user's own session."""


@logon_action_command.command("register")
@click.option(
    "--policy",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Also write this value to HKLM\\SOFTWARE\\Policies\\dgprov (repeatable; an empty "
    "value is left out).",
)
def register_command(settings: tuple[str, ...]) -> None:
    """Register the task for the installed dgprov (as an administrator or SYSTEM)."""
    values = logon_action.policy_values(list(settings))  # checked before anything is changed
    folder = logon_action.installed_folder()
    logon_action.register(folder, values)
    echo_err(f"registered {logon_action.TASK_NAME}: {logon_action.logon_command(folder)}")


@logon_action_command.command("remove")
def remove_command() -> None:
    """Delete the task and its record; every user's provisioning.json stays."""
    logon_action.remove()
    echo_err(f"removed {logon_action.TASK_NAME}")
