"""What the admin job needs from a directory, whichever it is (Entra ID or Active Directory).

The types here are the vocabulary shared by the directory clients (``graph.py``,
``ldap_directory.py``) and the pure planning logic (``plan.py``), which is why they live apart
from both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .stored_value import ProvisioningConfig

MatchKey = Literal["email", "username"]


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A user object in Entra ID or AD that a Defguard member maps to."""

    id: str  # Entra object id, or AD distinguished name
    upn: str | None
    mail: str | None
    # False only when the directory says so (Entra ``accountEnabled: false``, AD's ACCOUNTDISABLE
    # bit): a token stored on a disabled account is a credential nobody should be holding.
    enabled: bool = True
    # Entra ``userType`` Guest: someone from outside the tenant, refused unless admitted.
    guest: bool = False


@dataclass(frozen=True)
class Matches:
    """Directory users found per lookup key (``addresses.fold``-ed), stage by stage.

    Entra matching looks every member's e-mail address up in ``mail``, ``userPrincipalName``
    and ``otherMails`` alike, and an address that finds more than one object, under one key
    or under different ones, is ambiguous (``plan``): first-key-wins would hand a member's
    token to whoever reuses a former address as their ``mail`` or lists it in ``otherMails``.
    AD has one stage, keyed by the sAMAccountName (= Defguard username) or by the e-mail
    address.
    """

    stages: Sequence[tuple[str, Mapping[str, Sequence[DirectoryUser]]]]
    key: MatchKey = "email"
    # Keys the directory cannot search for at all -> why (e.g. longer than Graph's filters take).
    unsearchable: Mapping[str, str] = field(default_factory=dict)
    # Key -> (stage, object) whose address there only looks like the key: it holds characters
    # that may fold into ASCII (``addresses.skeleton``). Such a key is ambiguous, never matched.
    confusable: Mapping[str, Sequence[tuple[str, DirectoryUser]]] = field(default_factory=dict)
    # Whether guest accounts may receive tokens (``--allow-guests``); the run's policy, carried
    # with what the directory found so every planner applies the same.
    admit_guests: bool = False


@dataclass(frozen=True, slots=True)
class Stored:
    """A token a directory object holds, as ``sync`` reads it back.

    Never the token itself: ``digest`` (``stored_value.token_digest``) recognises the value dgprov
    wrote; ``expires_at`` is the expiry sync stored beside it (ISO 8601, or
    ``stored_value.UNKNOWN_EXPIRY``), None when nothing was stored beside it (another tool, or
    ``generate-tokens``, wrote the value).
    """

    object_id: str
    upn: str | None
    digest: bytes
    expires_at: str | None = None
    # The stored enrollment URL (Entra and AD listings read it), to compare with Defguard's.
    url: str | None = None
    # A value --state does not know (e.g. stored by a run that was killed): kept, not renewed.
    unrecorded: bool = False


@dataclass(frozen=True)
class WriteResult:
    ok: bool
    detail: str = ""  # why a write failed, as the directory said it
    denied: bool = False  # refused for lack of rights: no other member's write would fare better


class Directory(Protocol):
    name: str
    match_key: MatchKey
    max_value_length: int | None  # of one stored value, where the directory limits it

    @property
    def write_permission(self) -> str:
        """What the account needs when a write is denied, for the message."""
        ...

    async def preflight(self) -> None: ...

    async def find_users(self, keys: Iterable[str]) -> Matches: ...

    async def check_can_write(self, user: DirectoryUser) -> None: ...

    async def write(
        self,
        assignments: Sequence[tuple[DirectoryUser, ProvisioningConfig]],
        expiries: Mapping[str, str] | None = None,
    ) -> dict[str, WriteResult]:
        """``(user, config)`` pairs -> result per ``user.id``; ``expiries`` (per ``user.id``) are
        stored beside the pair where the directory can hold them (``holds_expiry``)."""
        ...

    async def aclose(self) -> None: ...


class SyncDirectory(Directory, Protocol):
    """What ``sync`` needs beyond ``generate-tokens``: reading back and removing stored values."""

    holds_expiry: bool  # whether the expiry can be stored beside the token (else --state)
    # Match the members from the one listing that reads the stored values, where that is
    # cheaper than looking them up (Entra: the whole tenant is listed anyway).
    one_listing: bool
    # Whether read_stored computes each token's digest: only --state compares them, and
    # 100,000 of them cost memory for nothing otherwise.
    digests: bool

    async def read_stored(self) -> dict[str, Stored]:
        """Every object holding a token, keyed by lower-cased object id."""
        ...

    async def clear(self, object_ids: Sequence[str]) -> dict[str, WriteResult]:
        """Remove the stored values (and the expiry beside them) -> result per object id."""
        ...
