"""``dgprov.api.sync``: the scheduled reconcile as a library call (``commands/sync.py`` renders it).

Kept apart from ``api.py`` for size; it shares the admin job's checks, sign-in and interruption
handling (``admin_job.py``) with ``generate-tokens``, and ``api.sync`` / ``api.sync_async`` are
the public names.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .admin_job import Notify, check_job, interruptible, open_directory, quiet, stored_in
from .defguard import DefguardClient
from .defguard_settings import server_enrollment
from .directory import SyncDirectory
from .dry_run import LIFETIME_OPTION, Lifetimes, preflight_plan
from .durations import duration_seconds, parse_lifetime
from .entra_auth import EntraSettings
from .errors import EXIT_OK, EXIT_SOME_FAILED, Cancelled, UsageError
from .host_lock import host_lock
from .known_failures import KnownFailures, read_known
from .ldap_directory import LdapSettings
from .member_selection import MemberSelection
from .plan import Decision, EnrolledPolicy, Outcome, PlannedMember
from .provision import ProvisionConfig, utc_iso
from .reconcile import Moment, summary
from .report import LiveReport, ReportFile, check_destination, member_row
from .sync_engine import Syncer
from .sync_state import SyncState
from .tls import tls_context

DEFAULT_LIFETIME = "24h"  # Defguard's documented default, stated so the stored expiry is real
DEFAULT_RENEW_BEFORE = "2h"
DEFAULT_DESKTOP_LIFETIME = "24h"  # Defguard's default, where its settings do not say (1.6)
CHANGES = (Decision.ISSUE, Decision.RENEW, Decision.CLEAR)
ISSUING = (Decision.ISSUE, Decision.RENEW)
NO_URL_TO_COMPARE = (
    "Defguard's settings name no enrollment URL (1.6 shows none), so stored URLs are not "
    "compared with it: pass --enrollment-url URL to have values pointing elsewhere renewed"
)


@dataclass(repr=False)
class SyncRecord:
    """What a ``sync`` run decided and did: one entry per member (and per orphaned value).

    ``summary`` counts decisions and outcomes; ``exit_status`` is 0 when nothing failed, 1
    otherwise (a dry run is 0).
    """

    members: list[PlannedMember]
    run: dict[str, Any]
    dry_run: bool = False
    report_path: Path | None = None
    known_failures: KnownFailures | None = None  # the previous report's, to tell new ones apart

    @property
    def summary(self) -> dict[str, dict[str, int]]:
        return summary(self.members)

    @property
    def changes(self) -> dict[str, int]:
        """Decisions that change something: issue, renew, clear."""
        counts = self.summary["decision"]
        return {decision.value: counts[decision.value] for decision in CHANGES}

    @property
    def exit_status(self) -> int:
        # A dry run's members still to do are planned, not failed; those the plan already
        # fails make it exit 1, as the run would.
        failing = (Outcome.FAILED,) if self.dry_run else (None, Outcome.FAILED)
        failed = any(m.outcome in failing for m in self.members)
        return EXIT_SOME_FAILED if failed else EXIT_OK

    def rows(self) -> list[dict[str, Any]]:
        return [member_row(member, None, planned=self.dry_run) for member in self.members]

    def __repr__(self) -> str:
        """Short: ``asyncio.run`` formats its task's result at the end (through the SIGINT
        handler's repr, CPython 3.11 ``runners.py`` / ``signal.getsignal``), and a dataclass
        repr of 100,000 members would be a transient string of tens of megabytes."""
        return f"SyncRecord({len(self.members)} members, dry_run={self.dry_run})"


def _renew_window(renew_before: str, lifetime: str) -> datetime.timedelta:
    try:
        seconds = duration_seconds(renew_before)
    except UsageError:
        raise UsageError(
            f"--renew-before {renew_before!r} is not a duration; use e.g. 2h, 1d or 30m"
        ) from None
    if seconds >= parse_lifetime(lifetime):
        raise UsageError(
            f"--renew-before {renew_before} is not shorter than the token lifetime {lifetime}: "
            "every run would replace every token; give a shorter --renew-before"
        )
    return datetime.timedelta(seconds=seconds)


async def sync_async(
    *,
    url: str,
    group_name: str,
    api_token: str,
    directory: Literal["entra", "ad"] = "entra",
    entra: EntraSettings | None = None,
    attribute_set_name: str = "Defguard",
    ad: LdapSettings | None = None,
    enrollment_token_expiration_time: str | None = None,
    enrolled_users: EnrolledPolicy = EnrolledPolicy.DESKTOP,
    renew_before: str = DEFAULT_RENEW_BEFORE,
    desktop_token_lifetime: str = DEFAULT_DESKTOP_LIFETIME,
    state: Path | None = None,
    dry_run: bool = False,
    concurrency: int = 32,
    report: Path | None = None,
    overwrite_report: bool = False,
    include_tokens_in_report: bool = False,
    enrollment_url: str | None = None,
    include_disabled_directory_users: bool = False,
    allow_guests: bool = False,
    ca_bundle: str | None = None,
    members: Sequence[str] = (),
    exclude_members: Sequence[str] = (),
    exclude_members_file: Path | None = None,
    previous_report: Path | None = None,
    lock_file: Path | None = None,
    api_token_source: str = "DEFGUARD_API_TOKEN",
    now: datetime.datetime | None = None,
    notify: Notify = quiet,
    progress: Callable[[int, int], None] | None = None,
    confirm: Callable[[dict[str, int], str], bool] | None = None,
) -> SyncRecord:
    """``sync`` for callers that already run an event loop."""
    lifetime = enrollment_token_expiration_time or DEFAULT_LIFETIME
    url = check_job(url, lifetime, include_tokens_in_report, report, directory, entra, ad)
    window = _renew_window(renew_before, lifetime)
    desktop_seconds = parse_lifetime(desktop_token_lifetime, "--desktop-token-lifetime")
    selection = MemberSelection.from_options(members, exclude_members, exclude_members_file)
    report_file = ReportFile(report) if report is not None else None
    if report_file is not None:
        check_destination(report_file, overwrite=overwrite_report)
    this_run = {"defguard_url": url, "group": group_name}
    known = read_known(previous_report, report, overwrite_report, this_run, notify)
    with host_lock(lock_file, "sync", notify):
        sync_state = SyncState.load(state) if state is not None else None
        config = ProvisionConfig(
            group_name=group_name,
            expiration=lifetime,
            enrolled_policy=enrolled_users,
            concurrency=concurrency,
            enrollment_url=enrollment_url,
            keep_tokens=include_tokens_in_report,
            include_disabled=include_disabled_directory_users,
        )
        defguard = DefguardClient(
            url,
            api_token,
            verify=tls_context(ca_bundle),
            max_connections=concurrency,
            token_source=api_token_source,
        )
        opened: SyncDirectory | None = None
        try:
            version = await defguard.server_version()
            group = await defguard.group(group_name)
            for line in selection.check(group.members, group_name):
                notify(line)
            offset = datetime.timedelta(seconds=defguard.clock_offset)
            server = await server_enrollment(defguard)
            moment = Moment(
                now or datetime.datetime.now(datetime.timezone.utc) + offset,
                window,
                lifetime=datetime.timedelta(seconds=parse_lifetime(lifetime)),
                desktop_lifetime=datetime.timedelta(
                    seconds=server.desktop_lifetime_seconds or desktop_seconds
                ),
                enrollment_url=enrollment_url or server.enrollment_url,
            )
            config.clock_offset = defguard.clock_offset
            notify(f"Defguard {version} at {url}")
            if server.desktop_lifetime_seconds is not None:
                hours = server.desktop_lifetime_seconds // 3600
                notify(f"start_desktop tokens last {hours}h (Defguard's settings)")
            if moment.enrollment_url is None:
                notify(NO_URL_TO_COMPARE)
            opened = await open_directory(
                directory, entra, attribute_set_name, ad, notify, allow_guests=allow_guests
            )
            stop = asyncio.Event()
            lives: list[LiveReport] = []

            def settled(done: int, total: int) -> None:
                for live in lives:
                    live.changed()
                if progress is not None:
                    progress(done, total)

            syncer = Syncer(
                config,
                defguard,
                opened,
                moment,
                state=sync_state,
                stop=stop,
                progress=settled,
                selection=selection,
            )
            planned = await syncer.prepare(group)
            run = {
                "command": "sync",
                "defguard_version": version,
                "group": group_name,
                "directory": opened.name,
                "interrupted": False,
                "started_at": utc_iso(moment.now),
                "defguard_url": url,
                "renew_before": renew_before,
                **stored_in(directory, attribute_set_name, ad),
                **selection.run_section(),
            }
            record = SyncRecord(planned, run, dry_run, report, known)
            changes = record.changes
            if dry_run:
                lifetimes = Lifetimes(
                    parse_lifetime(lifetime),
                    LIFETIME_OPTION
                    if enrollment_token_expiration_time
                    else "Defguard's documented default",
                    int(moment.desktop_lifetime.total_seconds()),
                    "Defguard's settings"
                    if server.desktop_lifetime_seconds
                    else "--desktop-token-lifetime",
                )
                targets = [m for m in planned if m.pending and m.decision in CHANGES]
                await preflight_plan(
                    opened, planned, targets, run, report_file, lifetimes, moment.now, notify
                )
                listed = ", ".join(f"{count} {name}" for name, count in changes.items())
                notify(f"dry run: {listed}; nothing was changed")
                return record
            if confirm is not None and any(changes.values()) and not confirm(changes, opened.name):
                raise Cancelled("cancelled at the confirmation; nothing was changed")
            await _execute(
                syncer, record, report_file, include_tokens_in_report, stop, notify, lives
            )
            return record
        finally:
            await defguard.aclose()
            if opened is not None:
                await opened.aclose()


async def _execute(
    syncer: Syncer,
    record: SyncRecord,
    report_file: ReportFile | None,
    include_tokens: bool,
    stop: asyncio.Event,
    notify: Notify,
    lives: list[LiveReport],
) -> None:
    """Run the decisions with the report kept current, as ``generate-tokens`` does."""
    live: LiveReport | None = None
    # Refused: exit 2 with nothing issued, and no report started that says tokens may have been.
    await syncer.provisioner.check_write([m for m in record.members if m.decision in ISSUING])
    if report_file is not None:

        def report_failed(message: str) -> None:
            notify(message)
            stop.set()

        tokens = syncer.provisioner.state.tokens if include_tokens else None
        live = LiveReport(report_file, record.members, tokens, record.run, report_failed)
        await live.start()
        lives.append(live)
    with interruptible(stop, notify):
        try:
            await syncer.execute()
        finally:
            record.run["interrupted"] = stop.is_set()
            record.run["finished_at"] = utc_iso(datetime.datetime.now(datetime.timezone.utc))
            if record.known_failures is not None:
                record.run.update(record.known_failures.run_section(record.members))
            if live is not None:
                await live.finish()


def sync(**options: Any) -> SyncRecord:
    """Reconcile ``group_name`` with the directory once, as a scheduler would: issue a token for
    members without one, renew those expiring within ``renew_before``, keep valid ones, and
    clear used and orphaned ones (``api_sync.sync_async`` lists the keyword arguments, named
    after the command's options). ``confirm(changes, directory_name)`` is asked before anything
    changes; another ``sync`` or ``generate_tokens`` on this host (the same lock) raises
    ``AlreadyRunning`` (exit 2).
    """
    return asyncio.run(sync_async(**options))
