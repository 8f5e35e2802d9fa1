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
"""The stored expiry of a ``start_desktop`` token: Defguard applies its own default lifetime
and does not say which, so ``sync`` records that it does not know rather than guess."""
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
    """The ``expiresAt`` sync keeps beside the pair in the AD JSON, if it is a string."""
    document = _ad_document(raw)
    value = document.get(AD_EXPIRY_KEY) if document is not None else None
    return value if isinstance(value, str) else None


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
