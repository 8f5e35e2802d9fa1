"""The one TLS context dgprov's HTTP clients trust, built from ``--ca-bundle`` or certifi.

Building a context loads a CA store (~20 ms), so a run builds one and shares it; and every
client gets an ``ssl.SSLContext`` rather than httpx's looser ``verify`` union, so certificate
checking cannot be switched off by passing the wrong type.
"""

from __future__ import annotations

import ssl

import certifi


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Verify servers against ``ca_bundle`` when given (a private CA), else the public roots."""
    return ssl.create_default_context(cafile=ca_bundle or certifi.where())
