"""The sandbox's command line: ``python -m dgprov_sandbox`` and, through the product,
``dgprov sandbox``. It runs the local emulators until interrupted."""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from .defguard_directory import USER_ORDERS
from .entra_setup import DUPLICATE_ANSWERS, ENTRA_SETUP_MODES, SCOPED_ROLE_ASSIGNERS
from .graph_attributes import CSA_READ_ROLE_CHOICES, EMPTY_PATCH_RULES
from .http_common import FaultSettings
from .server import Sandbox, SandboxError, SandboxOptions
from .tenant import TenantError, load_tenant, synthetic_tenant

DEFAULT_USERS = 10


def _loopback_host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        loopback = value == "localhost" or ipaddress.ip_address(value).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise click.BadParameter(
            f"{value!r} is not a loopback address; the sandbox only listens on 127.0.0.0/8, ::1 "
            "or localhost"
        )
    return value


def _check_rates(error_rate: float, drop_rate: float) -> None:
    if error_rate + drop_rate > 1:
        raise click.UsageError(
            f"--error-rate {error_rate} plus --drop-rate {drop_rate} exceed 1; lower one of them"
        )


@click.command("sandbox", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--tenant",
    "tenant_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Tenant file (JSON, see docs/tenant.md); conflicts with --users.",
)
@click.option(
    "--users",
    type=click.IntRange(min=0),
    help=f"Generate a synthetic tenant with this many group members (default {DEFAULT_USERS}).",
)
@click.option(
    "--defguard-version",
    type=click.Choice(["1.6", "2.0"]),
    default="2.0",
    show_default=True,
    help="Which Defguard server line to emulate.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=_loopback_host,
    help="Loopback address to listen on.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Core port (0 = free).",
)
@click.option(
    "--proxy-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Enrollment proxy port (0 = free).",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Added latency per request.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of requests answered 500/503.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of connections dropped unanswered.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for the synthetic tenant and injected faults.",
)
@click.option(
    "--authority-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Entra sign-in port (0 = free).",
)
@click.option(
    "--graph-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Microsoft Graph port (0 = free).",
)
@click.option(
    "--auto-approve-as",
    metavar="UPN",
    help="Sign this Entra user in on every device code and authorize request "
    "('admin' = the sample admin).",
)
@click.option(
    "--throttle",
    type=click.Choice(["off", "documented"]),
    default="off",
    show_default=True,
    help="Graph throttling: off, or the documented identity-and-access limits.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every throttling window by this factor.",
)
@click.option(
    "--quota-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every throttling quota by this factor.",
)
@click.option(
    "--user-list-order",
    type=click.Choice(USER_ORDERS),
    default="heap",
    show_default=True,
    help="Order of Defguard's user list (no ORDER BY upstream): heap = creation order with "
    "updated users moving last, stable = id order, unstable = reshuffled per request.",
)
@click.option(
    "--empty-attribute-patch",
    type=click.Choice(EMPTY_PATCH_RULES),
    default="checked",
    show_default=True,
    help="Graph PATCH of an attribute set without values: 204 after the permission checks, "
    "204 without them, or 400.",
)
@click.option(
    "--csa-read-role",
    type=click.Choice(CSA_READ_ROLE_CHOICES),
    default="reader",
    show_default=True,
    help="Directory role a delegated caller needs to read custom security attributes: "
    "Attribute Assignment Reader (or Administrator), or Administrator only.",
)
@click.option(
    "--entra-setup",
    type=click.Choice(ENTRA_SETUP_MODES),
    default="full",
    show_default=True,
    help="full: the tenant file's attribute set and apps; none: the tenant before `dgprov "
    "setup-entra` (users, groups and admin, no attribute set, no dgprov apps).",
)
@click.option(
    "--entra-replication-delay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Objects created through Graph answer 404 and are missing from lists for this long.",
)
@click.option(
    "--entra-duplicate-answer",
    type=click.Choice(DUPLICATE_ANSWERS),
    default="bad-request",
    show_default=True,
    help="Undocumented answer to a duplicate attribute set, definition, role or app role "
    "assignment: 400 Request_BadRequest, or 409 Request_MultipleObjectsWithSameKeyValue.",
)
@click.option(
    "--scoped-role-assigner",
    type=click.Choice(SCOPED_ROLE_ASSIGNERS),
    default="privileged-role-administrator",
    show_default=True,
    help="Who may assign attribute roles at an attribute set's scope: Privileged Role "
    "Administrator only, or also an Attribute Assignment Administrator of that set.",
)
def main(
    tenant_file: Path | None,
    users: int | None,
    defguard_version: str,
    host: str,
    port: int,
    proxy_port: int,
    latency_ms: float,
    error_rate: float,
    drop_rate: float,
    seed: int,
    authority_port: int,
    graph_port: int,
    auto_approve_as: str | None,
    throttle: str,
    time_scale: float,
    quota_scale: float,
    user_list_order: str,
    empty_attribute_patch: str,
    csa_read_role: str,
    entra_setup: str,
    entra_replication_delay: float,
    entra_duplicate_answer: str,
    scoped_role_assigner: str,
) -> None:
    """Run emulators of Defguard core, its enrollment proxy, Entra sign-in and Microsoft Graph
    on loopback until interrupted.

    When ready, prints one JSON object on one line to stdout (defguard_url, proxy_url,
    api_token, defguard_version, authority_url, graph_url, tenant_id, client_id, ca_bundle,
    admin_upn, user_upns, confidential_client_id, client_secret, broker_client_id,
    broker_client_secret, broker_scope, group_name for --users, and entra_setup and
    setup_client_id for --entra-setup none). Logs go to stderr.
    """
    if tenant_file is not None and users is not None:
        raise click.UsageError("--tenant and --users conflict; give one of them")
    _check_rates(error_rate, drop_rate)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="dgprov-sandbox: %(message)s")
    try:
        if tenant_file is not None:
            tenant = load_tenant(tenant_file)
        else:
            tenant = synthetic_tenant(
                DEFAULT_USERS if users is None else users, seed, entra_setup=entra_setup
            )
    except TenantError as exc:
        raise click.ClickException(str(exc)) from None
    options = SandboxOptions(
        defguard_version="1.6" if defguard_version == "1.6" else "2.0",
        host=host,
        port=port,
        proxy_port=proxy_port,
        faults=FaultSettings(
            latency_ms=latency_ms, error_rate=error_rate, drop_rate=drop_rate, seed=seed
        ),
        synthetic_group=tenant_file is None,
        authority_port=authority_port,
        graph_port=graph_port,
        throttle="documented" if throttle == "documented" else "off",
        time_scale=time_scale,
        quota_scale=quota_scale,
        auto_approve_as=auto_approve_as,
        user_list_order=next(o for o in USER_ORDERS if o == user_list_order),
        empty_attribute_patch=next(r for r in EMPTY_PATCH_RULES if r == empty_attribute_patch),
        csa_read_role=next(r for r in CSA_READ_ROLE_CHOICES if r == csa_read_role),
        entra_setup=next(m for m in ENTRA_SETUP_MODES if m == entra_setup),
        entra_replication_delay=entra_replication_delay,
        entra_duplicate_answer=next(a for a in DUPLICATE_ANSWERS if a == entra_duplicate_answer),
        scoped_role_assigner=next(r for r in SCOPED_ROLE_ASSIGNERS if r == scoped_role_assigner),
    )
    sandbox = Sandbox(tenant, options)
    try:
        info = sandbox.start()
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    click.echo(json.dumps(info))
    sys.stdout.flush()
    try:
        while not stop.wait(3600):
            pass
    finally:
        logging.getLogger("dgprov_sandbox").info("stopping")
        sandbox.stop()
