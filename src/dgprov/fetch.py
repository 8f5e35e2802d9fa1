"""The client job's readers: the signed-in user's enrollment token from Entra ID, AD or a broker.

Messages explain what an end user or an installer log reader can do; none contains the token or
the raw attribute value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from .broker_client import (
    check_broker_scope,
    check_broker_url,
    check_tenant,
    fetch_provisioning,
    fetch_settings,
)
from .client_files import TargetUser, account_name, is_account_of
from .entra_auth import (
    APP_ONLY_MODES,
    AccountRule,
    AuthMode,
    EntraSettings,
    EntraSignIn,
    cache_directory,
)
from .errors import (
    AuthenticationError,
    InvalidProvisioningValue,
    NothingFound,
    UsageError,
    WrongAccount,
)
from .graph import GraphClient
from .join import JoinState
from .ldap_directory import LdapDirectory, LdapSettings, base_dn_for, discover_ldap_url
from .private_files import write_private_file
from .reissue import ask_for_one, expired_since
from .stored_value import (
    AD_EXPECTED_SHAPE,
    ENTRA_EXPIRY_ATTRIBUTE,
    ProvisioningConfig,
    ad_expiry,
    from_ad_json,
    from_entra_attributes,
)
from .tls import tls_context
from .urls import check_ldap_url

log = logging.getLogger("dgprov")

USER_SCOPES = ["User.Read", "CustomSecAttributeAssignment.Read.All"]
USER_CACHE = "msal_cache_user.bin"


def user_cache_name(for_user: str) -> str:
    """The sign-in cache of the client job acting for ``for_user`` (root or SYSTEM only).

    One cache per target user, so no run for one user can find another user's sign-in. It is
    kept in the running account's own cache directory rather than in the target's profile: a
    file there would be writable by the target, who could plant a link or a cache of their own
    choosing, while root's directory is root's alone. The login name is percent-encoded, so two
    names never share a file and none can step out of the directory.
    """
    return f"msal_cache_user.{quote(for_user, safe='')}.bin"


def _checked(config: ProvisioningConfig, source: str) -> ProvisioningConfig:
    try:
        return config.validated()
    except InvalidProvisioningValue as exc:
        raise NothingFound(
            f"{source} holds an unusable value: {exc}; ask your administrator"
        ) from None


def from_attribute_set(
    values: dict[str, Any] | None, set_name: str, upn: str
) -> ProvisioningConfig:
    """Entra's answer -> config; None means nothing assigned *or* no right to read it."""
    if values is None:
        # Graph's documentation disagrees with itself on the role a delegated read needs
        # (user-get.md names Administrator, the role definitions give Reader the permission);
        # tenants differ, so the message names both and the consent that is needed either way.
        raise NothingFound(
            f"Entra ID shows {upn} no custom security attributes: no enrollment token was issued "
            f"yet, or it may not read the set {set_name!r} (README's Permissions table)"
        )
    config = from_entra_attributes(values)
    if config is None:
        raise NothingFound(
            f"{upn} has no enrollment token in the set {set_name!r}; {ask_for_one()}"
        )
    return _checked(config, f"the attribute set {set_name!r}")


def from_ad_value(raw: str | None, attribute: str, account: str) -> ProvisioningConfig:
    if raw is None or not raw.strip():
        raise NothingFound(
            f"{account} has no value in {attribute!r}; {ask_for_one(account, directory_ad=True)}"
        )
    config = from_ad_json(raw)
    if config is None:
        raise NothingFound(
            f"the value of {attribute!r} for {account} is not the expected JSON "
            f"{AD_EXPECTED_SHAPE}; ask your administrator"
        )
    return _checked(config, f"the attribute {attribute!r}")


Source = Literal["entra", "ad", "broker"]


def chosen_source(
    source: Literal["auto", "entra", "ad", "broker"],
    broker_url: str | None,
    join_state: Callable[[], JoinState],
) -> tuple[Source | None, JoinState]:
    """Where ``--source`` reads from; None: auto on a machine joined to nothing.

    ``auto`` prefers a configured broker (``--broker-url`` or ``DGPROV_BROKER_URL``) over the
    directories: an organisation that runs one wants no user to need a directory role, and the
    broker works whatever the machine is joined to, so the join is not even detected then.
    """
    if source != "auto":
        return source, JoinState("none")
    if broker_url:
        return "broker", JoinState("none")
    state = join_state()
    if not state.joined:
        return None, state
    return ("ad" if state.kind == "ad" else "entra"), state


async def user_sign_in(
    settings: EntraSettings,
    scopes: list[str],
    notify: Callable[[str], None],
    for_user: str | None,
    platform_broker: bool = False,
) -> EntraSignIn:
    """The user signed in for ``scopes``; with ``for_user`` (acting for someone else) only a
    sign-in as that user is accepted, from a cache of that user's own.

    A user running the job for themselves is not checked: the token lands in their own profile,
    readable by them only, so signing in as someone else gains nothing the credentials did not
    already give; and on machines joined to nothing a local login rarely equals the UPN. Entra
    and broker sources share the cache, so one sign-in serves both (refresh tokens are good for
    any resource the app may ask for).
    """
    if for_user is None:
        cache, rule = USER_CACHE, None
    else:
        target = for_user
        cache = user_cache_name(target)
        rule = AccountRule(target, lambda name: is_account_of(name, target))
    sign_in = await asyncio.to_thread(
        EntraSignIn, settings, scopes, notify, cache, rule, platform_broker
    )
    await asyncio.to_thread(sign_in.token)
    return sign_in


def broker_settings(
    broker_url: str | None, broker_scope: str | None, auth: AuthMode
) -> tuple[str, str | None]:
    """``--broker-url``, ``--broker-scope`` and ``--auth`` checked before any sign-in; no
    scope: the broker is asked for its own (``fetch_from_broker``)."""
    if auth in APP_ONLY_MODES:
        raise UsageError(
            f"--source broker signs a person in; --auth {auth} signs in the app, whose token "
            "the broker refuses: use --auth auto, browser or device-code"
        )
    if not broker_url:
        raise UsageError("--source broker needs --broker-url URL (or set DGPROV_BROKER_URL)")
    url = check_broker_url(broker_url)
    return url, check_broker_scope(broker_scope) if broker_scope else None


async def fetch_from_broker(
    settings: EntraSettings,
    broker_url: str,
    broker_scope: str | None,
    notify: Callable[[str], None],
    for_user: str | None = None,
) -> ProvisioningConfig:
    """A fresh token minted for the signed-in user by ``dgprov broker`` (the URL and scope
    checked by ``broker_settings``); nothing is read from a
    directory, so the user needs no directory role. The platform broker (WAM) is tried first
    on Windows: the sign-in is for the broker's own API, which WAM serves from the machine's
    account without a prompt.

    Without a configured scope or tenant the broker's ``GET /v1/config`` gives them (the ones
    configured win): the broker's URL and the public client's id then suffice."""
    verify = tls_context(settings.ca_bundle)
    no_tenant = not settings.tenant and not settings.authority
    if broker_scope is None or no_tenant:
        told = await fetch_settings(broker_url, verify=verify)
        log.info(f"the broker serves the scope {told.scope} of tenant {told.tenant}")
        broker_scope = broker_scope or told.scope
        if no_tenant:
            settings = dataclasses.replace(settings, tenant=told.tenant)
        check_tenant(told, settings.authority_url, broker_url)
    sign_in = await user_sign_in(settings, [broker_scope], notify, for_user, platform_broker=True)
    try:
        return await fetch_provisioning(
            broker_url, await asyncio.to_thread(sign_in.token), verify=verify
        )
    except AuthenticationError:
        # A cached token the broker refuses (signed with a key the authority has since rotated
        # out, or revoked) would be refused until it expires: one fresh token, through the
        # refresh token and without a prompt, then the broker's verdict stands. A refused token
        # never reaches Defguard, so asking again rotates nothing.
        log.info("the broker refused the access token; asking for a fresh one")
        fresh = await asyncio.to_thread(sign_in.token, True)
        return await fetch_provisioning(broker_url, fresh, verify=verify)


async def fetch_from_entra(
    settings: EntraSettings,
    set_name: str,
    notify: Callable[[str], None],
    for_user: str | None = None,
) -> ProvisioningConfig:
    """The signed-in user's value from their own attribute set."""
    sign_in = await user_sign_in(settings, USER_SCOPES, notify, for_user)
    graph = GraphClient(settings.graph_url, sign_in.token, verify=tls_context(settings.ca_bundle))
    try:
        upn, values = await graph.my_attribute_set(set_name)
    finally:
        await graph.aclose()
    config = from_attribute_set(values, set_name, upn or "the signed-in user")
    say_if_expired((values or {}).get(ENTRA_EXPIRY_ATTRIBUTE), None, False, notify)
    return config


def say_if_expired(
    expires_at: object, username: str | None, directory_ad: bool, notify: Callable[[str], None]
) -> None:
    """Warn when the expiry sync stored beside the token has passed: the file is written all
    the same (this host's clock may be wrong), but enroll will be refused, so the person learns
    now what to ask for."""
    if (when := expired_since(expires_at)) is not None:
        message = (
            f"warning: the stored enrollment token expired at {when}; "
            f"{ask_for_one(username, directory_ad=directory_ad)}"
        )
        log.info(message)
        notify(message)


def fetch_from_ad(
    settings: LdapSettings, account: str, notify: Callable[[str], None] | None = None
) -> ProvisioningConfig:
    directory = LdapDirectory(settings)
    try:
        found, raw = directory.read_value(account)
    finally:
        directory.close()
    if not found:
        raise NothingFound(
            f"the directory has no user with sAMAccountName {account!r} under {settings.base_dn}; "
            "check --base-dn or pass --for-user with the right login name"
        )
    config = from_ad_value(raw, settings.attribute, account)
    if notify is not None and raw is not None:
        say_if_expired(ad_expiry(raw), account, True, notify)
    return config


def ad_account(target: TargetUser, sam_account_name: str | None) -> str:
    """The AD account whose value is read; for someone else, only that user's own account."""
    if sam_account_name is None:
        return account_name(target.name)
    if target.someone_else and not is_account_of(sam_account_name, target.name):
        raise WrongAccount(
            f"--sam-account-name is {sam_account_name}, but --for-user is {target.name}: one "
            "user's token is never written into another user's profile; omit --sam-account-name "
            f"or pass --for-user with the login name of {sam_account_name}"
        )
    return sam_account_name


def client_ldap_settings(
    ldap_url: str | None,
    base_dn: str | None,
    attribute: str,
    bind_dn: str | None,
    password: str | None,
    ca_bundle: str | None,
    domain: str | None,
) -> LdapSettings:
    """The client job's LDAP settings, completed from the joined domain where not given."""
    if not ldap_url:
        ldap_url = discover_ldap_url(domain) if domain else None
        if ldap_url is None:
            raise UsageError(
                "no --ldap-url and no domain controller found through DNS SRV; pass --ldap-url"
            )
        log.info(f"domain controller from DNS SRV: {ldap_url}")
    if not base_dn and domain:
        base_dn = base_dn_for(domain)
    if not base_dn:
        raise UsageError("--source ad needs --base-dn (no joined domain to derive it from)")
    return LdapSettings(
        url=check_ldap_url(ldap_url),
        base_dn=base_dn,
        attribute=attribute,
        bind_dn=bind_dn,
        password=password,
        ca_bundle=ca_bundle,
    )


# ------------------------------------------------------------------ SYSTEM and the logon action

SYSTEM_CANNOT_SIGN_IN = (
    "running as SYSTEM, where no Entra ID or broker sign-in can happen (no browser in session "
    "0, WAM refuses SYSTEM, a device code would be shown to nobody): install dgprov's MSI, "
    "which runs fetch-config at each user's logon, or run fetch-config as the user"
)
DEFERRED_TO_LOGON = (
    "running as SYSTEM: the sign-in is left to each user's logon, where dgprov's logon action "
    "runs fetch-config in that user's session; nothing to do now"
)
MARKER_NAME = "provisioned"


def provisioned_marker() -> Path:
    """The per-user marker of ``--at-logon``: in this user's own dgprov folder
    (``%LOCALAPPDATA%\\dgprov`` on Windows), so each user of a shared PC has their own."""
    return cache_directory() / MARKER_NAME


def mark_provisioned(marker: Path, written: Path) -> None:
    """Record that this user's file was written, so later logons send nothing."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_private_file(marker, f"{stamp} {written}\n".encode())


def logon_log_file() -> Path:
    """``--at-logon``'s log: ``%LOCALAPPDATA%\\dgprov\\logs\\fetch-config.log``."""
    folder = cache_directory() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "fetch-config.log"
