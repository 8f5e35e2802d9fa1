"""The one secret dgprov moves around, and its three spellings.

An enrollment URL and token travel together from Defguard to the directory and from there to the
client. Entra ID holds them as two String custom security attributes (``EnrollmentUrl``,
``EnrollmentToken``), Active Directory as compact JSON in one attribute (``enrollmentUrl``,
``enrollmentToken``, the keys Defguard's MSI and scripts read), and the desktop client as
``provisioning.json`` (``enrollment_url``, ``enrollment_token``). Writers and readers of all three
use this module, so a spelling can never differ between the side that stores and the side that
reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .credentials import is_token_text
from .errors import InvalidProvisioningValue
from .urls import check_enrollment_url

ENTRA_URL_ATTRIBUTE = "EnrollmentUrl"
ENTRA_TOKEN_ATTRIBUTE = "EnrollmentToken"
ENTRA_ATTRIBUTES = (ENTRA_URL_ATTRIBUTE, ENTRA_TOKEN_ATTRIBUTE)
ENTRA_EXPIRY_ATTRIBUTE = "EnrollmentTokenExpiresAt"
AD_URL_KEY = "enrollmentUrl"
AD_TOKEN_KEY = "enrollmentToken"
AD_EXPIRY_KEY = "expiresAt"
UNKNOWN_EXPIRY = "unknown"
"""What earlier versions of sync stored beside a ``start_desktop`` token, without its issue
time; sync no longer writes it (see ``reconcile.py`` for how such a value is judged)."""
DESKTOP_ISSUED = "start_desktop issued "
"""The prefix of what sync stores beside a ``start_desktop`` token: when it was issued (ISO 8601
UTC follows). Defguard gives such a token its default lifetime, whatever was asked (v2.0.1
``handlers/user.rs:599``), so the expiry is that issue time plus the lifetime sync learns
from Defguard's settings (or ``--desktop-token-lifetime``), worked out on each run."""
INVALID_VALUE = "invalid"
"""The expiry a value reads as when the desktop client would refuse it (``ProvisioningConfig
.validated``): whoever may write the attribute chose it, and such a value is renewed."""
REPLACED_VALUE = "replaced"
"""The expiry ``--state`` gives a value it knows was replaced in Defguard by a token sync issued
next (and never stored): dead, so renewed."""
AD_EXPECTED_SHAPE = '{"enrollmentUrl": "https://…", "enrollmentToken": "…"}'
FILE_URL_KEY = "enrollment_url"
FILE_TOKEN_KEY = "enrollment_token"


@dataclass(frozen=True)
class ProvisioningConfig:
    """An enrollment URL and the token that opens it."""

    enrollment_url: str
    enrollment_token: str

    def __repr__(self) -> str:  # never print the token, even in a traceback
        return f"ProvisioningConfig(enrollment_url={self.enrollment_url!r}, enrollment_token='***')"

    def validated(self) -> ProvisioningConfig:
        """Itself, if the desktop client could use it; else ``InvalidProvisioningValue``."""
        check_enrollment_url(self.enrollment_url)
        if not is_token_text(self.enrollment_token):
            raise InvalidProvisioningValue(
                "the enrollment token must be non-empty printable ASCII without whitespace"
            )
        return self


def _pair(values: Mapping[str, Any], url_key: str, token_key: str) -> ProvisioningConfig | None:
    url, token = values.get(url_key), values.get(token_key)
    if isinstance(url, str) and isinstance(token, str):
        return ProvisioningConfig(url, token)
    return None


def to_entra_attributes(
    config: ProvisioningConfig, expires_at: str | None = None
) -> dict[str, str]:
    """The attribute values; with ``expires_at`` also ``EnrollmentTokenExpiresAt`` (sync)."""
    values = {
        ENTRA_URL_ATTRIBUTE: config.enrollment_url,
        ENTRA_TOKEN_ATTRIBUTE: config.enrollment_token,
    }
    if expires_at is not None:
        values[ENTRA_EXPIRY_ATTRIBUTE] = expires_at
    return values


def from_entra_attributes(values: Mapping[str, Any]) -> ProvisioningConfig | None:
    """The pair from one attribute set's values; None when either attribute is missing."""
    return _pair(values, ENTRA_URL_ATTRIBUTE, ENTRA_TOKEN_ATTRIBUTE)


def to_ad_json(config: ProvisioningConfig, expires_at: str | None = None) -> str:
    """The JSON Defguard's client-side script parses, without spaces; with ``expires_at`` an
    extra key ``expiresAt`` that the script (``ConvertFrom-Json``, then two properties) ignores."""
    document = {AD_URL_KEY: config.enrollment_url, AD_TOKEN_KEY: config.enrollment_token}
    if expires_at is not None:
        document[AD_EXPIRY_KEY] = expires_at
    return json.dumps(document, separators=(",", ":"))


MAX_AD_VALUE = 4096  # characters: the JSON dgprov writes is a few hundred


def _ad_document(raw: str) -> dict[str, Any] | None:
    """The AD attribute's JSON object, or None: the value is anyone's who may write the
    attribute, so it is bounded before parsing and nesting deep enough to exhaust the parser's
    recursion is just not that JSON."""
    if len(raw) > MAX_AD_VALUE:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def from_ad_json(raw: str) -> ProvisioningConfig | None:
    """The pair from an AD attribute's JSON; None when it is not that JSON."""
    document = _ad_document(raw)
    return _pair(document, AD_URL_KEY, AD_TOKEN_KEY) if document is not None else None


def ad_expiry(raw: str) -> str | None:
    """The ``expiresAt`` sync keeps beside the pair in the AD JSON, if it is a string;
    ``INVALID_VALUE`` when the pair is one the desktop client would refuse."""
    document = _ad_document(raw)
    if document is None:
        return None
    value = document.get(AD_EXPIRY_KEY)
    pair = _pair(document, AD_URL_KEY, AD_TOKEN_KEY)
    return checked_expiry(pair, value if isinstance(value, str) else None)


def value_problem(config: ProvisioningConfig | None) -> str | None:
    """Why the desktop client (and ``fetch-config``) would refuse this stored pair, if it would."""
    if config is None:
        return "the URL or the token is missing"
    try:
        config.validated()
    except InvalidProvisioningValue as exc:
        return str(exc)
    return None


def checked_expiry(config: ProvisioningConfig | None, expires_at: str | None) -> str | None:
    """The expiry a stored value reads as: ``INVALID_VALUE`` for a pair the client would refuse
    (Entra and AD values are judged alike), else the expiry stored beside it."""
    return INVALID_VALUE if value_problem(config) is not None else expires_at


def desktop_stamp(issued: str) -> str:
    """What sync stores beside a ``start_desktop`` token issued at ``issued`` (ISO 8601 UTC)."""
    return DESKTOP_ISSUED + issued


def desktop_issued(expires_at: str | None) -> str | None:
    """The issue time in a ``desktop_stamp``, else None."""
    if expires_at is None or not expires_at.startswith(DESKTOP_ISSUED):
        return None
    return expires_at.removeprefix(DESKTOP_ISSUED)


NO_DIGEST = b""  # where no digest is wanted (see ``directory.SyncDirectory.digests``)


def token_digest(token: str) -> bytes:
    """What sync remembers of a stored token: enough to recognise it (the first 128 bits of its
    SHA-256), nothing to use; 16 bytes each, as 100,000 of them are held at once."""
    return hashlib.sha256(token.encode()).digest()[:16]


def to_file_json(config: ProvisioningConfig) -> str:
    """``provisioning.json`` as the desktop client reads it: exactly the two keys."""
    body = {FILE_URL_KEY: config.enrollment_url, FILE_TOKEN_KEY: config.enrollment_token}
    return json.dumps(body, indent=2) + "\n"


def from_file_json(text: str) -> ProvisioningConfig | None:
    """As the desktop client reads it: a leading BOM tolerated, other keys ignored."""
    try:
        document = json.loads(text.removeprefix("\ufeff"))
    except ValueError:
        return None
    return _pair(document, FILE_URL_KEY, FILE_TOKEN_KEY) if isinstance(document, dict) else None
