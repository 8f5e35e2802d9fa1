"""Active Directory (or any LDAP directory) as the place tokens are stored.

As Defguard's AD script does, users are found by ``sAMAccountName`` = Defguard username (or by
``mail`` with ``--match-by mail``), and the token and URL are written as compact JSON
``{"enrollmentUrl": …, "enrollmentToken": …}`` into one attribute (``--ad-attribute``), through
the codec in ``stored_value.py``.
ldap3 is synchronous, so every call runs in a worker thread, on that thread's own connection.
Filter values are escaped (RFC 4515), so names with ``*``, ``(`` or ``\\`` cannot widen a search.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from .addresses import confusable, fold, skeleton
from .directory import DirectoryUser, Matches, MatchKey, Stored, WriteResult
from .errors import AuthenticationError, PreflightError, UsageError
from .stored_value import (
    NO_DIGEST,
    ProvisioningConfig,
    ad_expiry,
    from_ad_json,
    to_ad_json,
    token_digest,
)
from .tls import ldap_tls

FILTER_VALUES = 50
PAGE_SIZE = 500
MAX_PAGES = 100_000
PAGED_RESULTS = "1.2.840.113556.1.4.319"  # the simple paged results control (RFC 2696)
ACCOUNTDISABLE = 0x2  # userAccountControl flag of a disabled AD account
MatchBy = Literal["samaccountname", "mail"]


@dataclass(frozen=True)
class LdapSettings:
    url: str
    base_dn: str
    attribute: str
    bind_dn: str | None = None
    password: str | None = None
    match_by: MatchBy = "samaccountname"
    ca_bundle: str | None = None


INSUFFICIENT_RIGHTS = "insufficientAccessRights"
EFFECTIVE_ATTRIBUTES = "allowedAttributesEffective"  # constructed by AD for whoever asks
MAX_EFFECTIVE = 10_000  # names read from one answer; AD's schema has about 1,500 attributes


class LdapDirectory:
    name = "Active Directory"
    max_value_length: int | None = None
    holds_expiry = True  # an extra key in the JSON, which Defguard's script ignores
    one_listing = False  # ignored: members are found by indexed searches, holders by a paged one
    digests = True

    @property
    def write_permission(self) -> str:
        return (
            f"the bind account may not write {self.settings.attribute!r}; grant it write access "
            "to that attribute on the user objects"
        )

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self.match_key: MatchKey = "username" if settings.match_by == "samaccountname" else "email"
        self._search_attribute = (
            "sAMAccountName" if settings.match_by == "samaccountname" else "mail"
        )
        # One connection per thread: the writers' batches then reach the server side by side
        # instead of queueing on one socket, and a thread never waits on another's answer.
        self._local = threading.local()
        self._connections: list[Any] = []
        self._server: Any = None
        self._opening = threading.Lock()

    # ------------------------------------------------------------------------------ connection

    def _connect(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            with self._opening:
                connection = self._local.connection = self._open()
                self._connections.append(connection)
        return connection

    def _open(self) -> Any:
        settings = self.settings
        server = self._server
        first = server is None  # no bind has succeeded yet: this one reads the schema
        if server is None:
            # Always verified: ldap3 takes LDAPS:// as ldaps whatever its case, and uses the
            # same settings for StartTLS.
            tls = ldap_tls(settings.ca_bundle, urlsplit(settings.url).hostname or "")
            server = ldap3.Server(settings.url, get_info=ldap3.SCHEMA, tls=tls, connect_timeout=15)
        options: dict[str, Any] = {"client_strategy": ldap3.SAFE_SYNC, "receive_timeout": 60}
        if settings.bind_dn:
            options.update(user=settings.bind_dn, password=settings.password or "")
        else:
            try:
                import gssapi  # noqa: F401  (ldap3's Kerberos bind needs it)
            except ImportError:
                raise UsageError(
                    "no --bind-dn given and Kerberos is not available (install the 'gssapi' "
                    "package and get a ticket with kinit), or pass --bind-dn with the password "
                    "in DGPROV_BIND_PASSWORD"
                ) from None
            options.update(authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS)
        connection = None
        try:
            connection = ldap3.Connection(server, **options)
            bound, result, _, _ = connection.bind(read_server_info=first)
        except LDAPException as exc:
            if connection is not None:
                _drop(connection)
            raise PreflightError(
                f"cannot reach the directory at {settings.url} ({type(exc).__name__}); check "
                "--ldap-url, the network and --ca-bundle"
            ) from None
        if not bound:
            _drop(connection)
            who = settings.bind_dn or "the Kerberos ticket's user"
            raise AuthenticationError(
                f"the directory refused the bind as {who} ({result.get('description')}); check "
                "--bind-dn and the password in DGPROV_BIND_PASSWORD or --bind-password-file"
            )
        self._server = server
        return connection

    def close(self) -> None:
        """Unbinds every thread's connection; called once no request is in flight."""
        with self._opening:
            connections, self._connections = self._connections, []
            self._local = threading.local()
        for connection in connections:
            connection.unbind()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # ------------------------------------------------------------------------------ preflight

    def _preflight(self) -> None:
        connection = self._connect()
        status, result, _, _ = connection.search(
            self.settings.base_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[]
        )
        if not status:
            raise PreflightError(
                f"--base-dn {self.settings.base_dn!r} cannot be read "
                f"({result.get('description')}); check the DN and the bind account's rights"
            )
        schema = connection.server.schema
        known = {name.lower() for name in schema.attribute_types} if schema is not None else set()
        if known and self.settings.attribute.lower() not in known:
            raise PreflightError(
                f"the directory schema has no attribute {self.settings.attribute!r}; choose an "
                "existing one with --ad-attribute (defguardProvisioningConfig, description and "
                "extensionAttributeN are common)"
            )

    async def preflight(self) -> None:
        await asyncio.to_thread(self._preflight)

    # ------------------------------------------------------------------------------- lookups

    def _find(
        self, keys: list[str]
    ) -> tuple[dict[str, list[DirectoryUser]], dict[str, list[DirectoryUser]]]:
        """``(users per key, look-alike users per key)``: AD compares with its own case rules,
        so an entry whose value only resembles the key (``addresses.skeleton``) is kept apart."""
        connection = self._connect()
        attribute = self._search_attribute
        found: dict[str, list[DirectoryUser]] = {}
        alike: dict[str, list[DirectoryUser]] = {}
        wanted_attributes = ["sAMAccountName", "mail", "userPrincipalName"]
        # AD has userAccountControl; an LDAP schema without it would make ldap3 refuse the search.
        schema = connection.server.schema
        if schema is None or "useraccountcontrol" in {n.lower() for n in schema.attribute_types}:
            wanted_attributes.append("userAccountControl")
        for start in range(0, len(keys), FILTER_VALUES):
            chunk = keys[start : start + FILTER_VALUES]
            alternatives = "".join(f"({attribute}={escape_filter_chars(key)})" for key in chunk)
            status, result, entries, _ = connection.search(
                self.settings.base_dn,
                f"(&(objectClass=user)(|{alternatives}))",
                attributes=wanted_attributes,
            )
            if not status and result.get("description") != "noSuchObject":
                raise PreflightError(
                    f"searching the directory failed ({result.get('description')})"
                )
            wanted = set(chunk)
            for entry in entries or []:
                if entry.get("type") != "searchResEntry":
                    continue
                values = entry["attributes"]
                value = _first(values.get(attribute))
                if value is None:
                    continue
                if (key := fold(value)) in wanted:
                    into = found
                elif confusable(value) and (key := skeleton(value)) in wanted:
                    into = alike
                else:
                    continue
                control = _first(values.get("userAccountControl"))
                user = DirectoryUser(
                    entry["dn"],
                    _first(values.get("userPrincipalName")) or _first(values.get("sAMAccountName")),
                    _first(values.get("mail")),
                    enabled=not (control and control.isdigit() and int(control) & ACCOUNTDISABLE),
                )
                into.setdefault(key, []).append(user)
        return found, alike

    async def find_users(self, keys: Iterable[str]) -> Matches:
        # A look-alike key is refused by the plan, whatever the directory would make of it.
        unique = sorted({k for key in keys if not confusable(k := fold(key))})
        found, alike = await asyncio.to_thread(self._find, unique)
        name = self._search_attribute
        return Matches(
            [(name, found)],
            key=self.match_key,
            confusable={key: [(name, user) for user in users] for key, users in alike.items()},
        )

    # -------------------------------------------------------------------------------- writes

    def _replace(self, dn: str, values: list[str]) -> tuple[bool, str]:
        connection = self._connect()
        status, result, _, _ = connection.modify(
            dn, {self.settings.attribute: [(ldap3.MODIFY_REPLACE, values)]}
        )
        return bool(status), f"{result.get('description')}: {result.get('message') or ''}".rstrip(
            ": "
        )

    def _probe(self, dn: str) -> None:
        """Write back the value the attribute already has: authorised like a real write."""
        connection = self._connect()
        _, _, entries, _ = connection.search(
            dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[self.settings.attribute]
        )
        current = []
        for entry in entries or []:
            if entry.get("type") == "searchResEntry":
                current = list(entry["raw_attributes"].get(self.settings.attribute, []))
        ok, detail = self._replace(dn, [v.decode() if isinstance(v, bytes) else v for v in current])
        if not ok:
            raise PreflightError(
                f"the bind account may not write {self.settings.attribute!r} ({detail}); grant it "
                "write access to that attribute on the user objects"
            )

    async def check_can_write(self, user: DirectoryUser) -> None:
        await asyncio.to_thread(self._probe, user.id)

    def _may_write(self, dn: str) -> bool | None:
        """Whether Active Directory's ``allowedAttributesEffective`` on ``dn`` (the attributes
        the bound account may write there, computed for whoever asks) lists the attribute;
        None where the server does not compute it (its schema has no such attribute, as
        OpenLDAP's) or does not answer. An answer without it means no right to write it."""
        connection = self._connect()
        schema = connection.server.schema
        known = {name.lower() for name in schema.attribute_types} if schema is not None else set()
        if EFFECTIVE_ATTRIBUTES.lower() not in known:
            return None
        status, _, entries, _ = connection.search(
            dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[EFFECTIVE_ATTRIBUTES]
        )
        found = [e for e in entries or [] if e.get("type") == "searchResEntry"]
        if not status or not found:
            return None
        values = found[0]["attributes"].get(EFFECTIVE_ATTRIBUTES) or []
        wanted = self.settings.attribute.lower()
        return any(isinstance(v, str) and v.lower() == wanted for v in values[:MAX_EFFECTIVE])

    async def may_write(self, dn: str) -> bool | None:
        """``_may_write`` for a dry run, which proves what it can without writing."""
        return await asyncio.to_thread(self._may_write, dn)

    def _write(self, values: Sequence[tuple[str, list[str]]]) -> dict[str, WriteResult]:
        """``(dn, new values)`` -> result per DN; an empty list removes the attribute's value."""
        results: dict[str, WriteResult] = {}
        for dn, new in values:
            try:
                ok, detail = self._replace(dn, new)
            except LDAPException as exc:
                ok, detail = False, type(exc).__name__
            results[dn] = WriteResult(ok, detail, detail.startswith(INSUFFICIENT_RIGHTS))
        return results

    async def write(
        self,
        assignments: Sequence[tuple[DirectoryUser, ProvisioningConfig]],
        expiries: Mapping[str, str] | None = None,
    ) -> dict[str, WriteResult]:
        expiry = expiries or {}
        values = [(u.id, [to_ad_json(config, expiry.get(u.id))]) for u, config in assignments]
        return await asyncio.to_thread(self._write, values)

    async def clear(self, object_ids: Sequence[str]) -> dict[str, WriteResult]:
        return await asyncio.to_thread(self._write, [(dn, []) for dn in object_ids])

    def _read_stored(self) -> dict[str, Stored]:
        """Every user whose attribute holds the JSON, in pages (simple paged results, RFC 2696),
        so the requests grow like the holders divided by the page size."""
        connection = self._connect()
        attribute = self.settings.attribute
        held: dict[str, Stored] = {}
        cookie: Any = None
        for _ in range(MAX_PAGES):
            status, result, entries, _ = connection.search(
                self.settings.base_dn,
                f"(&(objectClass=user)({escape_filter_chars(attribute)}=*))",
                attributes=[attribute, "userPrincipalName", "sAMAccountName"],
                paged_size=PAGE_SIZE,
                paged_cookie=cookie,
            )
            if not status and result.get("description") not in ("success", "noSuchObject"):
                raise PreflightError(
                    f"searching the directory failed ({result.get('description')})"
                )
            for entry in entries or []:
                if entry.get("type") != "searchResEntry":
                    continue
                raw = entry["raw_attributes"].get(attribute) or []
                text = raw[0].decode("utf-8", "replace") if raw else ""
                config = from_ad_json(text)
                if config is None:
                    continue  # not dgprov's JSON: another use of the attribute, left alone
                values = entry["attributes"]
                held[entry["dn"].lower()] = Stored(
                    entry["dn"],
                    _first(values.get("userPrincipalName")) or _first(values.get("sAMAccountName")),
                    token_digest(config.enrollment_token) if self.digests else NO_DIGEST,
                    ad_expiry(text),
                    url=config.enrollment_url,
                )
            controls = result.get("controls") or {}
            cookie = controls.get(PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not cookie:
                return held
        raise PreflightError(f"the directory returned more than {MAX_PAGES} pages of holders")

    async def read_stored(self) -> dict[str, Stored]:
        return await asyncio.to_thread(self._read_stored)

    def read_value(self, account_name: str) -> tuple[bool, str | None]:
        """``(user found, the attribute's value)`` for the user with this sAMAccountName."""
        connection = self._connect()
        status, result, entries, _ = connection.search(
            self.settings.base_dn,
            f"(&(objectClass=user)(sAMAccountName={escape_filter_chars(account_name)}))",
            attributes=[self.settings.attribute],
        )
        if not status and result.get("description") not in ("success", "noSuchObject"):
            raise PreflightError(f"searching the directory failed ({result.get('description')})")
        for entry in entries or []:
            if entry.get("type") == "searchResEntry":
                raw = entry["raw_attributes"].get(self.settings.attribute) or []
                return True, raw[0].decode("utf-8") if raw else None
        return False, None


def discover_ldap_url(domain: str) -> str | None:
    """``ldaps://`` on the best domain controller from DNS SRV ``_ldap._tcp.<domain>``."""
    import dns.exception
    import dns.resolver

    try:
        answers = dns.resolver.resolve(f"_ldap._tcp.{domain}", "SRV", lifetime=5)
    except dns.exception.DNSException:
        return None
    records = [(a.priority, a.weight, a.port, str(a.target)) for a in answers]
    host = choose_srv_target(records)
    return f"ldaps://{host}" if host else None


def choose_srv_target(records: list[tuple[int, int, int, str]]) -> str | None:
    """The host of the best ``_ldap._tcp`` SRV record: lowest priority, then highest weight."""
    if not records:
        return None
    target = min(records, key=lambda record: (record[0], -record[1]))[3]
    return target.rstrip(".")


def base_dn_for(domain: str) -> str:
    """``corp.example.com`` -> ``DC=corp,DC=example,DC=com``."""
    return ",".join(f"DC={label}" for label in domain.split(".") if label)


def _drop(connection: Any) -> None:
    """Close the socket of a connection whose bind failed; it may already be gone."""
    with contextlib.suppress(LDAPException):
        connection.unbind()


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)
