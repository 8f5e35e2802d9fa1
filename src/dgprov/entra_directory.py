"""Entra ID as the place tokens are stored: custom security attributes, through ``graph.py``.

The ``Directory`` the engines (``provision.py``, ``sync_engine.py``) work with; every Graph URL
and answer stays in ``graph.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from .directory import DirectoryUser, Matches, MatchKey, Stored, WriteResult
from .graph import GraphClient
from .stored_value import ENTRA_ATTRIBUTES, ENTRA_EXPIRY_ATTRIBUTE, ProvisioningConfig


class EntraDirectory:
    """Custom security attributes of Entra users, through Graph."""

    name = "Entra ID"
    match_key: MatchKey = "email"
    max_value_length: int | None = 64  # custom security attribute values
    write_permission = (
        "the signed-in account may not assign custom security attributes; it needs the "
        "Attribute Assignment Administrator role (for the set or the tenant) and consent to "
        "CustomSecAttributeAssignment.ReadWrite.All"
    )

    def __init__(
        self, graph: GraphClient, attribute_set: str, *, admit_guests: bool = False
    ) -> None:
        self.graph = graph
        self.attribute_set = attribute_set
        self.admit_guests = admit_guests  # --allow-guests: guest accounts may hold tokens
        self.holds_expiry = False
        self.one_listing = False  # sync: members matched from the listing of stored values
        self.digests = True
        self._held: dict[str, Stored] | None = None

    async def preflight(self) -> None:
        await self.graph.check_attribute_set(self.attribute_set)
        # sync stores the expiry beside the token only where the set defines the attribute.
        self.holds_expiry = await self.graph.defines(self.attribute_set, ENTRA_EXPIRY_ATTRIBUTE)

    async def find_users(self, emails: Iterable[str]) -> Matches:
        if self.one_listing:
            matches, self._held = await self.graph.list_users(
                self.attribute_set, emails, digests=self.digests
            )
        else:
            matches = await self.graph.find_users(emails)
        return dataclasses.replace(matches, admit_guests=self.admit_guests)

    async def check_can_write(self, user: DirectoryUser) -> None:
        """Nothing: Graph documents no write that changes nothing and is checked like a real one
        (an empty attribute-set PATCH may be refused or pass unchecked), so the engine's canary,
        one member written alone first, is the proof; a refusal stops the run there."""

    async def write(
        self,
        assignments: Sequence[tuple[DirectoryUser, ProvisioningConfig]],
        expiries: Mapping[str, str] | None = None,
    ) -> dict[str, WriteResult]:
        # Where the set holds sync's expiry, a write without one (generate-tokens) sets it to
        # null: an expiry left from an earlier token would make sync renew or keep the new
        # token on the old one's date.
        stamped = (expiries or {}) if self.holds_expiry else None
        return await self.graph.write_attributes(
            self.attribute_set, [(user.id, config) for user, config in assignments], stamped
        )

    async def read_stored(self) -> dict[str, Stored]:
        held, self._held = self._held, None  # read by find_users from the same listing
        if held is None:
            held = (await self.graph.list_users(self.attribute_set, None, self.digests))[1]
        return held

    async def clear(self, object_ids: Sequence[str]) -> dict[str, WriteResult]:
        names = [*ENTRA_ATTRIBUTES, *([ENTRA_EXPIRY_ATTRIBUTE] if self.holds_expiry else [])]
        return await self.graph.clear_attributes(self.attribute_set, object_ids, names)

    async def aclose(self) -> None:
        await self.graph.aclose()
