"""What ``sync`` learns from Defguard's settings: the lifetime a ``start_desktop`` token gets and
the enrollment URL Defguard hands out.

Defguard gives a ``start_desktop`` token its default enrollment-token lifetime whatever the
request asks (v2.0.1 ``crates/defguard_core/src/handlers/user.rs:599``,
``settings.enrollment_token_timeout()``; v1.6.6 ``handlers/user.rs:552``,
``config.enrollment_token_timeout``). 2.0 keeps that lifetime, and the public proxy URL, in its
settings record, which ``GET /api/v1/settings`` returns to an admin
(``crates/defguard_common/src/db/models/settings.rs:246,255``: ``public_proxy_url``,
``enrollment_token_timeout_hours``). 1.6 reads both from its command line or environment
(``DEFGUARD_ENROLLMENT_TOKEN_TIMEOUT``, ``DEFGUARD_ENROLLMENT_URL``), which no API shows: there
``--desktop-token-lifetime`` (and ``--enrollment-url``) stand in.

The answer is only advice: a refusal, a field missing or out of bounds means "not known here",
never a failed run. Only the two fields are kept: the record also holds secrets (SMTP and LDAP
passwords), which are dropped with the response.
"""

from __future__ import annotations

from dataclasses import dataclass

from .answers import Answer
from .defguard import PREFLIGHT_POLICY, SERVICE, DefguardClient
from .durations import MAX_LIFETIME_SECONDS, MIN_LIFETIME_SECONDS
from .errors import DgprovError
from .urls import check_enrollment_url

MAX_URL = 2048


@dataclass(frozen=True)
class ServerEnrollment:
    """The two settings, each None where Defguard does not say (1.6) or says nonsense."""

    desktop_lifetime_seconds: int | None = None
    enrollment_url: str | None = None


def enrollment_settings_of(answer: Answer) -> ServerEnrollment:
    """The fields of a settings record, each checked and bounded (pure, for tests)."""
    if not isinstance(answer.value, dict):
        return ServerEnrollment()
    hours = answer.value.get("enrollment_token_timeout_hours")
    seconds = hours * 3600 if isinstance(hours, int) and not isinstance(hours, bool) else None
    if seconds is not None and not MIN_LIFETIME_SECONDS <= seconds <= MAX_LIFETIME_SECONDS:
        seconds = None
    url = answer.value.get("public_proxy_url")
    if isinstance(url, str) and 0 < len(url) <= MAX_URL:
        try:
            check_enrollment_url(url)
        except DgprovError:
            url = None
    else:
        url = None
    return ServerEnrollment(seconds, url)


async def server_enrollment(defguard: DefguardClient) -> ServerEnrollment:
    """``GET /api/v1/settings`` read for the two fields; nothing known when it fails."""
    try:
        response = await defguard._request("GET", "/api/v1/settings", policy=PREFLIGHT_POLICY)
        if response.status_code != 200:
            return ServerEnrollment()
        return enrollment_settings_of(Answer.of(response, SERVICE))
    except DgprovError:
        return ServerEnrollment()
