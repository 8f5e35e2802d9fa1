"""The one TLS context dgprov's HTTP clients trust, built from ``--ca-bundle`` or certifi.

Building a context loads a CA store (~20 ms), so a run builds one and shares it; and every
client gets an ``ssl.SSLContext`` rather than httpx's looser ``verify`` union, so certificate
checking cannot be switched off by passing the wrong type.
"""

from __future__ import annotations

import ssl
from typing import Any

import certifi

from .errors import UsageError


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """Verify servers against ``ca_bundle`` when given (a private CA), else the public roots.

    A bundle that cannot be loaded is the caller's mistake, named here once: left to the first
    connection it would surface as a traceback, or as an unreachable server."""
    if not ca_bundle:
        return ssl.create_default_context(cafile=certifi.where())
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except ssl.SSLError as exc:
        found_none = exc.reason in (None, "NO_CERTIFICATE_OR_CRL_FOUND")
        problem = "not a PEM bundle of CA certificates" + ("" if found_none else f" ({exc.reason})")
    except OSError as exc:
        problem = f"cannot read it ({exc.strerror or type(exc).__name__})"
    raise UsageError(
        f"--ca-bundle {ca_bundle}: {problem}; give the PEM file of the CA that signed the "
        "servers' certificates"
    )


def ldap_tls(ca_bundle: str | None, host: str) -> Any:
    """ldap3's TLS settings over the same context, for ``ldaps://`` and StartTLS alike.

    ldap3 builds its own context from the system store and checks the host name itself, only
    on some paths; here the socket is wrapped by ``tls_context``, so the certificate chain and
    the host name are checked by ``ssl`` during the handshake, before a bind password is sent.
    """
    import ldap3  # only the LDAP paths need it

    context = tls_context(ca_bundle)

    class VerifiedTls(ldap3.Tls):  # type: ignore[misc]  # ldap3 ships no type information
        def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
            connection.socket = context.wrap_socket(
                connection.socket,
                server_side=False,
                do_handshake_on_connect=do_handshake,
                server_hostname=host,
            )

    return VerifiedTls(validate=ssl.CERT_REQUIRED)
