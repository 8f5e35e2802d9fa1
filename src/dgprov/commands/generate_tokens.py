"""``dgprov generate-tokens``: issue enrollment tokens for a Defguard group and store them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..credentials import check_service_url, read_secret
from ..defguard import DefguardClient
from ..directory import Directory
from ..durations import parse_lifetime
from ..entra_auth import EntraSettings, EntraSignIn
from ..errors import EXIT_OK, EXIT_SOME_FAILED, DgprovError, UsageError
from ..graph import EntraDirectory, GraphClient
from ..ldap_directory import LdapDirectory, LdapSettings
from ..plan import EnrolledPolicy, Outcome, PlannedMember, summary
from ..provision import ProvisionConfig, Provisioner, run_info, utc_iso
from ..report import ReportFile, provisioned_in, write_report
from .options import ad_options, ad_settings, entra_options, entra_settings

ADMIN_SCOPES = [
    "User.Read.All",
    "CustomSecAttributeAssignment.ReadWrite.All",
    "CustomSecAttributeDefinition.Read.All",
]


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


@dataclass
class OpenDirectory:
    """A directory ready for use, and how to release it."""

    directory: Directory
    close: Callable[[], Awaitable[None]]
    details: dict[str, Any]


DirectoryOpener = Callable[[Any], Awaitable[OpenDirectory]]


def entra_opener(settings: EntraSettings, attribute_set: str) -> DirectoryOpener:
    async def open_entra(verify: Any) -> OpenDirectory:
        click.echo("signing in to Entra ID", err=True)
        sign_in = await asyncio.to_thread(
            EntraSignIn,
            settings,
            ADMIN_SCOPES,
            lambda message: click.echo(message, err=True),
            "msal_cache_admin.bin",
        )
        await asyncio.to_thread(sign_in.token)
        graph = GraphClient(settings.graph_url, sign_in.token, verify=verify)
        return OpenDirectory(
            EntraDirectory(graph, attribute_set), graph.aclose, {"attribute_set": attribute_set}
        )

    return open_entra


def ad_opener(settings: LdapSettings) -> DirectoryOpener:
    async def open_ad(verify: Any) -> OpenDirectory:
        directory = LdapDirectory(settings)

        async def close() -> None:
            await asyncio.to_thread(directory.close)

        return OpenDirectory(directory, close, {"ad_attribute": settings.attribute})

    return open_ad


async def run_generate_tokens(
    *,
    url: str,
    api_token: str,
    open_directory: DirectoryOpener,
    config: ProvisionConfig,
    report: ReportFile | None,
    dry_run: bool,
    confirm: bool,
    ca_bundle: str | None = None,
) -> tuple[int, list[PlannedMember]]:
    """The whole admin job: its exit status and the members with their outcomes.

    The library entry point behind the command, ``demo`` and tests.
    """
    verify: Any = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    defguard = DefguardClient(url, api_token, verify=verify, max_connections=config.concurrency)
    stop = asyncio.Event()
    started = datetime.datetime.now(datetime.timezone.utc)
    opened: OpenDirectory | None = None
    try:
        # Prove the Defguard side before asking anyone to sign in.
        version = await defguard.server_version()
        await defguard.group(config.group_name)
        click.echo(f"Defguard {version} at {url}", err=True)
        opened = await open_directory(verify)
        provisioner = Provisioner(
            config, defguard, opened.directory, stop=stop, progress=Progress()
        )
        members = await provisioner.prepare()
        pending = sum(1 for m in members if m.pending)
        if dry_run:
            show_members(members)
            click.echo(f"dry run: {pending} tokens would be issued; nothing was changed", err=True)
            return EXIT_OK, members
        if confirm and pending and sys.stdin.isatty():
            click.confirm(
                f"Issue {pending} enrollment tokens and store them in {opened.directory.name}?",
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
                        **opened.details,
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
        if opened is not None:
            await opened.close()


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
    type=click.Choice(["entra", "ad"]),
    default="entra",
    show_default=True,
    help="Where tokens are stored: Entra ID custom security attributes, or an AD attribute.",
)
@entra_options
@ad_options(attribute_default=None, match_by=True)
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
    enrollment URL on the user's Entra object (custom security attributes) or, with
    --directory ad, as JSON in an Active Directory attribute.

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
        already_done = (
            provisioned_in(ReportFile(params["resume_path"], "--resume"))
            if params["resume_path"]
            else {}
        )
        if params["directory"] == "ad":
            opener = ad_opener(ad_settings(params))
        else:
            opener = entra_opener(entra_settings(params), params["attribute_set_name"])
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
                open_directory=opener,
                config=config,
                report=report,
                dry_run=params["dry_run"],
                confirm=not params["yes"],
                ca_bundle=params["ca_bundle"],
            )
        )
    except DgprovError as exc:
        click.echo(f"dgprov generate-tokens: error: {exc}", err=True)
        sys.exit(exc.exit_status)
    sys.exit(status)
