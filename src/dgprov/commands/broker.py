"""``dgprov broker``: serve just-in-time enrollment tokens to signed-in Entra users.

The service lives in ``dgprov.broker`` and needs the ``broker`` extra (starlette, uvicorn,
prometheus_client); it is imported here only when the command runs, as ``commands/sandbox.py``
does for the emulators, so ``import dgprov``, every other command and the single-file binary
load no web server. Without the extra the command exits 2 naming the install command.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import click

from .. import environment
from ..credentials import read_secret
from ..urls import check_defguard_url
from .optional import load_optional
from .options import EntraOptions, broker_entra_options, ca_bundle_option, terminal_prompt, warn

BROKER_PACKAGE = "dgprov.broker"
SERVER_PACKAGES = {"starlette", "uvicorn", "prometheus_client", "jwt"}  # the broker extra
INSTALL_HINT = (
    "the broker's web server is not installed; install it with pip install 'dgprov[broker]' "
    "(the single-file binary does not include it)"
)


def load_broker() -> ModuleType:
    """The ``dgprov.broker`` package, or a usage error (exit 2) saying how to install it: the
    binary leaves out the package itself, an installation without the extra its web server."""
    return load_optional(BROKER_PACKAGE, INSTALL_HINT, SERVER_PACKAGES)


@click.command("broker")
@click.option("--url", required=True, help="Defguard core URL (https; http only on loopback).")
@click.option("--group-name", required=True, help="Defguard group whose members may get tokens.")
@click.option(
    "--api-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the Defguard API token (or set {environment.DEFGUARD_API_TOKEN}).",
)
@broker_entra_options
@ca_bundle_option
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to serve on; port 0 picks a free one. Plain HTTP on loopback only.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate (chain) to serve HTTPS with; needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert."
)
@click.option(
    "--token-lifetime",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Lifetime of the start_enrollment tokens issued, e.g. 30m, 1h or 1d.",
)
@click.option(
    "--enrolled-users",
    type=click.Choice(["desktop", "refuse"]),
    default="desktop",
    show_default=True,
    help="For users Defguard counts as enrolled: a start_desktop token, or 403.",
)
@click.option(
    "--rate-window",
    type=click.FloatRange(0, 86_400),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="A user who got a token is refused (429) until this many seconds have passed.",
)
@click.option(
    "--allowed-client-id",
    "allowed_client_ids",
    multiple=True,
    metavar="APP_ID",
    help="Accept only tokens requested by this client app (azp / appid), e.g. the dgprov public "
    "client's application id; repeatable. Without it, any app the user consented to.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sharing the listening socket (POSIX).",
)
def broker_command(
    *,
    url: str,
    group_name: str,
    api_token_file: Path | None,
    entra: EntraOptions,
    ca_bundle: str | None,
    listen: str,
    tls_cert: str | None,
    tls_key: str | None,
    token_lifetime: str,
    enrolled_users: str,
    rate_window: float,
    allowed_client_ids: tuple[str, ...],
    workers: int,
) -> None:
    """Serve POST /v1/provisioning: for an Entra access token issued for the broker, the
    caller's Defguard enrollment URL and a fresh token, as provisioning.json holds them.

    Prints one JSON line with broker_url on stdout when listening; one JSON audit line per
    request on stderr. Needs the broker extra: pip install 'dgprov[broker]'.
    """
    broker = load_broker()
    config_module = importlib.import_module(f"{BROKER_PACKAGE}.config")
    settings = entra.settings(ca_bundle)
    token = read_secret(
        what="Defguard API token",
        env_var=environment.DEFGUARD_API_TOKEN,
        file=api_token_file,
        file_option="--api-token-file",
        prompt=terminal_prompt(),
        warn=warn,
    )
    config = broker.BrokerConfig(
        defguard_url=check_defguard_url(url),
        group_name=group_name,
        api_token=token,
        entra=settings,
        listen=config_module.parse_listen(listen),
        tls_cert=tls_cert,
        tls_key=tls_key,
        token_lifetime=token_lifetime,
        enrolled_users=enrolled_users,
        workers=workers,
        ca_bundle=ca_bundle,
        rate_window_seconds=rate_window,
        allowed_client_ids=allowed_client_ids,
    )
    config.check()
    sys.exit(broker.serve(config))
