"""``dgprov sandbox``: hand over to the emulators of the separate ``dgprov-sandbox`` package.

This module and ``demo`` are the only product modules that may import ``dgprov_sandbox``, and
only lazily, when one of the two commands runs: the product installed on end-user machines (and
the single-file binary) carries no emulator, web server or fake authority.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import click

from .optional import load_optional

SANDBOX_PACKAGE = "dgprov_sandbox"
INSTALL_HINT = (
    "the dgprov-sandbox package is not installed; install it with `pip install ./sandbox` from a "
    "dgprov checkout (`make demo` does it for you)"
)


def load_sandbox() -> ModuleType:
    """The ``dgprov_sandbox`` package, or a usage error (exit 2) saying how to install it."""
    return load_optional(SANDBOX_PACKAGE, INSTALL_HINT)


@click.command(
    "sandbox",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def sandbox_command(arguments: tuple[str, ...]) -> None:
    """Run emulators of Defguard core, its enrollment proxy, Entra sign-in and Microsoft Graph
    on loopback until interrupted (needs the dgprov-sandbox package; `dgprov sandbox --help`
    lists its options)."""
    cli = importlib.import_module(f"{load_sandbox().__name__}.cli")
    cli.main(list(arguments), prog_name="dgprov sandbox")
