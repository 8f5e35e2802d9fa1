"""A stand-in for the Windows account calls (``dgprov.windows_accounts``), for the decisions
that Wine cannot put to the test: a SYSTEM token, a console with nobody or someone else at it."""

from __future__ import annotations

from dataclasses import dataclass, field

from dgprov.windows_accounts import LOCAL_SYSTEM_SID

USER_SID = "S-1-5-21-1-2-3-1001"


@dataclass
class FakeWindows:
    """Account names -> SIDs -> ProfileList entries, recording which names were asked."""

    sids: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    current: str = USER_SID
    console: str | None = None
    asked: list[str] = field(default_factory=list)
    console_asked: int = 0

    @classmethod
    def as_system(
        cls,
        console: str | None,
        sids: dict[str, str] | None = None,
        profiles: dict[str, str] | None = None,
    ) -> FakeWindows:
        return cls(sids or {}, profiles or {}, current=LOCAL_SYSTEM_SID, console=console)

    def current_sid(self) -> str:
        return self.current

    def console_user(self) -> str | None:
        self.console_asked += 1
        return self.console

    def account_sid(self, account: str) -> str | None:
        self.asked.append(account)
        return self.sids.get(account)

    def profile_path(self, sid: str) -> str | None:
        return self.profiles.get(sid)
