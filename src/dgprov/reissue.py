"""What an end user asks for when their enrollment token is missing or has expired.

A new token for that one person, never a run over the whole group: each issue replaces the
member's unused token in Defguard, so re-issuing everyone breaks every install still waiting on
its token. The client job and ``enroll`` name the command, so the request reaches the
administrator ready to run.
"""

from __future__ import annotations

import datetime

UNKNOWN_USERNAME = "<your username>"


def reissue_command(username: str | None = None, *, directory_ad: bool = False) -> str:
    """``dgprov generate-tokens --member jdoe (or sync --member jdoe)``: the Defguard username
    where the client knows it (AD's account name), else a placeholder."""
    who = username or UNKNOWN_USERNAME
    ad = " --directory ad" if directory_ad else ""
    again = "…" if username is None else who
    return f"dgprov generate-tokens{ad} --member {who} (or sync --member {again})"


def ask_for_one(username: str | None = None, *, directory_ad: bool = False) -> str:
    """The end of a message about a missing or expired token."""
    return f"ask your administrator for one: {reissue_command(username, directory_ad=directory_ad)}"


def expired_since(expires_at: object, now: datetime.datetime | None = None) -> str | None:
    """The expiry sync stored beside the token (ISO 8601 UTC), if it has passed; anything else
    (no expiry, a ``start_desktop`` issue time, a value that does not parse) says nothing."""
    if not isinstance(expires_at, str) or len(expires_at) > 40:
        return None
    try:
        moment = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return expires_at if moment < now else None
