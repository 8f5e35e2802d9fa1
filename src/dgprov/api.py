"""dgprov as a library: the jobs, with typed arguments and typed results.

Each function mirrors its command (``generate-tokens``, ``sync``, ``fetch-config``, ``enroll``):
keyword arguments named after the options, a result object instead of printed text, and
callbacks for everything that would talk to a person (status lines, progress, confirmation,
passwords). The
commands in ``commands/`` only parse options, call these and render the result, so a script, a
scheduler or a service gets exactly what the CLI does. Errors are ``errors.DgprovError``
subclasses whose ``exit_status`` is what the CLI would exit with.

    from dgprov import api
    record = api.generate_tokens(url=..., group_name="vpn-users", api_token=token, entra=settings)
    print(record.summary)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import client_files, fetch, join, logon_action, windows_accounts
from .account_rules import check_phone
from .admin_job import (
    ADMIN_SCOPES,
    Notify,
    check_job,
    interruptible,
    open_directory,
    quiet,
    stored_in,
)
from .api_sync import SyncRecord, sync, sync_async
from .defguard import DefguardClient
from .directory import SyncDirectory
from .dry_run import generate_lifetimes, preflight_plan
from .enrollment import (
    Enrolled,
    checked_provisioning,
    enroll_device,
    refresh_device,
    retire_provisioning_file,
)
from .entra_auth import EntraSettings
from .entra_directory import EntraDirectory
from .errors import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    Cancelled,
    NotJoined,
    UsageError,
)
from .host_lock import host_lock
from .known_failures import KnownFailures, read_known
from .ldap_directory import LdapDirectory, LdapSettings
from .member_selection import MemberSelection
from .plan import EnrolledPolicy, Outcome, PlannedMember, summary
from .provision import ProvisionConfig, Provisioner, utc_iso
from .reconcile import replaced
from .report import LiveReport, ReportFile, check_destination, member_row, resume_from
from .stored_value import ProvisioningConfig
from .tls import tls_context

__all__ = [
    "ADMIN_SCOPES",
    "Enrolled",
    "EnrolledPolicy",
    "EntraSettings",
    "FetchResult",
    "LdapSettings",
    "Outcome",
    "PlannedMember",
    "ProvisioningConfig",
    "RunRecord",
    "SyncRecord",
    "enroll",
    "fetch_config",
    "generate_tokens",
    "sync",
    "sync_async",
]

log = logging.getLogger("dgprov")

# ------------------------------------------------------------------------------ generate-tokens


@dataclass
class RunRecord:
    """What a ``generate_tokens`` run found and did, member by member.

    ``members`` carry the action and outcome of each; ``run`` is the report's ``run`` section;
    ``exit_status`` is what the command exits with (0 all provisioned or skipped, 1 some failed).
    """

    members: list[PlannedMember]
    run: dict[str, Any]
    dry_run: bool = False
    report_path: Path | None = None
    replacing: int = 0  # of the pending: members holding an unused token this run replaces
    known_failures: KnownFailures | None = None  # the previous report's, to tell new ones apart

    @property
    def summary(self) -> dict[str, int]:
        return summary(self.members)

    @property
    def pending(self) -> int:
        """Members a dry run would issue a token for."""
        return sum(1 for member in self.members if member.pending)

    @property
    def exit_status(self) -> int:
        """A dry run's too: 1 when the plan already fails members, as the run would."""
        if self.dry_run:
            failed = any(m.outcome is Outcome.FAILED for m in self.members)
            return EXIT_SOME_FAILED if failed else EXIT_OK
        settled = (Outcome.PROVISIONED, Outcome.SKIPPED)
        return EXIT_OK if all(m.outcome in settled for m in self.members) else EXIT_SOME_FAILED

    def rows(self) -> list[dict[str, Any]]:
        """The report's member rows (never with tokens); a dry run's members to do ``planned``."""
        return [member_row(member, None, planned=self.dry_run) for member in self.members]

    def __repr__(self) -> str:
        # Short on purpose: asyncio formats the main task, result included, when ``asyncio.run``
        # restores the SIGINT handler (Python 3.11), and a field-by-field repr of 100,000
        # members was two 36 MB strings at the very end of a run (the peak of its memory).
        return (
            f"RunRecord(members={len(self.members)}, summary={self.summary}, "
            f"dry_run={self.dry_run}, report_path={self.report_path!r})"
        )


def counted(count: int, noun: str) -> str:
    """``1 token``, ``3 tokens``: messages read as sentences, not as templates."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def replacing_phrase(count: int) -> str:
    """What issuing does to tokens already handed out (Defguard deletes a member's unused token
    when it issues another), said so that zero reads as good news."""
    if count == 0:
        return "no member holds an unused token that it would replace"
    held = "1 member holds" if count == 1 else f"{count} members hold"
    return f"{held} an unused token that it will replace"


async def _replacing(provisioner: Provisioner, directory: SyncDirectory) -> int:
    """Members this run issues for whose directory object holds a token they have not used:
    Defguard deletes it on the new issue. One listing of the stored values (``sync`` reads the
    same), only for a dry run or a confirmation."""
    held = await directory.read_stored()
    return replaced(provisioner.state.members, provisioner.users, held)


async def generate_tokens_async(
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
    dry_run: bool = False,
    concurrency: int = 32,
    report: Path | None = None,
    include_tokens_in_report: bool = False,
    resume: Path | None = None,
    enrollment_url: str | None = None,
    ca_bundle: str | None = None,
    notify: Notify = quiet,
    progress: Callable[[int, int], None] | None = None,
    confirm: Callable[[int, str], bool] | None = None,
    confirm_replacing: Callable[[int, str, int], bool] | None = None,
    include_disabled_directory_users: bool = False,
    allow_guests: bool = False,
    overwrite_report: bool = False,
    lock_file: Path | None = None,
    api_token_source: str = "DEFGUARD_API_TOKEN",
    members: Sequence[str] = (),
    exclude_members: Sequence[str] = (),
    exclude_members_file: Path | None = None,
    previous_report: Path | None = None,
) -> RunRecord:
    """``generate_tokens`` for callers that already run an event loop."""
    url = check_job(
        url,
        enrollment_token_expiration_time,
        include_tokens_in_report,
        report,
        directory,
        entra,
        ad,
    )
    destination = stored_in(directory, attribute_set_name, ad)
    already_done: dict[str, str] = {}
    earlier_expiry: dict[str, str] = {}
    if resume is not None:
        this_run = {
            "defguard_url": url,
            "group": group_name,
            "directory": LdapDirectory.name if directory == "ad" else EntraDirectory.name,
            **destination,
        }
        already_done = resume_from(ReportFile(resume, "--resume"), this_run, earlier_expiry)
    selection = MemberSelection.from_options(members, exclude_members, exclude_members_file)
    report_file = ReportFile(report) if report is not None else None
    if report_file is not None:
        check_destination(report_file, overwrite=overwrite_report)
    same_run = {"defguard_url": url, "group": group_name}
    known = read_known(previous_report, report, overwrite_report, same_run, notify)
    config = ProvisionConfig(
        group_name=group_name,
        expiration=enrollment_token_expiration_time,
        enrolled_policy=enrolled_users,
        concurrency=concurrency,
        enrollment_url=enrollment_url,
        keep_tokens=include_tokens_in_report,
        already_done=already_done,
        earlier_expiry=earlier_expiry,
        include_disabled=include_disabled_directory_users,
    )
    defguard = DefguardClient(
        url,
        api_token,
        verify=tls_context(ca_bundle),
        max_connections=concurrency,
        token_source=api_token_source,
    )
    stop = asyncio.Event()
    started = datetime.datetime.now(datetime.timezone.utc)
    opened: SyncDirectory | None = None
    live: LiveReport | None = None
    lock = contextlib.ExitStack()

    def settled(done: int, total: int) -> None:
        if live is not None:
            live.changed()
        if progress is not None:
            progress(done, total)

    def report_failed(message: str) -> None:
        notify(message)
        stop.set()  # no more tokens nobody would have a record of

    try:
        # One admin job per host (``sync`` takes the same lock); then prove the Defguard side,
        # once, before asking anyone to sign in.
        lock.enter_context(host_lock(lock_file, "generate-tokens", notify))
        version = await defguard.server_version()
        config.clock_offset = defguard.clock_offset  # expiries on Defguard's clock, as sync's
        group = await defguard.group(group_name)
        for line in selection.check(group.members, group_name):
            notify(line)
        notify(f"Defguard {version} at {url}")
        opened = await open_directory(
            directory, entra, attribute_set_name, ad, notify, allow_guests=allow_guests
        )
        provisioner = Provisioner(config, defguard, opened, stop=stop, progress=settled)
        planned = provisioner.state.members = selection.apply(await provisioner.prepare(group))
        run = {
            "defguard_version": version,
            "group": group_name,
            "directory": opened.name,
            "interrupted": False,
            "started_at": utc_iso(started),
            "defguard_url": url,
            **destination,
            **selection.run_section(),
        }
        record = RunRecord(planned, run, dry_run, report, known_failures=known)
        if dry_run:
            record.replacing = await _replacing(provisioner, opened)
            lifetimes = await generate_lifetimes(defguard, enrollment_token_expiration_time)
            offset = datetime.timedelta(seconds=defguard.clock_offset)
            await preflight_plan(
                opened, planned, planned, run, report_file, lifetimes, started + offset, notify
            )
            notify(
                f"dry run: {counted(record.pending, 'token')} would be issued; "
                f"{replacing_phrase(record.replacing)}; nothing was changed"
            )
            return record
        if (confirm_replacing or confirm) is not None and record.pending:
            record.replacing = await _replacing(provisioner, opened)
            if confirm_replacing is not None:
                agreed = confirm_replacing(record.pending, opened.name, record.replacing)
            else:
                agreed = confirm is None or confirm(record.pending, opened.name)
            if not agreed:
                raise Cancelled("cancelled at the confirmation; nothing was changed")
        provisioner.forget_lookups()
        await provisioner.check_write()  # refused: exit 2, nothing issued, no report started
        if report_file is not None:
            tokens = provisioner.state.tokens if include_tokens_in_report else None
            live = LiveReport(report_file, planned, tokens, run, report_failed)
            await live.start()
        with interruptible(stop, notify):
            try:
                await provisioner.execute()
            finally:
                run["interrupted"] = stop.is_set()
                run["finished_at"] = utc_iso(datetime.datetime.now(datetime.timezone.utc))
                if known is not None:
                    run.update(known.run_section(planned))
                if live is not None:
                    await live.finish()
        return record
    finally:
        lock.close()
        await defguard.aclose()
        if opened is not None:
            await opened.aclose()


def generate_tokens(**options: Any) -> RunRecord:
    """Issue a Defguard enrollment token for every member of ``group_name`` and store it in
    Entra ID (``entra`` settings) or Active Directory (``directory="ad"``, ``ad`` settings).

    The keyword arguments are those of ``generate_tokens_async``, named after the command's
    options. ``confirm(pending, directory_name)`` is asked before any token is issued (or
    ``confirm_replacing(pending, directory_name, replacing)``, with how many members hold an
    unused token the run replaces);
    ``progress(done, total)`` as members settle; ``notify`` hears status lines and the device
    code prompt. Ctrl-C (in the main thread) stops cleanly and the report is still written.
    Another ``generate_tokens`` or ``sync`` on this host (the same lock) raises
    ``AlreadyRunning`` (exit 2).
    """
    return asyncio.run(generate_tokens_async(**options))


# --------------------------------------------------------------------------------- fetch-config


@dataclass(frozen=True)
class FetchResult:
    """What ``fetch_config`` did: the file written for whom, or why nothing was needed."""

    path: Path | None  # None: nothing was written (see source)
    user: str
    # none: joined to nothing, or (at logon) provisioned before; deferred: SYSTEM left it to
    # the user's logon action
    source: Literal["entra", "ad", "broker", "none", "deferred"]
    join_evidence: str = ""


def fetch_config(
    *,
    source: Literal["auto", "entra", "ad", "broker"] = "auto",
    strict: bool = False,
    attribute_set_name: str = "Defguard",
    entra: EntraSettings | None = None,
    broker_url: str | None = None,
    broker_scope: str | None = None,
    ldap_url: str | None = None,
    base_dn: str | None = None,
    ad_attribute: str = "defguardProvisioningConfig",
    bind_dn: str | None = None,
    bind_password: str | None = None,
    ca_bundle: str | None = None,
    output: Path | None = None,
    for_user: str | None = None,
    sam_account_name: str | None = None,
    notify: Notify = quiet,
    at_logon: bool = False,
    detect_join: Callable[[], join.JoinState] = join.detect,
    as_system: Callable[[], bool] | None = None,
    logon_action_registered: Callable[[], bool] | None = None,
) -> FetchResult:
    """Read the user's enrollment URL and token from Entra ID or AD, or have ``dgprov broker``
    at ``broker_url`` mint one for the user signed in for ``broker_scope`` (None: the scope the
    broker gives, ``GET /v1/config``), and write ``provisioning.json`` where the Defguard
    desktop client reads it.

    ``source="auto"`` uses the broker when ``broker_url`` is given, else detects the join.
    Raises ``NothingFound`` (exit 1) when the directory holds nothing usable for the user (or
    the broker will not provision them) and ``NotJoined`` (exit 3) for ``strict`` on a machine
    joined to nothing.
    """
    marker = fetch.provisioned_marker() if at_logon else None
    if marker is not None and marker.exists():
        message = f"this user was provisioned before ({marker}); nothing to do"
        log.info(message)
        notify(message)
        return FetchResult(None, "", "none")
    chosen, state = fetch.chosen_source(source, broker_url, detect_join)
    if source == "auto" and chosen != "broker":
        log.info(f"join detection: {state.kind} ({state.evidence})")
    if chosen in ("entra", "broker") and (as_system or windows_accounts.running_as_system)():
        # No sign-in can happen as SYSTEM: no browser in session 0, WAM refuses SYSTEM and a
        # device code would be shown to nobody.
        if not (logon_action_registered or logon_action.registered)():
            raise UsageError(fetch.SYSTEM_CANNOT_SIGN_IN)
        notify(fetch.DEFERRED_TO_LOGON)
        return FetchResult(None, "SYSTEM", "deferred", state.evidence)
    target = client_files.resolve_target(for_user, output is not None, notify)
    if chosen is None:
        message = (
            "this machine is joined neither to Active Directory nor to Entra ID "
            f"({state.evidence}); nothing to do"
        )
        if strict:
            raise NotJoined(message)
        notify(message)
        return FetchResult(None, target.name, "none", state.evidence)
    log.info(f"source: {chosen}; user: {target.name}")
    broker = None
    if chosen == "broker":  # checked before anyone is asked to sign in
        auth = entra.auth if entra is not None else "auto"
        broker = fetch.broker_settings(broker_url, broker_scope, auth)
    someone_else = target.name if target.someone_else else None
    if chosen in ("entra", "broker") and entra is None:
        raise UsageError("no Entra tenant: pass --tenant or set DGPROV_TENANT")
    if broker is not None:
        assert entra is not None
        config = asyncio.run(fetch.fetch_from_broker(entra, *broker, notify, someone_else))
    elif chosen == "entra":
        assert entra is not None
        config = asyncio.run(
            fetch.fetch_from_entra(entra, attribute_set_name, notify, someone_else)
        )
    else:
        account = fetch.ad_account(target, sam_account_name)
        config = fetch.fetch_from_ad(
            fetch.client_ldap_settings(
                ldap_url, base_dn, ad_attribute, bind_dn, bind_password, ca_bundle, state.domain
            ),
            account,
            notify,
        )
    log.info("found an enrollment URL and token")
    path = output or client_files.data_directory(home=target.home) / client_files.FILE_NAME
    client_files.write(path, config, owner=target.owner, home=target.home)
    log.info(f"wrote {path}")
    if marker is not None:
        fetch.mark_provisioned(marker, path)
    return FetchResult(path, target.name, chosen, state.evidence)


# --------------------------------------------------------------------------------------- enroll


def enroll(
    *,
    provisioning_file: Path | None = None,
    device_name: str | None = None,
    output_dir: Path | None = None,
    password: Callable[[], str] | None = None,
    phone: str | None = None,
    refresh: bool = False,
    ca_bundle: str | None = None,
    route_all_traffic: bool | None = None,
) -> Enrolled:
    """Complete enrollment from ``provisioning.json`` without the desktop app, or with
    ``refresh`` fetch updated configurations for the device enrolled before.

    ``password`` is called only for an account that must still be activated, before anything
    is registered; without it such an account is a ``UsageError``. ``route_all_traffic`` is the
    person's choice where the instance's traffic policy leaves one (None: off, or on refresh the
    saved choice). After success the used ``provisioning.json`` is renamed in place
    (``Enrolled.provisioning_note`` says so) so the desktop app does not spend it again.
    """
    if phone is not None:
        check_phone(phone)
    data_dir = client_files.data_directory()
    output_dir = output_dir or data_dir / "wireguard"
    verify = tls_context(ca_bundle)
    if refresh:
        return asyncio.run(
            refresh_device(output_dir, verify=verify, route_all_traffic=route_all_traffic)
        )
    path = provisioning_file or data_dir / client_files.FILE_NAME
    if not path.exists():
        raise UsageError(
            f"{path} does not exist; run dgprov fetch-config first, or pass --provisioning-file"
        )
    # The same rules as fetch-config's, before anything is sent: the token goes to that URL.
    config = checked_provisioning(client_files.read(path), path)

    def no_password() -> str:
        raise UsageError(
            "this account must be activated with a password: pass --password-file FILE"
        )

    enrolled = asyncio.run(
        enroll_device(
            config,
            output_dir,
            device_name=device_name if device_name is not None else socket.gethostname(),
            password=password or no_password,
            phone=phone,
            verify=verify,
            route_all_traffic=bool(route_all_traffic),
        )
    )
    return dataclasses.replace(enrolled, provisioning_note=retire_provisioning_file(path))
