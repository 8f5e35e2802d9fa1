"""Reading what the mapping needs from Defguard and Graph, cached for a short time.

The group's members and the user records (one read serves every request for ``ttl`` seconds),
the caller's Entra record by object id, and Graph's lookups of the candidates' addresses. The
decision itself is ``decisions.decide``. A failure of either service is a 503 naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..addresses import fold
from ..defguard import DefguardClient, DefguardUser
from ..directory import DirectoryUser, Matches
from ..errors import DgprovError
from ..graph import GraphClient
from .decisions import Grant, Refusal, candidates, decide, email_index
from .limits import TtlCache
from .metrics import BrokerMetrics
from .tokens import Caller

T = TypeVar("T")
GroupView = tuple[tuple[str, ...], dict[str, DefguardUser], dict[str, list[str]]]
EntraView = tuple[DirectoryUser | None, list[str]]


async def guarded(code: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call``, its failure turned into a 503 ``code`` with the client's own message."""
    try:
        return await call()
    except DgprovError as exc:
        raise Refusal(503, code, str(exc)) from None


class Mapper:
    """Maps a validated caller to the Defguard member to provision."""

    def __init__(
        self,
        defguard: DefguardClient,
        graph: GraphClient,
        group_name: str,
        *,
        ttl: float,
        metrics: BrokerMetrics,
        before_graph: Callable[[], Awaitable[None]],
        admit_guests: bool = False,
    ) -> None:
        self.defguard = defguard
        self.graph = graph
        self.group_name = group_name
        self.metrics = metrics
        self.before_graph = before_graph  # makes sure a Graph token is at hand (no blocking)
        self.admit_guests = admit_guests  # --allow-guests
        self._group: TtlCache[GroupView] = TtlCache(ttl)
        self._entra: TtlCache[EntraView] = TtlCache(ttl)
        self._matches: TtlCache[Matches] = TtlCache(ttl)

    async def grant(self, caller: Caller, *, refuse_enrolled: bool) -> Grant:
        with self.metrics.waiting("defguard"):
            members, users, index = await guarded(
                "defguard_unavailable", lambda: self._group.get("", self._read_group)
            )
        with self.metrics.waiting("graph"):
            entra_user, addresses = await guarded(
                "entra_unavailable",
                lambda: self._entra.get(
                    caller.object_id, lambda: self._read_user(caller.object_id)
                ),
            )
            emails = sorted({fold(users[n].email or "") for n in candidates(addresses, index)})
            matches = Matches([])
            if emails:
                matches = await guarded(
                    "entra_unavailable",
                    lambda: self._matches.get("\n".join(emails), lambda: self._find(emails)),
                )
        return decide(
            caller.object_id,
            caller.upn,
            members,
            users,
            index,
            entra_user,
            addresses,
            matches,
            refuse_enrolled=refuse_enrolled,
            admit_guests=self.admit_guests,
        )

    def forget(self, caller: Caller) -> None:
        """Read the caller afresh next time (after Defguard refused what the cache said)."""
        self._group.forget("")
        self._entra.forget(caller.object_id)

    async def _read_group(self) -> GroupView:
        with self.metrics.timed("defguard", "group", request=False):
            group = await self.defguard.group(self.group_name)
        with self.metrics.timed("defguard", "users", request=False):
            users = await self.defguard.users(group.members)
        return group.members, users, email_index(users)

    async def _read_user(self, object_id: str) -> EntraView:
        await self.before_graph()
        with self.metrics.timed("graph", "user", request=False):
            found = await self.graph.user_by_id(object_id)
        return found if found is not None else (None, [])

    async def _find(self, emails: list[str]) -> Matches:
        await self.before_graph()
        with self.metrics.timed("graph", "lookup", request=False):
            return await self.graph.find_users(emails)
