"""The provisioning engine, driven directly with in-memory fakes of Defguard and the directory.

The end-to-end tests prove the engine against emulated services; these pin the rules that keep
administrators safe one by one (the canary, where a failure stops the run and where it does
not, when a token counts as stored) and run in milliseconds without a network.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import cast

import pytest

from dgprov.defguard import DefguardClient, DefguardGroup, DefguardUser
from dgprov.directory import DirectoryUser, Matches, MatchKey, WriteResult
from dgprov.errors import AuthenticationError, DgprovError, PreflightError, RemoteError
from dgprov.plan import Action, EnrolledPolicy, Outcome, PlannedMember
from dgprov.provision import (
    ALREADY_ACTIVATED,
    DEFAULT_LIFETIME_SECONDS,
    WRITE_BATCH,
    ProvisionConfig,
    Provisioner,
)
from dgprov.stored_value import ProvisioningConfig

URL = "https://enroll.corp.example"
LONG_URL = "https://enroll.corp.example/" + "x" * 60  # longer than the fake directory's 64
MAX_VALUE = 64
INTERRUPTED = "not processed: the run was interrupted"
STOPPED_BEFORE = "not processed: the run stopped before this member"
NOT_STORED = "the token was issued but not stored"


class FakeDefguard:
    """Issues tokens ``<route>:<username>``; fails where told; logs every call in order."""

    def __init__(self, users: Iterable[DefguardUser], log: list[str], *, url: str = URL) -> None:
        self.records = {user.username: user for user in users}
        self.log = log
        self.url = url
        self.enrollment_failures: dict[str, DgprovError] = {}
        self.desktop_failures: dict[str, DgprovError] = {}
        self.expirations: list[str | None] = []
        self.after_issue: Callable[[str], None] = lambda username: None
        self.failed = False
        self.entered_after_failure: list[str] = []
        self.asked_for: list[str] = []

    async def users(self, members: Sequence[str] = ()) -> dict[str, DefguardUser]:
        self.log.append("users")
        self.asked_for = list(members)
        return dict(self.records)

    async def _issue(self, route: str, username: str) -> ProvisioningConfig:
        if self.failed:
            self.entered_after_failure.append(username)
        self.log.append(f"{route}:{username}")
        await asyncio.sleep(0)  # a real request yields to the other issuers
        failures = (
            self.enrollment_failures if route == "start_enrollment" else self.desktop_failures
        )
        if username in failures:
            self.failed = True
            raise failures[username]
        self.after_issue(username)
        return ProvisioningConfig(self.url, f"{route}:{username}")

    async def start_enrollment(self, username: str, expiration: str | None) -> ProvisioningConfig:
        self.expirations.append(expiration)
        return await self._issue("start_enrollment", username)

    async def start_desktop(self, username: str) -> ProvisioningConfig:
        return await self._issue("start_desktop", username)

    def issued(self, route: str = "start_enrollment") -> list[str]:
        """Usernames a token was asked for through ``route``, in order."""
        return [entry.split(":", 1)[1] for entry in self.log if entry.startswith(f"{route}:")]


class FakeDirectory:
    """A directory implementing the ``Directory`` protocol in memory."""

    def __init__(
        self,
        users: Iterable[DirectoryUser],
        log: list[str],
        *,
        match_key: MatchKey = "email",
        max_value_length: int | None = MAX_VALUE,
    ) -> None:
        self.name: str = "Test Directory"
        self.write_permission: str = "grant the test account the writer role"
        self.match_key: MatchKey = match_key
        self.max_value_length: int | None = max_value_length
        self.log = log
        self.by_key = {
            ((user.mail or "") if match_key == "email" else (user.upn or "")).lower(): user
            for user in users
        }
        self.looked_up: list[str] = []
        self.checked: list[DirectoryUser] = []
        self.writes: list[list[tuple[DirectoryUser, ProvisioningConfig]]] = []
        self.stored: dict[str, list[ProvisioningConfig]] = {}
        self.refuse: dict[str, str] = {}  # user id -> detail
        self.deny: set[str] = set()  # user ids whose write is refused for lack of rights
        self.write_error: DgprovError | None = None
        self.expiries: dict[str, str] = {}  # user id -> the expiry stored beside the token

    async def preflight(self) -> None:
        self.log.append("preflight")

    async def find_users(self, keys: Iterable[str]) -> Matches:
        self.looked_up = list(keys)
        found = {
            k.lower(): [self.by_key[k.lower()]] for k in self.looked_up if k.lower() in self.by_key
        }
        return Matches([("mail", found)], key=self.match_key)

    async def check_can_write(self, user: DirectoryUser) -> None:
        self.checked.append(user)

    async def write(
        self,
        assignments: Sequence[tuple[DirectoryUser, ProvisioningConfig]],
        expiries: Mapping[str, str] | None = None,
    ) -> dict[str, WriteResult]:
        self.writes.append(list(assignments))
        self.expiries.update(expiries or {})
        self.log.extend(f"write:{user.id}" for user, _ in assignments)
        await asyncio.sleep(0)
        if self.write_error is not None:
            raise self.write_error
        results: dict[str, WriteResult] = {}
        for user, config in assignments:
            if user.id in self.deny:
                results[user.id] = WriteResult(False, "403: Insufficient privileges", denied=True)
            elif user.id in self.refuse:
                results[user.id] = WriteResult(False, self.refuse[user.id])
            else:
                self.stored.setdefault(user.id, []).append(config)
                results[user.id] = WriteResult(True)
        return results

    async def aclose(self) -> None:
        pass


class World:
    """A group whose members all exist in Defguard and (by e-mail) in the directory."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        enrolled: Iterable[str] = (),
        disabled: Iterable[str] = (),
        not_in_directory: Iterable[str] = (),
        url: str = URL,
        match_key: MatchKey = "email",
    ) -> None:
        self.log: list[str] = []
        enrolled, disabled, absent = set(enrolled), set(disabled), set(not_in_directory)
        self.defguard = FakeDefguard(
            [DefguardUser(n, f"{n}@corp.example", n not in disabled, n in enrolled) for n in names],
            self.log,
            url=url,
        )
        self.directory = FakeDirectory(
            [DirectoryUser(f"id-{n}", n, f"{n}@corp.example") for n in names if n not in absent],
            self.log,
            match_key=match_key,
        )
        self.group = DefguardGroup(7, "vpn-users", tuple(names))
        self.progress: list[tuple[int, int]] = []
        self.stop = asyncio.Event()

    def provisioner(self, config: ProvisionConfig) -> Provisioner:
        return Provisioner(
            config,
            cast(DefguardClient, self.defguard),  # the engine is typed with the concrete client
            self.directory,
            stop=self.stop,
            progress=lambda done, total: self.progress.append((done, total)),
        )

    def run(self, config: ProvisionConfig) -> Provisioner:
        """``prepare`` then ``execute``; the provisioner is returned for its state."""
        provisioner = self.provisioner(config)
        run(provisioner, self.group)
        return provisioner


def run(provisioner: Provisioner, group: DefguardGroup) -> None:
    async def both() -> None:
        await provisioner.prepare(group)
        await provisioner.execute()

    asyncio.run(both())


def names(count: int) -> list[str]:
    return [f"user{i:03d}" for i in range(count)]


def outcomes(provisioner: Provisioner) -> dict[str, tuple[Outcome | None, str]]:
    return {m.username: (m.outcome, m.reason) for m in provisioner.state.members}


def by_name(provisioner: Provisioner) -> dict[str, PlannedMember]:
    return {m.username: m for m in provisioner.state.members}


# ------------------------------------------------------------------------- outcomes and safety


def test_every_member_ends_in_exactly_one_outcome() -> None:
    """A mixed group: each member appears once, settled, and "provisioned" means stored."""
    world = World(
        ["new", "enrolled", "off", "nowhere", "broken", "refused", "new", "last"],
        enrolled=["enrolled"],
        disabled=["off"],
        not_in_directory=["nowhere"],
    )
    world.group = DefguardGroup(7, "vpn-users", (*world.group.members, "ghost"))
    world.defguard.enrollment_failures["broken"] = RemoteError("Defguard", 500, "internal error")
    world.directory.refuse["id-refused"] = "403: Insufficient privileges"

    provisioner = world.run(ProvisionConfig("vpn-users"))

    members = provisioner.state.members
    assert [m.username for m in members] == [
        "new", "enrolled", "off", "nowhere", "broken", "refused", "last", "ghost",
    ]  # fmt: skip
    assert all(m.outcome is not None for m in members)
    assert {name: outcome for name, (outcome, _) in outcomes(provisioner).items()} == {
        "new": Outcome.PROVISIONED,
        "enrolled": Outcome.PROVISIONED,
        "off": Outcome.SKIPPED,
        "nowhere": Outcome.SKIPPED,
        "broken": Outcome.FAILED,
        "refused": Outcome.FAILED,
        "last": Outcome.PROVISIONED,
        "ghost": Outcome.FAILED,
    }
    provisioned = {
        m.directory_user.id
        for m in members
        if m.outcome is Outcome.PROVISIONED and m.directory_user is not None
    }
    assert set(world.directory.stored) == provisioned
    assert all(len(tokens) == 1 for tokens in world.directory.stored.values())
    issued = world.defguard.issued() + world.defguard.issued("start_desktop")
    assert sorted(issued) == sorted(set(issued)) == ["broken", "enrolled", "last", "new", "refused"]


def test_nothing_pending_changes_nothing() -> None:
    """When the plan leaves nobody to issue for, execute neither probes nor issues."""
    world = World(["a", "b"], disabled=["a"])
    provisioner = world.run(ProvisionConfig("vpn-users", already_done={"b": "earlier"}))
    assert outcomes(provisioner) == {
        "a": (Outcome.SKIPPED, "disabled in Defguard"),
        "b": (Outcome.SKIPPED, "already provisioned (earlier)"),
    }
    assert world.directory.checked == []
    assert world.log == ["preflight", "users"]
    assert world.defguard.asked_for == ["a", "b"]  # the group's members must all be read


def test_already_done_members_are_skipped_and_never_issued() -> None:
    """Resuming must not replace tokens a previous run already stored."""
    world = World(["a", "b", "c"])
    provisioner = world.run(
        ProvisionConfig("vpn-users", already_done={"b": "by the run in r.json"})
    )
    assert outcomes(provisioner)["b"] == (
        Outcome.SKIPPED,
        "already provisioned (by the run in r.json)",
    )
    assert world.defguard.issued() == ["a", "c"]
    assert "id-b" not in world.directory.stored
    assert {outcome for outcome, _ in outcomes(provisioner).values()} == {
        Outcome.PROVISIONED,
        Outcome.SKIPPED,
    }


def test_write_permission_is_checked_on_the_first_pending_member() -> None:
    """The no-op test write happens before any token, on a user the run will really write."""
    world = World(["off", "a", "b"], disabled=["off"])
    world.run(ProvisionConfig("vpn-users"))
    assert [user.id for user in world.directory.checked] == ["id-a"]


def test_username_matching_looks_up_active_usernames_only() -> None:
    """AD matches by account name: the directory is asked for usernames, not addresses."""
    world = World(["a", "off", "b"], disabled=["off"], match_key="username")
    provisioner = world.run(ProvisionConfig("vpn-users"))
    assert world.directory.looked_up == ["a", "b"]
    assert outcomes(provisioner)["a"][0] is Outcome.PROVISIONED


# ------------------------------------------------------------------------------------ canary


def test_canary_member_is_stored_before_anyone_else_is_issued() -> None:
    """Without a known URL, one member goes end to end first, alone."""
    world = World(names(5))
    world.run(ProvisionConfig("vpn-users"))
    assert world.directory.writes[0] == [
        (
            DirectoryUser("id-user000", "user000", "user000@corp.example"),
            ProvisioningConfig(URL, "start_enrollment:user000"),
        )
    ]
    assert world.log.index("write:id-user000") < world.log.index("start_enrollment:user001")
    assert len(world.directory.stored) == 5


def test_known_url_still_proves_the_write_with_one_member() -> None:
    """With the URL given up front the canary still goes alone: its write is the only proof that
    the account may write (Graph has no documented write probe)."""
    world = World(names(5))
    world.run(ProvisionConfig("vpn-users", enrollment_url=URL))
    assert world.log.index("write:id-user000") < world.log.index("start_enrollment:user001")
    assert len(world.directory.stored) == 5


def test_a_denied_first_write_stops_the_run_after_one_member() -> None:
    """An account that may not write costs one token, and the message names what it needs."""
    world = World(names(4))
    world.directory.deny.update(f"id-user{i:03d}" for i in range(4))
    provisioner = world.provisioner(ProvisionConfig("vpn-users"))
    with pytest.raises(PreflightError) as caught:
        run(provisioner, world.group)
    assert "Test Directory refused the first write (403: Insufficient privileges)" in str(
        caught.value
    )
    assert "grant the test account the writer role" in str(caught.value)
    assert world.defguard.issued() == ["user000"]
    first, *rest = provisioner.state.members
    assert first.outcome is Outcome.FAILED and first.reason.endswith(NOT_STORED)
    assert [(m.outcome, m.reason) for m in rest] == [(Outcome.FAILED, STOPPED_BEFORE)] * 3


def test_a_write_refused_for_another_reason_moves_the_canary_on() -> None:
    """A write refused for that member alone (not for lack of rights) does not stop the run."""
    world = World(names(3))
    world.directory.refuse["id-user000"] = "400: bad value"
    provisioner = world.run(ProvisionConfig("vpn-users"))
    assert [o for o, _ in outcomes(provisioner).values()] == [
        Outcome.FAILED,
        Outcome.PROVISIONED,
        Outcome.PROVISIONED,
    ]


def test_canary_with_a_too_long_url_stops_the_run() -> None:
    """Only the canary's token is spent when the directory cannot hold the URL."""
    world = World(names(4), url=LONG_URL)
    provisioner = world.provisioner(ProvisionConfig("vpn-users"))
    with pytest.raises(PreflightError) as caught:
        run(provisioner, world.group)
    assert f"{len(LONG_URL)} characters" in str(caught.value)
    assert f"at most {MAX_VALUE}" in str(caught.value)
    assert world.defguard.issued() == ["user000"]
    assert world.directory.writes == []
    first, *rest = provisioner.state.members
    assert first.outcome is Outcome.FAILED and first.reason.endswith(NOT_STORED)
    assert [(m.outcome, m.reason) for m in rest] == [(Outcome.FAILED, STOPPED_BEFORE)] * 3
    assert provisioner.state.enrollment_url == LONG_URL


def test_canary_that_gets_no_token_still_protects_the_rest() -> None:
    """Reissuing replaces a member's unused token, so a URL too long must cost one token only."""
    world = World(names(4), url=LONG_URL)
    world.defguard.enrollment_failures["user000"] = RemoteError("Defguard", 500, "internal error")
    provisioner = world.provisioner(ProvisionConfig("vpn-users"))
    with pytest.raises(PreflightError):
        run(provisioner, world.group)
    assert len(world.defguard.issued()) <= 2


def test_configured_url_too_long_is_refused_before_anything() -> None:
    """A URL known to be too long fails in prepare: no preflight, no lookup, no token."""
    world = World(names(3))
    provisioner = world.provisioner(ProvisionConfig("vpn-users", enrollment_url=LONG_URL))
    with pytest.raises(PreflightError) as caught:
        asyncio.run(provisioner.prepare(world.group))
    assert f"{len(LONG_URL)} characters" in str(caught.value)
    assert world.log == []
    assert provisioner.state.members == []


def test_url_at_the_limit_is_accepted() -> None:
    """The limit is inclusive: a URL of exactly ``max_value_length`` characters is stored."""
    url = "https://e.example/" + "p" * (MAX_VALUE - len("https://e.example/"))
    assert len(url) == MAX_VALUE
    world = World(names(2), url=url)
    provisioner = world.run(ProvisionConfig("vpn-users", enrollment_url=url))
    assert [o for o, _ in outcomes(provisioner).values()] == [Outcome.PROVISIONED] * 2


# ------------------------------------------------------------------------------------ failures


def test_remote_error_fails_only_that_member() -> None:
    """One refused member (e.g. disabled in Defguard meanwhile) does not stop the others."""
    world = World(names(5))
    world.defguard.enrollment_failures["user002"] = RemoteError("Defguard", 500, "internal error")
    provisioner = world.run(ProvisionConfig("vpn-users"))
    assert outcomes(provisioner)["user002"] == (
        Outcome.FAILED,
        "Defguard answered 500: internal error",
    )
    others = [o for name, (o, _) in outcomes(provisioner).items() if name != "user002"]
    assert others == [Outcome.PROVISIONED] * 4
    assert not world.stop.is_set()
    assert "id-user002" not in world.directory.stored


def test_authentication_error_stops_issuing_for_the_rest() -> None:
    """A revoked API token fails every later request: stop instead of failing each member."""
    world = World(names(5))
    world.defguard.enrollment_failures["user002"] = AuthenticationError(
        "Defguard refused the API token"
    )
    provisioner = world.run(ProvisionConfig("vpn-users", enrollment_url=URL, concurrency=1))
    assert world.defguard.issued() == ["user000", "user001", "user002"]
    assert outcomes(provisioner) == {
        "user000": (Outcome.PROVISIONED, ""),
        "user001": (Outcome.PROVISIONED, ""),
        "user002": (Outcome.FAILED, "Defguard refused the API token"),
        "user003": (Outcome.FAILED, INTERRUPTED),
        "user004": (Outcome.FAILED, INTERRUPTED),
    }
    assert world.stop.is_set()


def test_authentication_error_stops_all_concurrent_issuers() -> None:
    """With many issuers, none starts a new request once one has failed that way."""
    world = World(names(40))
    world.defguard.enrollment_failures["user005"] = AuthenticationError(
        "Defguard refused the API token"
    )
    provisioner = world.run(ProvisionConfig("vpn-users", enrollment_url=URL, concurrency=4))
    assert world.defguard.entered_after_failure == []
    issued = set(world.defguard.issued())
    assert len(issued) < 40
    for member in provisioner.state.members:
        if member.username not in issued:
            assert (member.outcome, member.reason) == (Outcome.FAILED, INTERRUPTED)
        elif member.username != "user005":
            assert member.outcome is Outcome.PROVISIONED


def test_write_refusal_fails_the_member_as_not_stored() -> None:
    """A refused write is reported with the directory's words and the fact a token is lost."""
    world = World(names(3))
    world.directory.refuse["id-user001"] = "403: Insufficient privileges"
    provisioner = world.run(ProvisionConfig("vpn-users"))
    assert outcomes(provisioner)["user001"] == (
        Outcome.FAILED,
        f"Test Directory refused the write (403: Insufficient privileges); {NOT_STORED}",
    )
    assert outcomes(provisioner)["user002"][0] is Outcome.PROVISIONED


def test_write_error_fails_every_member_of_the_batch() -> None:
    """When the whole write fails, nobody in it counts as provisioned."""
    world = World(names(3))
    world.directory.write_error = RemoteError("Microsoft Graph", 503, "unavailable")
    provisioner = world.run(ProvisionConfig("vpn-users"))
    assert set(outcomes(provisioner).values()) == {
        (Outcome.FAILED, f"Microsoft Graph answered 503: unavailable; {NOT_STORED}")
    }


# ------------------------------------------------------------------------- enrolled members


def test_already_activated_falls_back_to_a_desktop_token() -> None:
    """Defguard's "already activated" refusal means: enrolled meanwhile, use start_desktop."""
    world = World(names(3))
    world.defguard.enrollment_failures["user001"] = RemoteError("Defguard", 400, ALREADY_ACTIVATED)
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    provisioner = world.run(ProvisionConfig("vpn-users", expiration="1h"))
    member = by_name(provisioner)["user001"]
    assert (member.outcome, member.action) == (Outcome.PROVISIONED, Action.START_DESKTOP)
    assert "desktop token" in member.reason
    assert world.defguard.issued("start_desktop") == ["user001"]
    assert world.directory.stored["id-user001"] == [
        ProvisioningConfig(URL, "start_desktop:user001")
    ]
    assert member.expires_at is not None
    expires = datetime.datetime.strptime(member.expires_at, "%Y-%m-%dT%H:%M:%SZ")
    lifetime = expires.replace(tzinfo=datetime.timezone.utc) - before
    assert abs(lifetime.total_seconds() - DEFAULT_LIFETIME_SECONDS) < 60  # not the asked 1h


def test_already_activated_with_skip_policy_is_skipped() -> None:
    """With ``--enrolled-users skip`` the fallback becomes a skip: no desktop token, no write."""
    world = World(names(3))
    world.defguard.enrollment_failures["user001"] = RemoteError("Defguard", 400, ALREADY_ACTIVATED)
    provisioner = world.run(ProvisionConfig("vpn-users", enrolled_policy=EnrolledPolicy.SKIP))
    assert outcomes(provisioner)["user001"] == (
        Outcome.SKIPPED,
        "already enrolled (--enrolled-users skip)",
    )
    assert world.defguard.issued("start_desktop") == []
    assert "id-user001" not in world.directory.stored
    assert len(world.directory.stored) == 2


def test_other_400_is_a_failure_not_a_fallback() -> None:
    """Only that exact message means "enrolled"; any other 400 is reported as it is."""
    world = World(names(2))
    world.defguard.enrollment_failures["user001"] = RemoteError("Defguard", 400, "Bad request")
    provisioner = world.run(ProvisionConfig("vpn-users"))
    assert outcomes(provisioner)["user001"] == (
        Outcome.FAILED,
        "Defguard answered 400: Bad request",
    )
    assert world.defguard.issued("start_desktop") == []


def test_expiration_is_passed_through_and_recorded() -> None:
    """Defguard parses the lifetime itself; the report shows when the token will expire."""
    world = World(names(1))
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    provisioner = world.run(ProvisionConfig("vpn-users", expiration="2h"))
    after = datetime.datetime.now(datetime.timezone.utc)
    assert world.defguard.expirations == ["2h"]
    expires_at = by_name(provisioner)["user000"].expires_at
    assert expires_at is not None
    expires = datetime.datetime.strptime(expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert before + datetime.timedelta(hours=2) <= expires <= after + datetime.timedelta(hours=2)


# ------------------------------------------------------------------------ tokens and progress


@pytest.mark.parametrize("keep", [True, False])
def test_tokens_are_kept_only_when_asked(keep: bool) -> None:
    """Tokens reach the report only with --include-tokens-in-report, and only stored ones."""
    world = World(names(3))
    world.directory.refuse["id-user002"] = "403: no"
    provisioner = world.run(ProvisionConfig("vpn-users", keep_tokens=keep))
    expected = {"user000": "start_enrollment:user000", "user001": "start_enrollment:user001"}
    assert provisioner.state.tokens == (expected if keep else {})


def test_stop_event_fails_the_remaining_members_as_interrupted() -> None:
    """Ctrl-C: tokens already issued are still stored; nobody else is touched."""
    world = World(names(5))

    def interrupt(username: str) -> None:
        if username == "user001":
            world.stop.set()

    world.defguard.after_issue = interrupt
    provisioner = world.run(ProvisionConfig("vpn-users", enrollment_url=URL, concurrency=1))
    assert world.defguard.issued() == ["user000", "user001"]
    assert sorted(world.directory.stored) == ["id-user000", "id-user001"]
    assert [outcomes(provisioner)[n] for n in ("user002", "user003", "user004")] == [
        (Outcome.FAILED, INTERRUPTED)
    ] * 3


def test_progress_reaches_the_number_of_pending_members() -> None:
    """Progress counts members to issue for (not skipped ones), ending at the total."""
    world = World(names(30), disabled=["user003", "user017"])
    world.defguard.enrollment_failures["user009"] = RemoteError("Defguard", 500, "x")
    world.run(ProvisionConfig("vpn-users"))
    assert world.progress[-1] == (28, 28)
    assert {total for _, total in world.progress} == {28}
    done = [d for d, _ in world.progress]
    assert done == sorted(done)


def test_writes_are_batched() -> None:
    """Tokens are written in batches of at most WRITE_BATCH, each member exactly once."""
    world = World(names(95))
    provisioner = world.run(ProvisionConfig("vpn-users"))
    sizes = [len(batch) for batch in world.directory.writes]
    assert max(sizes) <= WRITE_BATCH
    assert max(sizes) > 1  # batching, not one round trip per token
    assert sum(sizes) == 95
    written = [user.id for batch in world.directory.writes for user, _ in batch]
    assert sorted(written) == sorted({f"id-{n}" for n in names(95)})
    assert {o for o, _ in outcomes(provisioner).values()} == {Outcome.PROVISIONED}


# ------------------------------------------------------------------- a stated enrollment URL


def test_stated_url_that_differs_stops_after_the_first_token() -> None:
    """--enrollment-url is what the admin expects users to enroll at: a different URL from
    Defguard costs one token, which is not stored, and nobody else is touched."""
    world = World(names(4))
    provisioner = world.provisioner(
        ProvisionConfig("vpn-users", enrollment_url="https://vpn.corp.example")
    )
    with pytest.raises(PreflightError) as caught:
        run(provisioner, world.group)
    assert str(caught.value) == (
        f"Defguard hands out the enrollment URL {URL}, not the --enrollment-url "
        "https://vpn.corp.example: correct --enrollment-url, or the public proxy URL in "
        "Defguard's settings"
    )
    assert world.defguard.issued() == ["user000"]
    assert world.directory.writes == []
    first, *rest = provisioner.state.members
    assert first.outcome is Outcome.FAILED and first.reason.endswith(NOT_STORED)
    assert [(m.outcome, m.reason) for m in rest] == [(Outcome.FAILED, STOPPED_BEFORE)] * 3


@pytest.mark.parametrize("stated", [URL + "/", "HTTPS://Enroll.Corp.Example"])
def test_stated_url_compares_without_trailing_slash_or_host_case(stated: str) -> None:
    world = World(names(3))
    provisioner = world.run(ProvisionConfig("vpn-users", enrollment_url=stated))
    assert [o for o, _ in outcomes(provisioner).values()] == [Outcome.PROVISIONED] * 3
    assert world.progress[-1] == (3, 3)


def test_stated_url_path_must_match() -> None:
    """Only the host's case and a trailing slash are forgiven: another path is another URL."""
    world = World(names(2))
    provisioner = world.provisioner(ProvisionConfig("vpn-users", enrollment_url=URL + "/enroll"))
    with pytest.raises(PreflightError):
        run(provisioner, world.group)
    assert world.defguard.issued() == ["user000"]
