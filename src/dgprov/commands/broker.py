"""``dgprov broker``: serve just-in-time enrollment tokens to signed-in Entra users.

The service lives in ``dgprov.broker`` and needs the ``broker`` extra (starlette, uvicorn,
prometheus_client); it is imported here only when the command runs, as ``commands/sandbox.py``
does for the emulators, so ``import dgprov``, every other command and the single-file binary
load no web server. Without the extra the command exits 2 naming the install command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import click

from .. import environment
from ..credentials import read_secret
from ..urls import check_defguard_url
from .optional import load_optional
from .options import (
    EntraOptions,
    allow_guests_option,
    broker_entra_options,
    ca_bundle_option,
    terminal_prompt,
    warn,
)

BROKER_PACKAGE = "dgprov.broker"
SERVER_PACKAGES = {"starlette", "uvicorn", "prometheus_client", "jwt"}  # the broker extra
F = TypeVar("F", bound=Callable[..., Any])
INSTALL_HINT = (
    "the broker's web server is not installed; install it with pip install 'dgprov[broker]' "
    "(the single-file binary does not include it)"
)


def load_broker() -> ModuleType:
    """The ``dgprov.broker`` package, or a usage error (exit 2) saying how to install it: the
    binary leaves out the package itself, an installation without the extra its web server."""
    return load_optional(BROKER_PACKAGE, INSTALL_HINT, SERVER_PACKAGES)


def limit_option(name: str, default: float, help: str) -> Callable[[F], F]:
    """A connection limit: seconds (a float default) or a count (an int; 0 only for the
    per-client cap). The defaults are ``connection_limits.ConnectionLimits``' (docs/broker.md)."""
    seconds = isinstance(default, float)
    kind = click.FloatRange(0, 3600, min_open=True) if seconds else click.IntRange(0)
    return click.option(
        name,
        type=kind,
        default=default,
        show_default=True,
        metavar="SECONDS" if seconds else "N",
        help=help,
    )


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
@allow_guests_option
@limit_option(
    "--head-timeout",
    10.0,
    "A new connection's TLS handshake and request head, and a later request's head from its "
    "first byte, must be complete within this.",
)
@limit_option(
    "--idle-timeout", 75.0, "A kept-alive connection is closed after this long without a request."
)
@limit_option(
    "--write-timeout",
    10.0,
    "A connection whose client takes none of its answer for this long is closed.",
)
@limit_option(
    "--max-connections",
    1024,
    "Open connections per process; a new one beyond it closes a kept-alive one, else one still "
    "sending its head, from the address holding the most.",
)
@limit_option(
    "--max-requests",
    512,
    "Requests in flight per process; more are answered 503 busy (/healthz never is).",
)
@limit_option(
    "--max-connections-per-client",
    64,
    "Connections per client address (an IPv6 /64); 0: no cap, for a proxy in front that hides "
    "client addresses.",
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
    allow_guests: bool,
    head_timeout: float,
    idle_timeout: float,
    write_timeout: float,
    max_connections: int,
    max_requests: int,
    max_connections_per_client: int,
    workers: int,
) -> None:
    """Serve POST /v1/provisioning: for an Entra access token issued for the broker, the
    caller's Defguard enrollment URL and a fresh token, as provisioning.json holds them; and
    GET /v1/config: the broker's scope and tenant, so clients need only its URL.

    Prints one JSON line with broker_url on stdout when listening; one JSON audit line per
    request on stderr. Needs the broker extra: pip install 'dgprov[broker]'.
    """
    broker = load_broker()
    config_module = importlib.import_module(f"{BROKER_PACKAGE}.config")
    settings = entra.settings(ca_bundle, client_id_variable=environment.BROKER_CLIENT_ID)
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
        allow_guests=allow_guests,
        connections=importlib.import_module(f"{BROKER_PACKAGE}.connection_limits").ConnectionLimits(
            head_timeout=head_timeout,
            idle_timeout=idle_timeout,
            write_timeout=write_timeout,
            max_connections=max_connections,
            max_requests=max_requests,
            max_per_client=max_connections_per_client,
        ),
    )
    config.check()
    sys.exit(broker.serve(config))
