"""Signing in to Entra ID with MSAL, and keeping the sign-in across runs.

Interactive sign-in (``auto``: a browser when one can be opened, otherwise the device code; for
the broker's scope on Windows, the platform broker WAM first where msal can use it) and app-only
sign-in (client secret) produce one thing: a callable that returns a current Graph
access token. The MSAL token cache is kept per user, encrypted by the OS where msal-extensions
can (DPAPI, Keychain, libsecret), else in a 0600 file after a warning, so a second run does not
prompt again.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from . import environment
from .errors import AuthenticationError, UsageError, WrongAccount
from .private_files import write_private_file
from .tls import tls_context

if TYPE_CHECKING:
    import requests

# msal, requests and cryptography are imported where Entra is signed in to: together they are
# half of dgprov's start-up time, which an Active Directory run or a cached fetch need not pay.

log = logging.getLogger("dgprov")

AuthMode = Literal["auto", "browser", "device-code", "client-secret", "certificate"]
APP_ONLY_MODES = ("client-secret", "certificate")
PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)
PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
MICROSOFT_AUTHORITY_HOSTS = {
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
}
SOVEREIGN_GRAPH_HOSTS = {
    "graph.microsoft.us",
    "dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn",
}
INTERACTIVE_TIMEOUT_SECONDS = 300
WAM_MINIMUM_MSAL = (1, 25)  # msal's ``enable_broker_on_windows`` is new in 1.25.0


@dataclass(frozen=True)
class EntraSettings:
    tenant: str
    client_id: str
    authority: str | None = None
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: str | None = None
    auth: AuthMode = "auto"
    client_secret: str | None = None
    client_certificate: str | None = None  # PEM: the private key and the certificate
    certificate_password: str | None = None
    persist_cache: bool = True

    def missing(self) -> list[str]:
        """What cannot sign anyone in, each with the option or variable that gives it."""
        missing = []
        if not self.tenant and not self.authority:
            missing.append("no Entra tenant (--tenant or DGPROV_TENANT)")
        if not self.client_id:
            missing.append("no client id (--client-id or DGPROV_CLIENT_ID)")
        return missing

    def check(self) -> None:
        """Refuse settings that cannot sign anyone in, naming every option that is missing."""
        if missing := self.missing():
            raise UsageError("; ".join(missing))

    @property
    def authority_url(self) -> str:
        return (self.authority or f"https://login.microsoftonline.com/{self.tenant}").rstrip("/")

    @property
    def graph_resource(self) -> str:
        """The resource the ``.default`` scope names: Graph's public host for this cloud."""
        host = urlsplit(self.graph_url).hostname or ""
        return f"https://{host}" if host in SOVEREIGN_GRAPH_HOSTS else "https://graph.microsoft.com"


def cache_directory(trust_environment: bool = True) -> Path:
    """Where dgprov keeps per-user state; ``DGPROV_CACHE_DIR`` overrides it.

    Without ``trust_environment`` (root acting for someone else) HOME and XDG_CACHE_HOME are
    ignored: under ``sudo -E`` they name the invoking user's home, a place that user controls.
    """
    chosen = environment.get(environment.CACHE_DIR)
    if chosen:
        return Path(chosen)
    if not trust_environment and sys.platform != "win32":
        import pwd

        return Path(pwd.getpwuid(os.geteuid()).pw_dir) / ".cache" / "dgprov"
    if sys.platform == "win32":
        return Path(environment.get("LOCALAPPDATA") or Path.home()) / "dgprov"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "dgprov"
    return Path(environment.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgprov"


def _plain_file_cache(path: Path) -> Any:
    """The fallback cache: a 0600 file, saved after every sign-in that changed it."""
    import msal

    class PlainFileCache(msal.SerializableTokenCache):  # type: ignore[misc]
        def save_to_file(self) -> None:
            if self.has_state_changed:
                write_private_file(path, self.serialize().encode())

    cache = PlainFileCache()
    if path.exists():
        cache.deserialize(path.read_text("utf-8"))
    return cache


def token_cache(name: str, trust_environment: bool = True) -> Any:
    path = cache_directory(trust_environment) / name
    try:
        import msal_extensions

        persistence = msal_extensions.build_encrypted_persistence(str(path))
        return msal_extensions.PersistedTokenCache(persistence)
    except (ImportError, RuntimeError, OSError) as exc:
        # Said when the plain file is first made, not again on every scheduled run: nothing
        # about it changes until the machine gains a keyring, and a log should not fill with it.
        if not path.exists():
            log.warning(
                "no OS-encrypted storage for the sign-in cache (%s); keeping it in %s, readable "
                "by you only",
                str(exc).splitlines()[0],
                path,
            )
        return _plain_file_cache(path)


def http_session(ca_bundle: str | None) -> requests.Session:
    """With a CA bundle, ignore REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE, which would override it."""
    import requests

    session = requests.Session()
    if ca_bundle:
        tls_context(
            ca_bundle
        )  # a bundle that is not PEM is named now, not as an unreachable authority
        session.trust_env = False
        session.verify = ca_bundle
    return session


def browser_available() -> bool:
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def certificate_thumbprint(pem: str) -> str:
    """The SHA-1 thumbprint (hex) of a PEM certificate.

    msal before 1.35 requires it next to the key and refuses a credential without it; newer
    msal computes it from ``public_certificate`` itself. Passing both works with every msal
    the package allows.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        parsed = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError:
        raise UsageError(
            "--client-certificate: the certificate in the PEM file cannot be read; export it "
            "again (PEM, with the private key) from where it was created"
        ) from None
    return parsed.fingerprint(hashes.SHA1()).hex().upper()


def certificate_credential(settings: EntraSettings) -> dict[str, Any]:
    """MSAL's certificate credential from one PEM holding the private key and the certificate."""
    pem = settings.client_certificate or ""
    key = PEM_PRIVATE_KEY.search(pem)
    certificate = PEM_CERTIFICATE.search(pem)
    if key is None or certificate is None:
        raise UsageError(
            "--client-certificate must be a PEM file holding both the private key and the "
            "certificate registered on the app"
        )
    credential: dict[str, Any] = {
        "private_key": key.group(0),
        "thumbprint": certificate_thumbprint(certificate.group(0)),
        "public_certificate": certificate.group(0),
    }
    if settings.certificate_password:
        credential["passphrase"] = settings.certificate_password
    return credential


def _failure(result: dict[str, Any], what: str) -> AuthenticationError:
    description = str(result.get("error_description", "")).splitlines()[0] if result else ""
    return AuthenticationError(f"{what} failed: {result.get('error', 'no answer')}: {description}")


def msal_version(text: str) -> tuple[int, int]:
    """``1.29.0`` or ``1.30.0b1`` -> ``(1, 29)``/``(1, 30)``; unreadable -> ``(0, 0)``."""
    found = re.match(r"(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def platform_broker_options(
    platform: str, installed_msal: str, runtime_installed: bool, auth: AuthMode
) -> dict[str, Any]:
    """MSAL's opt-in to the Windows platform broker (WAM), or nothing where it cannot work.

    WAM signs in with the account already on the machine (and satisfies device-based Conditional
    Access), so on Windows it is the first interactive choice. msal errors out, rather than
    falling back, when asked for it without ``pymsalruntime`` (``msal[broker]``) installed, and
    msal before 1.25 has no such option; an explicit ``--auth device-code`` or an app-only
    sign-in never uses it. Decided from plain values, so every branch is tested on any OS.
    """
    if platform != "win32" or auth not in ("auto", "browser") or not runtime_installed:
        return {}
    if msal_version(installed_msal) < WAM_MINIMUM_MSAL:
        return {}
    return {"enable_broker_on_windows": True}


def _platform_broker(auth: AuthMode) -> dict[str, Any]:
    import msal

    runtime = importlib.util.find_spec("pymsalruntime") is not None
    return platform_broker_options(sys.platform, str(msal.__version__), runtime, auth)


@dataclass(frozen=True)
class AccountRule:
    """Whose sign-in may be used when dgprov acts for someone else: that person's only."""

    for_user: str  # the local login the file is for, as the operator named it
    matches: Callable[[str], bool]  # a signed-in UPN or mail -> is it that user's account?

    def accepts(self, names: list[str]) -> bool:
        return any(self.matches(name) for name in names if name)


def _signed_in_names(result: dict[str, Any]) -> list[str]:
    """The UPN and mail the authority says the sign-in belongs to (from its ID token)."""
    claims = result.get("id_token_claims") or {}
    return [str(claims[key]) for key in ("preferred_username", "upn", "email") if claims.get(key)]


class EntraSignIn:
    """A signed-in session; ``token(fresh)`` returns a Graph access token."""

    def __init__(
        self,
        settings: EntraSettings,
        scopes: list[str],
        notify: Callable[[str], None],
        cache_name: str,
        account: AccountRule | None = None,
        platform_broker: bool = False,
    ) -> None:
        """``cache_name`` separates the admin's sign-in from the end user's on one machine.

        ``account``: when acting for someone else, only a sign-in of that user is used. A cached
        account of anyone else is never picked; an interactive sign-in as anyone else is removed
        from the cache and refused (``WrongAccount``) before its token is used. The cache is then
        kept under the running account's own home, not where the environment points.

        ``platform_broker``: try the Windows platform broker (WAM) where msal can use it
        (``platform_broker_options``); the browser and the device code remain the fallbacks.
        """
        settings.check()
        self.settings = settings
        self.scopes = scopes
        self.notify = notify
        self.account_rule = account
        import msal
        import requests

        host = urlsplit(settings.authority_url).hostname or ""
        cache = (
            token_cache(cache_name, trust_environment=account is None)
            if settings.persist_cache
            else msal.TokenCache()
        )
        common: dict[str, Any] = {
            "authority": settings.authority_url,
            "http_client": http_session(settings.ca_bundle),
            "instance_discovery": host in MICROSOFT_AUTHORITY_HOSTS,
            "token_cache": cache,
        }
        self._wam = False
        try:
            if settings.auth == "certificate":
                self._app: Any = msal.ConfidentialClientApplication(
                    settings.client_id, client_credential=certificate_credential(settings), **common
                )
            elif settings.auth == "client-secret":
                if not settings.client_secret:
                    raise UsageError(
                        "--auth client-secret needs the secret in DGPROV_CLIENT_SECRET or "
                        "--client-secret-file"
                    )
                self._app = msal.ConfidentialClientApplication(
                    settings.client_id, client_credential=settings.client_secret, **common
                )
            else:
                wam = _platform_broker(settings.auth) if platform_broker else {}
                self._app = msal.PublicClientApplication(settings.client_id, **common, **wam)
                self._wam = bool(wam)
        except ValueError as exc:
            raise UsageError(
                f"the Entra authority {settings.authority_url} is not usable: {exc}"
            ) from None
        except requests.RequestException as exc:
            raise AuthenticationError(
                f"cannot reach the Entra authority {settings.authority_url} "
                f"({type(exc).__name__}); "
                "check --authority, the network and --ca-bundle"
            ) from None
        self._cache = common["token_cache"]
        self._account: dict[str, Any] | None = None

    def refuses_app_token_for(self, resource: str) -> str | None:
        """Entra's definite refusal to issue this app an app-only token for ``resource``
        (``api://<client id>``: the broker asks whether its own registration exposes an API),
        or None when it issues one or gives no definite answer; unreachable raises as usual."""
        result = self._app.acquire_token_for_client([f"{resource}/.default"])
        if "access_token" in result:
            return None
        described = str(result.get("error_description") or "")
        definite = result.get("error") == "invalid_scope" or "AADSTS500011" in described
        return str(result.get("error")) if definite else None

    def _app_only(self) -> str:
        result = self._app.acquire_token_for_client([f"{self.settings.graph_resource}/.default"])
        if "access_token" not in result:
            raise _failure(result, "app sign-in")
        return str(result["access_token"])

    def _interactive(self) -> dict[str, Any]:
        # The browser inherits this process's environment; it gets none of dgprov's secrets.
        with environment.without_secrets():
            return self._interactive_sign_in()

    def _interactive_sign_in(self) -> dict[str, Any]:
        mode = self.settings.auth
        if self._wam:
            result: dict[str, Any] = self._app.acquire_token_interactive(
                self.scopes,
                parent_window_handle=self._app.CONSOLE_WINDOW_HANDLE,
                timeout=INTERACTIVE_TIMEOUT_SECONDS,
                prompt="select_account",
            )
            if "access_token" in result:
                return result
            # msal now sends every interactive sign-in to the broker; the device code remains.
            log.info("no sign-in through the platform broker (%s)", result.get("error"))
        elif mode == "browser" or (mode == "auto" and browser_available()):
            result = self._app.acquire_token_interactive(
                self.scopes, timeout=INTERACTIVE_TIMEOUT_SECONDS, prompt="select_account"
            )
            if "access_token" in result or mode == "browser":
                return result
        flow = self._app.initiate_device_flow(scopes=self.scopes)
        if "user_code" not in flow:
            raise _failure(flow, "starting the device-code sign-in")
        self.notify(flow["message"])
        return dict(self._app.acquire_token_by_device_flow(flow))

    def token(self, fresh: bool = False) -> str:
        try:
            return self._token(fresh)
        finally:
            if save_to_file := getattr(self._cache, "save_to_file", None):
                save_to_file()  # the fallback cache (msal_extensions' saves itself)

    def _token(self, fresh: bool) -> str:
        import requests

        try:
            if self.settings.auth in APP_ONLY_MODES:
                if fresh:
                    # Graph refused the cached token (revoked, or the clocks disagree): without
                    # this MSAL would hand the same token back until it expires by its clock.
                    self._app.remove_tokens_for_client()
                return self._app_only()
            account = self._account or self._cached_account()
            if account is not None:
                result = self._app.acquire_token_silent(
                    self.scopes, account=account, force_refresh=fresh
                )
                if result and "access_token" in result:
                    self._account = account
                    return str(result["access_token"])
            result = self._interactive()
        except requests.RequestException as exc:
            raise AuthenticationError(
                f"cannot reach the Entra authority ({type(exc).__name__}); check --authority "
                "and --ca-bundle"
            ) from None
        if "access_token" not in result:
            raise _failure(result, "sign-in")
        names = _signed_in_names(result)
        rule = self.account_rule
        if rule is not None and not rule.accepts(names):
            for name in names:
                for stray in self._app.get_accounts(username=name):
                    self._app.remove_account(stray)
            shown = names[0] if names else "an account without a user name"
            raise WrongAccount(
                f"signed in as {shown}, but --for-user is {rule.for_user}: sign in as "
                f"{rule.for_user} (that sign-in was discarded), or pass --for-user with the login "
                f"name of {shown}"
            )
        found = self._app.get_accounts(username=names[0]) if names else []
        self._account = found[0] if found else self._cached_account()
        return str(result["access_token"])

    def _cached_account(self) -> dict[str, Any] | None:
        """A cached account to use silently; acting for someone else, only theirs."""
        accounts: list[dict[str, Any]] = self._app.get_accounts()
        if self.account_rule is not None:
            rule = self.account_rule
            accounts = [a for a in accounts if rule.accepts([str(a.get("username") or "")])]
        return accounts[0] if accounts else None
