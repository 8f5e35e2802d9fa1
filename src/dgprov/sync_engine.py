"""The engine of ``dgprov sync``: read what is, decide (``reconcile.py``), then change only that.

It drives ``provision.Provisioner`` for everything a token is issued for (same canary, pool of
issuers and batched writes as ``generate-tokens``, with each token's expiry stored beside it)
and adds the reads sync needs and the clearing. The reads grow like the number of members
divided by a page size: Defguard's user list (plus, on 1.6, one device list), the directory's
member lookups, and one listing of the objects holding a token. A run where nothing changed
writes nothing anywhere: no token is issued, no directory value is written, and the state file
(``--state``) is rewritten only when an entry changed. With ``--state``, each batch of tokens is
journaled (``sync_state.py``) before the directory receives it, so a run killed at any point
leaves a record of every token it may have stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence

from .defguard import DefguardClient, DefguardGroup, DefguardUser
from .directory import Stored, SyncDirectory
from .errors import DgprovError, PreflightError
from .member_selection import MemberSelection
from .plan import Decision, Outcome, PlannedMember
from .provision import ProvisionConfig, Provisioner, utc_iso
from .reconcile import Moment, reconcile
from .stored_value import ENTRA_EXPIRY_ATTRIBUTE, NO_DIGEST, ProvisioningConfig, token_digest
from .sync_state import SyncState

CLEAR_BATCH = 200


def _fail(member: PlannedMember, reason: str) -> None:
    if member.outcome is None:
        member.outcome, member.reason = Outcome.FAILED, reason


class Syncer:
    def __init__(
        self,
        config: ProvisionConfig,
        defguard: DefguardClient,
        directory: SyncDirectory,
        moment: Moment,
        *,
        state: SyncState | None = None,
        stop: asyncio.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
        selection: MemberSelection | None = None,
    ) -> None:
        self.defguard = defguard
        self.selection = selection or MemberSelection()
        self.directory = directory
        self.moment = moment
        self.state = state
        self.stop = stop or asyncio.Event()
        config = dataclasses.replace(config, stamp=True)
        self.provisioner = Provisioner(
            config,
            defguard,
            directory,
            stop=self.stop,
            progress=progress,
            before_write=self._journal if state is not None else None,
        )
        self.members: list[PlannedMember] = []
        self.held: dict[str, Stored] = {}
        self._state_changed = False
        self._issued: set[str] = set()  # lower-cased object ids journaled this run

    async def prepare(self, group: DefguardGroup) -> list[PlannedMember]:
        """Every member's decision, and a ``clear`` row per orphaned value; changes nothing.

        The whole group is decided, so that no value of a member left out of the selection
        reads as orphaned; then only the selected rows are kept (``MemberSelection.apply``)."""
        self.directory.one_listing = True
        self.directory.digests = self.state is not None
        planned = await self.provisioner.prepare(group)
        if self.state is None and not self.directory.holds_expiry:
            raise PreflightError(
                f"the attribute set has no {ENTRA_EXPIRY_ATTRIBUTE} attribute, so sync cannot "
                "keep each token's expiry beside it: define it (single-valued String, see the "
                "README) or pass --state FILE to keep it in a local file"
            )
        users = await self._with_devices(group, self.provisioner.users)
        held = await self.directory.read_stored()
        now = utc_iso(self.moment.now)
        self.held = self.state.vouch(held, now) if self.state is not None else held
        orphans = reconcile(planned, users, self.provisioner.matches, self.held, self.moment)
        self.members = self.selection.apply([*planned, *orphans])
        self._adopt(self.members)
        # What reconcile read is not needed any more (the state file needs the holders):
        # 100,000 members' records go before the run and its report need memory.
        self.provisioner.forget_lookups()
        if self.state is None:
            self.held = {}
        return self.members

    def _adopt(self, planned: Sequence[PlannedMember]) -> None:
        """Record the values --state had no record of and reconcile kept, with the expiry it
        gave them, so the next runs judge them by it."""
        if self.state is None:
            return
        for member in planned:
            obj = member.directory_user
            stored = self.held.get(obj.id.lower()) if obj is not None else None
            if stored is None or not stored.unrecorded or member.decision is not Decision.KEEP:
                continue
            assert obj is not None and member.expires_at is not None
            self.state.record(obj.id, stored.digest, member.expires_at, member.username)
            self._state_changed = True

    async def _journal(self, batch: Sequence[tuple[PlannedMember, ProvisioningConfig]]) -> None:
        """Record a batch of issued tokens, on disk, before the directory receives them: each
        replaces the member's previous token in Defguard, which the entry names."""
        state = self.state
        assert state is not None
        entries = []
        for member, config in batch:
            obj = member.directory_user
            assert obj is not None
            previous = self.held.get(obj.id.lower())
            replaced = previous.digest if previous is not None else NO_DIGEST
            digest = token_digest(config.enrollment_token)
            expiry = member.expires_at or ""
            entries.append(state.record(obj.id, digest, expiry, member.username, replaced))
            self._issued.add(obj.id.lower())
        self._state_changed = True
        await asyncio.to_thread(state.append, entries)

    async def _with_devices(
        self, group: DefguardGroup, users: Mapping[str, DefguardUser]
    ) -> Mapping[str, DefguardUser]:
        """Members' records with their device counts; 1.6 lists no devices with its users, so
        one ``GET /device`` supplies them."""
        if all(u.devices is not None for u in users.values()):
            return users
        counts = await self.defguard.device_counts()
        return {
            name: dataclasses.replace(user, devices=counts.get(user.id, 0))
            for name in group.members
            if (user := users.get(name)) is not None
        }

    async def execute(self) -> None:
        issuing = [m for m in self.members if m.decision in (Decision.ISSUE, Decision.RENEW)]
        clearing = [m for m in self.members if m.decision is Decision.CLEAR]
        self.provisioner.state.members = issuing
        try:
            await self.provisioner.execute()
            await self._clear(clearing)
        finally:
            for member in clearing:
                _fail(member, "not processed: the run stopped before this member")
            self._update_state(issuing)

    async def _clear(self, members: list[PlannedMember]) -> None:
        for start in range(0, len(members), CLEAR_BATCH):
            if self.stop.is_set():
                return
            batch = [m for m in members[start : start + CLEAR_BATCH] if m.directory_user]
            ids = [m.directory_user.id for m in batch if m.directory_user is not None]
            try:
                results = await self.directory.clear(ids)
            except DgprovError as exc:
                for member in batch:
                    _fail(member, f"the stored value was not removed: {exc}")
                continue
            for member, object_id in zip(batch, ids, strict=True):
                result = results[object_id]
                if result.ok:
                    member.outcome = Outcome.CLEARED
                    if self.state is not None:
                        self.state.forget(object_id)
                        self._state_changed = True
                else:
                    _fail(
                        member,
                        f"{self.directory.name} refused to remove the value ({result.detail})",
                    )

    def _update_state(self, issuing: list[PlannedMember]) -> None:
        """Fold the journal (each token issued this run) into the file, and forget objects
        that hold nothing any more."""
        state = self.state
        if state is None:
            return
        for key in [k for k in state.entries if k not in self.held and k not in self._issued]:
            state.forget(key)
            self._state_changed = True
        if self._state_changed or state.unsaved:
            state.save()
        state.close()
