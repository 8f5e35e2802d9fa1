"""``dgprov generate-tokens``: issue enrollment tokens for a Defguard group and store them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..credentials import check_service_url, read_secret
from ..defguard import DefguardClient
from ..durations import parse_lifetime
from ..entra_auth import EntraSettings, EntraSignIn
from ..errors import EXIT_OK, EXIT_SOME_FAILED, DgprovError, UsageError
from ..graph import GraphClient
from ..plan import EnrolledPolicy, Outcome, PlannedMember, summary
from ..provision import EntraDirectory, ProvisionConfig, Provisioner, run_info, utc_iso
from ..report import ReportFile, provisioned_in, write_report

ADMIN_SCOPES = [
    "User.Read.All",
    "CustomSecAttributeAssignment.ReadWrite.All",
    "CustomSecAttributeDefinition.Read.All",
]


def entra_options(function: Any) -> Any:
    """The Entra sign-in options shared by the admin and client jobs."""
    options = [
        click.option(
            "--tenant",
            envvar="DGPROV_TENANT",
            help="Entra tenant id or domain [env DGPROV_TENANT].",
        ),
        click.option(
            "--client-id",
            envvar="DGPROV_CLIENT_ID",
            help="Public client app id [env DGPROV_CLIENT_ID].",
        ),
        click.option(
            "--auth",
            type=click.Choice(["auto", "browser", "device-code", "client-secret"]),
            default="auto",
            show_default=True,
            help="auto = browser, or device code when no browser can open.",
        ),
        click.option(
            "--client-secret-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="For --auth client-secret (or set DGPROV_CLIENT_SECRET).",
        ),
        click.option(
            "--authority",
            help="Full authority URL (default https://login.microsoftonline.com/<tenant>).",
        ),
        click.option(
            "--graph-url",
            default="https://graph.microsoft.com/v1.0",
            show_default=True,
            help="Graph base URL.",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(exists=True, dir_okay=False),
            help="PEM CA bundle to trust for Defguard, the authority and Graph.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def entra_settings(params: dict[str, Any]) -> EntraSettings:
    if not params["tenant"] and not params["authority"]:
        raise UsageError("no Entra tenant: pass --tenant or set DGPROV_TENANT")
    if not params["client_id"]:
        raise UsageError("no client id: pass --client-id or set DGPROV_CLIENT_ID (see the README)")
    secret = None
    if params["auth"] == "client-secret":
        secret = read_secret(
            what="client secret",
            env_var="DGPROV_CLIENT_SECRET",
            file=params["client_secret_file"],
            command_line=None,
            command_line_option="",
            file_option="--client-secret-file",
            prompt=False,
        )
    return EntraSettings(
        tenant=params["tenant"] or "",
        client_id=params["client_id"],
        authority=check_service_url(params["authority"], "--authority")
        if params["authority"]
        else None,
        graph_url=check_service_url(params["graph_url"], "--graph-url"),
        ca_bundle=params["ca_bundle"],
        auth=params["auth"],
        client_secret=secret,
    )


@contextlib.contextmanager
def interruptible(stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Ctrl-C asks the run to stop cleanly (finish what is in flight, write the report)."""

    def request_stop(*_: Any) -> None:
        click.echo("\ninterrupted: finishing requests in flight, then writing the report", err=True)
        loop.call_soon_threadsafe(stop.set)

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def show_members(members: list[PlannedMember]) -> None:
    """A table of members: the plan before a run, the outcomes after it."""
    width = max([len(m.username) for m in members] + [8])
    click.echo(f"{'username':<{width}}  {'action':<16}  {'directory user':<32}  note")
    for m in members:
        upn = (m.directory_user.upn or m.directory_user.id) if m.directory_user else "-"
        note = (
            m.reason if m.outcome is None else ": ".join(filter(None, [m.outcome.value, m.reason]))
        )
        click.echo(f"{m.username:<{width}}  {m.action.value:<16}  {upn:<32}  {note}".rstrip())


def show_summary(members: list[PlannedMember]) -> None:
    counts = summary(members)
    click.echo(f"{'outcome':<12} members")
    for outcome, count in counts.items():
        click.echo(f"{outcome:<12} {count:>7}")
    failed = [m for m in members if m.outcome is Outcome.FAILED]
    for member in failed[:20]:
        click.echo(f"failed: {member.username}: {member.reason}", err=True)
    if len(failed) > 20:
        click.echo(f"… and {len(failed) - 20} more failures, see the report", err=True)


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        filled = int(30 * done / total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def run_generate_tokens(
    *,
    url: str,
    api_token: str,
    settings: EntraSettings,
    attribute_set: str,
    config: ProvisionConfig,
    report: ReportFile | None,
    dry_run: bool,
    confirm: bool,
) -> tuple[int, list[PlannedMember]]:
    """The whole admin job: its exit status and the members with their outcomes.

    The library entry point behind the command, ``demo`` and tests.
    """
    verify: Any = (
        ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True
    )
    defguard = DefguardClient(url, api_token, verify=verify, max_connections=config.concurrency)
    stop = asyncio.Event()
    started = datetime.datetime.now(datetime.timezone.utc)
    graph: GraphClient | None = None
    try:
        # Prove the Defguard side before asking anyone to sign in.
        version = await defguard.server_version()
        await defguard.group(config.group_name)
        click.echo(f"Defguard {version} at {url}; signing in to Entra ID", err=True)
        sign_in = await asyncio.to_thread(
            EntraSignIn, settings, ADMIN_SCOPES, lambda message: click.echo(message, err=True)
        )
        await asyncio.to_thread(sign_in.token)
        graph = GraphClient(settings.graph_url, sign_in.token, verify=verify)
        provisioner = Provisioner(
            config, defguard, EntraDirectory(graph, attribute_set), stop=stop, progress=Progress()
        )
        members = await provisioner.prepare()
        pending = sum(1 for m in members if m.pending)
        if dry_run:
            show_members(members)
            click.echo(f"dry run: {pending} tokens would be issued; nothing was changed", err=True)
            return EXIT_OK, members
        if confirm and pending and sys.stdin.isatty():
            click.confirm(
                f"Issue {pending} enrollment tokens and store them in Entra ID?",
                abort=True,
                err=True,
            )
        with interruptible(stop, asyncio.get_running_loop()):
            try:
                await provisioner.execute()
            finally:
                provisioner.state.interrupted = stop.is_set()
                if report is not None:
                    extra = {
                        "started_at": utc_iso(started),
                        "finished_at": utc_iso(datetime.datetime.now(datetime.timezone.utc)),
                        "defguard_url": url,
                        "attribute_set": attribute_set,
                    }
                    tokens = provisioner.state.tokens if config.keep_tokens else None
                    write_report(report, members, tokens, run_info(provisioner, extra))
        show_summary(members)
        if report is not None:
            click.echo(f"report: {report.path}", err=True)
        settled = (Outcome.PROVISIONED, Outcome.SKIPPED)
        failed = any(m.outcome not in settled for m in members)
        return (EXIT_SOME_FAILED if failed else EXIT_OK), members
    finally:
        await defguard.aclose()
        if graph is not None:
            await graph.aclose()


@click.command("generate-tokens")
@click.option("--url", required=True, help="Defguard core URL (https; http only on loopback).")
@click.option(
    "--group-name", required=True, help="Defguard group whose members get tokens (case-sensitive)."
)
@click.option(
    "--api-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the Defguard API token (or set DEFGUARD_API_TOKEN).",
)
@click.option("--api-token", help="The API token itself; discouraged, visible in the process list.")
@click.option(
    "--attribute-set-name", default="Defguard", show_default=True, help="Entra attribute set."
)
@click.option(
    "--enrollment-token-expiration-time",
    "expiration",
    metavar="DURATION",
    help="Token lifetime such as 24h, 1d, 2w or '1h 30m' (default: the server's, 24h).",
)
@click.option(
    "--directory",
    type=click.Choice(["entra"]),
    default="entra",
    show_default=True,
    help="Where tokens are stored.",
)
@entra_options
@click.option(
    "--enrolled-users",
    type=click.Choice(["desktop", "skip"]),
    default="desktop",
    show_default=True,
    help="For users Defguard counts as enrolled: a start_desktop token (ignores a custom "
    "expiry), or skip.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=32,
    show_default=True,
    help="Tokens issued in parallel.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report file (.json or .csv).",
)
@click.option(
    "--include-tokens-in-report",
    is_flag=True,
    help="Put the tokens in the report (file mode 0600).",
)
@click.option(
    "--resume",
    "resume_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Skip users a previous report shows provisioned.",
)
@click.option(
    "--enrollment-url",
    help="The enrollment URL Defguard hands out, to check its length before any token is issued.",
)
def generate_tokens_command(**params: Any) -> None:
    """Issue Defguard enrollment tokens for every member of a group and store each token and the
    enrollment URL on the user's Entra object (custom security attributes).

    Exit status: 0 all members provisioned or deliberately skipped, 1 some failed, 2 usage,
    preflight or sign-in error (nothing changed).
    """
    try:
        url = check_service_url(params["url"], "--url")
        if params["expiration"] is not None:
            parse_lifetime(params["expiration"])
        if params["include_tokens_in_report"] and not params["report_path"]:
            raise UsageError("--include-tokens-in-report needs --report FILE")
        report = ReportFile(params["report_path"]) if params["report_path"] else None
        if report is not None:
            _ = report.kind
        already_done = (
            provisioned_in(ReportFile(params["resume_path"])) if params["resume_path"] else {}
        )
        settings = entra_settings(params)
        api_token = read_secret(
            what="Defguard API token",
            env_var="DEFGUARD_API_TOKEN",
            file=params["api_token_file"],
            command_line=params["api_token"],
            command_line_option="--api-token",
            file_option="--api-token-file",
        )
        config = ProvisionConfig(
            group_name=params["group_name"],
            expiration=params["expiration"],
            enrolled_policy=EnrolledPolicy(params["enrolled_users"]),
            concurrency=params["concurrency"],
            enrollment_url=params["enrollment_url"],
            keep_tokens=params["include_tokens_in_report"],
            already_done=already_done,
        )
        status, _ = asyncio.run(
            run_generate_tokens(
                url=url,
                api_token=api_token,
                settings=settings,
                attribute_set=params["attribute_set_name"],
                config=config,
                report=report,
                dry_run=params["dry_run"],
                confirm=not params["yes"],
            )
        )
    except DgprovError as exc:
        click.echo(f"dgprov generate-tokens: error: {exc}", err=True)
        sys.exit(exc.exit_status)
    sys.exit(status)
