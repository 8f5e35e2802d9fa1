"""What ``generate-tokens`` and ``sync`` share before either changes anything: the checks that
need no network, the directory opened (signed in to Entra ID or bound to AD), where the tokens
go as the report records it, and Ctrl-C turned into a clean stop.

Both ``api.py`` and ``api_sync.py`` import it, and neither imports the other's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from .directory import SyncDirectory
from .durations import parse_lifetime
from .entra_auth import EntraSettings, EntraSignIn
from .entra_directory import EntraDirectory
from .errors import UsageError
from .graph import GraphClient
from .ldap_directory import LdapDirectory, LdapSettings
from .stop_signals import stop_requests
from .tls import tls_context
from .urls import check_defguard_url

ADMIN_SCOPES = [
    "User.Read.All",
    "CustomSecAttributeAssignment.ReadWrite.All",
    "CustomSecAttributeDefinition.Read.All",
]
ADMIN_CACHE = "msal_cache_admin.bin"

Notify = Callable[[str], None]
"""Receives one status line for the person running the job (the CLI prints it on stderr)."""


def quiet(message: str) -> None:
    """The default ``notify``: a library caller that passes none hears nothing."""


@contextlib.contextmanager
def interruptible(stop: asyncio.Event, notify: Notify) -> Iterator[None]:
    """Ctrl-C, SIGTERM, SIGHUP and Windows' console events ask the run to stop cleanly (finish
    what is in flight, write the report): ``stop_signals.py``.

    Signal handlers can only be installed from the main thread; elsewhere the caller's own
    cancellation applies.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()

    def request_stop(what: str) -> None:
        notify(f"\n{what}: finishing requests in flight, then writing the report")
        loop.call_soon_threadsafe(stop.set)

    with stop_requests(request_stop):
        yield


def check_job(
    url: str,
    expiration: str | None,
    include_tokens_in_report: bool,
    report: Path | None,
    directory: Literal["entra", "ad"],
    entra: EntraSettings | None,
    ad: LdapSettings | None,
) -> str:
    """The checks of an admin job (``generate-tokens``, ``sync``) that need no network; the URL."""
    url = check_defguard_url(url)
    if expiration is not None:
        parse_lifetime(expiration)
    if include_tokens_in_report and report is None:
        raise UsageError("--include-tokens-in-report needs --report FILE")
    if directory == "ad" and ad is None:
        raise UsageError("--directory ad needs --ldap-url, --base-dn and --ad-attribute")
    if directory == "entra":
        if entra is None:
            raise UsageError("no Entra tenant: pass --tenant or set DGPROV_TENANT")
        entra.check()
    return url


def stored_in(
    directory: Literal["entra", "ad"], attribute_set_name: str, ad: LdapSettings | None
) -> dict[str, str]:
    """Where in the directory tokens go, as the report's ``run`` says (and ``--resume`` checks)."""
    if directory == "ad":
        assert ad is not None
        return {"ad_attribute": ad.attribute}
    return {"attribute_set": attribute_set_name}


async def open_directory(
    directory: Literal["entra", "ad"],
    entra: EntraSettings | None,
    attribute_set_name: str,
    ad: LdapSettings | None,
    notify: Notify,
    *,
    allow_guests: bool = False,
) -> SyncDirectory:
    """The directory, signed in or bound; ``allow_guests`` lets Entra guest accounts hold
    tokens (AD has no guests)."""
    if directory == "ad":
        assert ad is not None
        return LdapDirectory(ad)
    assert entra is not None
    notify("signing in to Entra ID")
    sign_in = await asyncio.to_thread(EntraSignIn, entra, ADMIN_SCOPES, notify, ADMIN_CACHE)
    await asyncio.to_thread(sign_in.token)
    graph = GraphClient(entra.graph_url, sign_in.token, verify=tls_context(entra.ca_bundle))
    return EntraDirectory(graph, attribute_set_name, admit_guests=allow_guests)
