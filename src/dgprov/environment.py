"""The environment variables dgprov reads, all read here and in one way.

An empty value counts as unset and surrounding white space is dropped (a secret pasted with a
trailing newline still works). Options given on the command line win over these; the commands
resolve that, so the library API never reads the environment behind its caller's back except
where a name below says so.
"""

from __future__ import annotations

import os

DEFGUARD_API_TOKEN = "DEFGUARD_API_TOKEN"
TENANT = "DGPROV_TENANT"
CLIENT_ID = "DGPROV_CLIENT_ID"
CLIENT_SECRET = "DGPROV_CLIENT_SECRET"
CLIENT_CERTIFICATE = "DGPROV_CLIENT_CERTIFICATE"
CLIENT_CERTIFICATE_PASSWORD = "DGPROV_CLIENT_CERTIFICATE_PASSWORD"
BIND_PASSWORD = "DGPROV_BIND_PASSWORD"
CACHE_DIR = "DGPROV_CACHE_DIR"  # where the sign-in cache is kept

# dgprov's own variables, documented in the README; the rest below belong to the platform.
DGPROV_VARIABLES = (
    DEFGUARD_API_TOKEN,
    TENANT,
    CLIENT_ID,
    CLIENT_SECRET,
    CLIENT_CERTIFICATE,
    CLIENT_CERTIFICATE_PASSWORD,
    BIND_PASSWORD,
    CACHE_DIR,
)
SECRET_VARIABLES = (DEFGUARD_API_TOKEN, CLIENT_SECRET, CLIENT_CERTIFICATE_PASSWORD, BIND_PASSWORD)


def get(name: str) -> str | None:
    """The variable's value, stripped; None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None
