"""The environment variables dgprov reads, all read here and in one way.

An empty value counts as unset and surrounding white space is dropped (a secret pasted with a
trailing newline still works). Options given on the command line win over these; the commands
resolve that, so the library API never reads the environment behind its caller's back except
where a name below says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEFGUARD_API_TOKEN = "DEFGUARD_API_TOKEN"
TENANT = "DGPROV_TENANT"
CLIENT_ID = "DGPROV_CLIENT_ID"
CLIENT_SECRET = "DGPROV_CLIENT_SECRET"
CLIENT_CERTIFICATE = "DGPROV_CLIENT_CERTIFICATE"
CLIENT_CERTIFICATE_PASSWORD = "DGPROV_CLIENT_CERTIFICATE_PASSWORD"
BIND_PASSWORD = "DGPROV_BIND_PASSWORD"
CACHE_DIR = "DGPROV_CACHE_DIR"  # where the sign-in cache is kept
BROKER_URL = "DGPROV_BROKER_URL"  # fetch-config: the broker; --source auto then prefers it
BROKER_SCOPE = "DGPROV_BROKER_SCOPE"  # fetch-config: the broker's scope (else the broker's own)
# dgprov broker: its own registration's id. Not DGPROV_CLIENT_ID, which is the public client's
# on the same machines and shells: a broker that took it would accept the wrong audience.
BROKER_CLIENT_ID = "DGPROV_BROKER_CLIENT_ID"
LOCK_FILE = "DGPROV_LOCK_FILE"  # the lock sync and generate-tokens share (default: per account)

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
    BROKER_URL,
    BROKER_SCOPE,
    BROKER_CLIENT_ID,
    LOCK_FILE,
)
PROGRAM_DATA = "PROGRAMDATA"  # Windows: the machine-wide data folder (sync's lock)
SECRET_VARIABLES = (DEFGUARD_API_TOKEN, CLIENT_SECRET, CLIENT_CERTIFICATE_PASSWORD, BIND_PASSWORD)


def get(name: str) -> str | None:
    """The variable's value, stripped; None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def _is_secret(name: str) -> bool:
    return name.upper() in SECRET_VARIABLES  # Windows variable names are case-blind


def child_environment() -> dict[str, str]:
    """The environment for a process dgprov starts (``realm``, ``loginctl``, ``dsregcmd``,
    PowerShell): dgprov's own, minus every secret dgprov reads. Those tools need none, and a
    process started by root as part of an installer should not be handed the bind password."""
    return {name: value for name, value in os.environ.items() if not _is_secret(name)}


@contextmanager
def without_secrets() -> Iterator[None]:
    """Take the secrets out of ``os.environ`` while code that starts processes with the
    inherited environment runs (MSAL opening a browser through ``webbrowser``), then put them
    back; dgprov cannot hand such processes an environment of its own."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if _is_secret(name)}
    try:
        yield
    finally:
        os.environ.update(saved)
