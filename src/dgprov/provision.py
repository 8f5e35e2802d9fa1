"""The provisioning engine of the admin job: plan, then issue and store tokens concurrently.

The order is what keeps administrators safe. The caller (``api.generate_tokens``) has already
proved Defguard, the group and the sign-in; ``prepare`` adds the directory's own preflight and
plans without changing anything. Tokens are issued only for members whose directory object was
found, and each token is written as soon as a batch of them is ready, so an interruption loses at
most the batches in flight. Every member ends in exactly one outcome.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .defguard import DefguardClient, DefguardGroup, DefguardUser
from .directory import Directory, Matches
from .durations import parse_lifetime
from .errors import DgprovError, PreflightError, RemoteError
from .gather import cancel_and_wait
from .plan import NOT_PROCESSED, Action, EnrolledPolicy, Outcome, PlannedMember, plan
from .stored_value import UNKNOWN_EXPIRY, ProvisioningConfig, desktop_stamp

DEFAULT_LIFETIME_SECONDS = 24 * 3600
BeforeWrite = Callable[[Sequence[tuple[PlannedMember, ProvisioningConfig]]], Awaitable[None]]
"""Called with each batch of issued tokens before the directory receives it (sync records them
in ``--state``'s journal); a ``DgprovError`` keeps the batch from being stored."""
WRITE_BATCH = 20
WRITERS = 4
BATCH_LINGER_SECONDS = 0.05
ALREADY_ACTIVATED = "User account is already activated"
STOPPED_BEFORE = f"{NOT_PROCESSED}: the run stopped before this member"


@dataclass
class ProvisionConfig:
    """What the engine needs to know of the run, from the caller's options."""

    group_name: str
    expiration: str | None = None
    enrolled_policy: EnrolledPolicy = EnrolledPolicy.DESKTOP
    concurrency: int = 32
    enrollment_url: str | None = None
    keep_tokens: bool = False
    already_done: dict[str, str] = field(default_factory=dict)
    # --resume: the expires_at the earlier reports give the members in already_done, kept in
    # this run's report (their tokens are the ones those runs issued).
    earlier_expiry: dict[str, str] = field(default_factory=dict)
    include_disabled: bool = False
    # sync: store each token's expiry beside it (a start_desktop token's as "unknown"), and
    # look up the directory objects of members disabled in Defguard too (to clear them).
    stamp: bool = False
    clock_offset: float = 0.0  # seconds Defguard's clock is ahead of this host's


@dataclass
class RunState:
    """What a run found and did; the report is written from this, whatever happened."""

    members: list[PlannedMember] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    enrollment_url: str | None = None
    stored: int = 0  # members whose token the directory accepted
    write_denied: str | None = None  # the directory's answer to the first refused write


def utc_iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def url_problem(url: str, limit: int | None) -> str | None:
    if limit is not None and len(url) > limit:
        return (
            f"the enrollment URL Defguard hands out is {len(url)} characters long; directory "
            f"attribute values hold at most {limit}: give the enrollment proxy a shorter public URL"
        )
    return None


def comparable_url(url: str) -> tuple[str, str]:
    """Scheme and host ignore case, a trailing slash means nothing (Defguard adds one)."""
    parts = urlsplit(url)
    rest = parts._replace(scheme="", netloc="").geturl().rstrip("/")
    return f"{parts.scheme}://{parts.netloc}".lower(), rest


class Provisioner:
    def __init__(
        self,
        config: ProvisionConfig,
        defguard: DefguardClient,
        directory: Directory,
        *,
        stop: asyncio.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
        before_write: BeforeWrite | None = None,
    ) -> None:
        self.config = config
        self.before_write = before_write
        self.defguard = defguard
        self.directory = directory
        self.stop = stop or asyncio.Event()
        self.progress = progress or (lambda done, total: None)
        self.state = RunState()
        self.users: Mapping[str, DefguardUser] = {}
        self.matches = Matches([])
        self._lifetime = (
            parse_lifetime(config.expiration) if config.expiration else DEFAULT_LIFETIME_SECONDS
        )
        self._write_checked = False

    def forget_lookups(self) -> None:
        """Drop what planning read (every Defguard user, every directory match): the plan holds
        all a run needs after it, and at 100,000 members they are 15 MB kept for nothing."""
        self.users = {}
        self.matches = Matches([])

    # ---------------------------------------------------------------------------- phases

    async def prepare(self, group: DefguardGroup) -> list[PlannedMember]:
        """The directory's preflight and the plan for ``group``; changes nothing anywhere."""
        if self.config.enrollment_url and (
            problem := url_problem(self.config.enrollment_url, self.directory.max_value_length)
        ):
            raise PreflightError(problem)
        # Defguard's user list is read while the directory's preflight runs; the preflight's
        # failure is still the one reported (and stops the listing), as when they ran in turn.
        listing = asyncio.ensure_future(self.defguard.users(group.members))
        try:
            await self.directory.preflight()
        except BaseException:
            await cancel_and_wait(listing)
            raise
        users = await listing
        looked_up = [
            u
            for name in group.members
            if (u := users.get(name)) and (u.is_active or self.config.stamp)
        ]
        if self.directory.match_key == "email":
            keys = [u.email for u in looked_up if u.email]
        else:
            keys = [u.username for u in looked_up]
        self.users = users
        self.matches = matches = await self.directory.find_users(keys)
        self.state.members = plan(
            group.members,
            users,
            matches,
            enrolled_policy=self.config.enrolled_policy,
            already_done=self.config.already_done,
            directory_name=self.directory.name,
            include_disabled=self.config.include_disabled,
        )
        for member in self.state.members:
            if member.outcome is Outcome.SKIPPED and member.username in self.config.already_done:
                member.expires_at = self.config.earlier_expiry.get(member.username)
        return self.state.members

    async def check_write(self, members: Sequence[PlannedMember] | None = None) -> None:
        """The directory's own write probe (AD: a write that changes nothing) on the object of
        the first member to issue for, among ``members`` (by default the plan's), once.

        The callers run it before the report is started: a refusal is a preflight error with
        nothing issued, and leaves no report saying that tokens may have been."""
        if self._write_checked:
            return
        chosen = self.state.members if members is None else members
        first = next((m for m in chosen if m.pending), None)
        if first is None:
            return
        assert first.directory_user is not None
        await self.directory.check_can_write(first.directory_user)
        self._write_checked = True

    async def execute(self) -> RunState:
        pending = [m for m in self.state.members if m.pending]
        if not pending:
            return self.state
        await self.check_write(pending)
        total, done = len(pending), 0

        def finished(count: int) -> None:
            nonlocal done
            done += count
            self.progress(done, total)

        # Canary: members go one at a time, end to end, until one is stored. Its token shows the
        # enrollment URL Defguard really hands out, and its write proves the directory lets this
        # account write (Graph offers no write probe that is documented to be checked). A URL
        # the directory cannot hold or that is not the one stated, or a refused write, stops the
        # run with only that member's token spent; a member Defguard refuses moves the canary on.
        rest = list(pending)
        while rest and not self.state.stored and not self.stop.is_set():
            canary, rest = rest[0], rest[1:]
            await self._run([canary], finished)
            if self.state.write_denied is not None:
                self._abandon(rest, STOPPED_BEFORE)
                raise PreflightError(
                    f"{self.directory.name} refused the first write ({self.state.write_denied}): "
                    f"{self.directory.write_permission}"
                )
            if self.state.enrollment_url and (
                problem := self._url_problem(self.state.enrollment_url)
            ):
                self._abandon(rest, STOPPED_BEFORE)
                raise PreflightError(problem)
        await self._run(rest, finished)
        return self.state

    def _url_problem(self, url: str) -> str | None:
        """Why tokens with this enrollment URL must not be stored, if they must not."""
        stated = self.config.enrollment_url
        if stated is not None and comparable_url(url) != comparable_url(stated):
            return (
                f"Defguard hands out the enrollment URL {url}, not the --enrollment-url {stated}: "
                "correct --enrollment-url, or the public proxy URL in Defguard's settings"
            )
        return url_problem(url, self.directory.max_value_length)

    # --------------------------------------------------------------------------- pipeline

    async def _run(self, members: Sequence[PlannedMember], finished: Callable[[int], None]) -> None:
        """A fixed pool of issuers feeding batch writers through a bounded queue.

        The pool (not a task per member) keeps memory flat for 100,000 members; the bound makes
        issuers wait for the writers, so few tokens are ever issued but not yet stored.
        """
        queue: asyncio.Queue[tuple[PlannedMember, ProvisioningConfig] | None] = asyncio.Queue(
            maxsize=WRITE_BATCH * WRITERS * 2
        )
        todo = iter(members)

        async def issuer() -> None:
            for member in todo:
                if self.stop.is_set():
                    # Not counted as settled: the progress shown stops where the run did.
                    self._fail(member, f"{NOT_PROCESSED}: the run was interrupted")
                    continue
                token = await self._issue_settling(member, finished)
                if token is not None:
                    await queue.put((member, token))

        writers = [asyncio.create_task(self._writer(queue, finished)) for _ in range(WRITERS)]
        try:
            await asyncio.gather(*(issuer() for _ in range(self.config.concurrency)))
        finally:
            for _ in writers:
                await queue.put(None)
            await asyncio.gather(*writers)

    async def _issue_settling(
        self, member: PlannedMember, finished: Callable[[int], None]
    ) -> ProvisioningConfig | None:
        """A token for ``member``, or None with the member settled (failed or skipped)."""
        try:
            token = await self._issue(member)
        except DgprovError as exc:
            self._fail(member, _reason(exc))
            finished(1)
            if not isinstance(exc, RemoteError):
                self.stop.set()  # authentication or reachability: no point going on
            return None
        if token is None:
            finished(1)
        return token

    async def _issue(self, member: PlannedMember) -> ProvisioningConfig | None:
        """A token for ``member``; None when issuing settled the member another way."""
        now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=self.config.clock_offset
        )
        if member.action is Action.START_ENROLLMENT:
            try:
                token = await self.defguard.start_enrollment(
                    member.username, self.config.expiration
                )
                member.expires_at = utc_iso(now + datetime.timedelta(seconds=self._lifetime))
                return token
            except RemoteError as exc:
                if not (exc.status == 400 and exc.message == ALREADY_ACTIVATED):
                    raise
                if self.config.enrolled_policy is EnrolledPolicy.SKIP:
                    member.outcome, member.reason = (
                        Outcome.SKIPPED,
                        "already enrolled (--enrolled-users skip)",
                    )
                    return None
                member.action = Action.START_DESKTOP
                member.reason = "enrolled for Defguard: desktop token, server default lifetime"
        token = await self.defguard.start_desktop(member.username)
        member.expires_at = (
            desktop_stamp(utc_iso(now))  # its lifetime is Defguard's; sync learns it each run
            if self.config.stamp
            else utc_iso(now + datetime.timedelta(seconds=DEFAULT_LIFETIME_SECONDS))
        )
        return token

    def _stored_expiry(self, member: PlannedMember) -> str:
        """The expiry stored beside a token (where the directory has a place for it), in sync's
        terms whichever job issued it, so that a later ``sync`` keeps the token until then
        rather than renewing a value it cannot date: ``generate-tokens --member`` after the
        switch to ``sync`` would otherwise lose the token it just handed out."""
        if self.config.stamp:
            return member.expires_at or UNKNOWN_EXPIRY
        if member.action is Action.START_DESKTOP:  # the report says when; the store says how
            now = datetime.datetime.now(datetime.timezone.utc)
            return desktop_stamp(
                utc_iso(now + datetime.timedelta(seconds=self.config.clock_offset))
            )
        return member.expires_at or UNKNOWN_EXPIRY

    async def _writer(
        self,
        queue: asyncio.Queue[tuple[PlannedMember, ProvisioningConfig] | None],
        finished: Callable[[int], None],
    ) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            batch = [item]
            # Linger briefly for a full batch: a round trip per token would cost more than the
            # wait while tokens are still arriving.
            deadline = asyncio.get_running_loop().time() + BATCH_LINGER_SECONDS
            while len(batch) < WRITE_BATCH:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    following = await asyncio.wait_for(queue.get(), max(remaining, 0))
                except asyncio.TimeoutError:
                    break
                if following is None:
                    await queue.put(None)  # hand the stop signal on to this writer's next turn
                    break
                batch.append(following)
            await self._write(batch)
            finished(len(batch))

    async def _write(self, batch: list[tuple[PlannedMember, ProvisioningConfig]]) -> None:
        storable: list[tuple[PlannedMember, ProvisioningConfig]] = []
        for member, token in batch:
            self.state.enrollment_url = self.state.enrollment_url or token.enrollment_url
            if problem := self._url_problem(token.enrollment_url):
                self._fail(member, f"{problem}; the token was issued but not stored")
            else:
                storable.append((member, token))
        if not storable:
            return
        if self.before_write is not None:
            try:
                await self.before_write(storable)
            except DgprovError as exc:
                for member, _ in storable:
                    self._fail(member, f"{_reason(exc)}; the token was issued but not stored")
                self.stop.set()  # nothing more can be recorded: no more tokens
                return
        pairs = [(m.directory_user, t) for m, t in storable if m.directory_user is not None]
        try:
            expiries = {
                u.id: self._stored_expiry(m) for (u, _), (m, _) in zip(pairs, storable, strict=True)
            }
            results = await self.directory.write(pairs, expiries)
        except DgprovError as exc:
            for member, _ in storable:
                self._fail(member, f"{_reason(exc)}; the token was issued but not stored")
            return
        for member, token in storable:
            assert member.directory_user is not None
            result = results[member.directory_user.id]
            if result.ok:
                member.outcome = Outcome.PROVISIONED
                self.state.stored += 1
                if self.config.keep_tokens:
                    self.state.tokens[member.username] = token.enrollment_token
            else:
                if result.denied and self.state.write_denied is None:
                    self.state.write_denied = result.detail
                self._fail(
                    member,
                    f"{self.directory.name} refused the write ({result.detail}); the token was "
                    "issued but not stored",
                )

    @staticmethod
    def _fail(member: PlannedMember, reason: str) -> None:
        if member.outcome is None:
            member.outcome, member.reason = Outcome.FAILED, reason

    def _abandon(self, members: Iterable[PlannedMember], reason: str) -> None:
        for member in members:
            self._fail(member, reason)


def _reason(exc: DgprovError) -> str:
    if isinstance(exc, RemoteError):
        return f"{exc.service} answered {exc.status}: {exc.message}"
    return str(exc)
