"""What the admin job needs from a directory, whichever it is (Entra ID or Active Directory)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .plan import DirectoryUser, Matches, MatchKey


@dataclass(frozen=True)
class WriteResult:
    ok: bool
    detail: str = ""  # why a write failed, as the directory said it


class Directory(Protocol):
    name: str
    match_key: MatchKey
    max_value_length: int | None  # of one stored value, where the directory limits it

    async def preflight(self) -> None: ...

    async def find_users(self, keys: Iterable[str]) -> Matches: ...

    async def check_can_write(self, user: DirectoryUser) -> None: ...

    async def write(
        self, assignments: Sequence[tuple[DirectoryUser, str, str]]
    ) -> dict[str, WriteResult]:
        """``(user, enrollment_url, token)`` triples -> result per ``user.id``."""
        ...
