"""The emulated Entra ID tenant: directory objects, custom security attributes and sign-ins.

Like ``defguard_state`` this knows nothing about HTTP. It holds the directory seeded from the
tenant file and implements the OAuth grants MSAL uses (device code, authorization code with
PKCE, refresh token, client credentials) as recorded in ``shared/reference/graph-msal.md``.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .defguard_state import SandboxClock, unix_seconds
from .keys import JwtSigner, b64url, b64url_decode
from .tenant import Tenant

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}

ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN = "Attribute Assignment Administrator"
ROLE_ATTRIBUTE_ASSIGNMENT_READER = "Attribute Assignment Reader"
ROLE_ATTRIBUTE_DEFINITION_ADMIN = "Attribute Definition Administrator"
ROLE_ATTRIBUTE_DEFINITION_READER = "Attribute Definition Reader"
ROLE_USER_ADMIN = "User Administrator"

DEVICE_CODE_LIFETIME = timedelta(minutes=15)
AUTH_CODE_LIFETIME = timedelta(minutes=10)
REFRESH_TOKEN_LIFETIME = timedelta(days=90)


class OAuthError(Exception):
    """An error of the token or device-code endpoint, in Entra's JSON shape."""

    def __init__(self, error: str, description: str, code: int, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = f"AADSTS{code}: {description}"
        self.code = code
        self.status = status


@dataclass
class EntraUser:
    object_id: str
    user_principal_name: str
    display_name: str
    given_name: str
    surname: str
    mail: str | None
    other_mails: list[str]
    proxy_addresses: list[str]
    account_enabled: bool
    mobile_phone: str | None
    directory_roles: set[str]
    # attribute set id (as defined) -> attribute name -> value
    custom_security_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class EntraGroup:
    object_id: str
    display_name: str
    member_ids: list[str]


@dataclass
class Application:
    client_id: str
    display_name: str
    public_client: bool
    redirect_uris: list[str]
    client_secret: str | None
    delegated_permissions: set[str]
    application_permissions: set[str]
    service_principal_id: str
    certificates: list[x509.Certificate] = field(default_factory=list)


@dataclass
class AttributeDefinition:
    attribute_set: str
    name: str
    type: str
    is_collection: bool
    status: str
    description: str

    @property
    def id(self) -> str:
        return f"{self.attribute_set}_{self.name}"


@dataclass
class AttributeSet:
    id: str
    description: str
    max_attributes_per_set: int


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scopes: list[str]
    expires_at: datetime
    interval: int
    approved_user: str | None = None
    declined: bool = False
    redeemed: bool = False
    last_poll: datetime | None = None


@dataclass
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    user_id: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: datetime
    redeemed: bool = False


@dataclass
class RefreshGrant:
    client_id: str
    user_id: str
    expires_at: datetime


@dataclass
class Principal:
    """Who calls Graph, from a verified access token."""

    app_id: str
    user: EntraUser | None
    scopes: set[str]
    roles: set[str]

    @property
    def delegated(self) -> bool:
        return self.user is not None

    def granted(self, permissions: set[str]) -> bool:
        held = self.scopes if self.delegated else self.roles
        return bool(held & permissions)

    def in_role(self, roles: set[str]) -> bool:
        """Directory roles of the signed-in user; app-only callers need none."""
        return self.user is None or bool(self.user.directory_roles & roles)


def _random_text(
    rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits
) -> str:
    return "".join(rng.choices(alphabet, k=length))


def _graph_scope(scope: str) -> str | None:
    """The Graph permission a requested scope names, or None for another resource."""
    for prefix in (f"{GRAPH_AUDIENCE}/", f"{GRAPH_APP_ID}/"):
        if scope.lower().startswith(prefix.lower()):
            return scope[len(prefix) :]
    return None if "/" in scope or scope.startswith("api:") else scope


class EntraState:
    """The directory and the sign-in service of one emulated tenant."""

    def __init__(
        self,
        tenant: Tenant,
        *,
        clock: SandboxClock,
        signer: JwtSigner,
        authority_origin: str,
        seed: int = 0,
        device_code_interval: int = 5,
        access_token_lifetime: int = 3600,
    ) -> None:
        entra = tenant.get("entra", {})
        self.tenant_id: str = entra.get("tenant_id", "00000000-0000-4000-8000-0000000000aa")
        self.domain: str = entra.get("domain", "sandbox.example")
        self.clock = clock
        self.signer = signer
        self.authority_origin = authority_origin
        self.device_code_interval = device_code_interval
        self.access_token_lifetime = access_token_lifetime
        self._rng = random.Random(f"{seed}:entra")
        self.auto_approve_upn: str | None = None

        self.users: dict[str, EntraUser] = {}
        usernames: dict[str, str] = {}
        for person in tenant["users"]:
            spec = person.get("entra")
            if not spec:
                continue
            user = EntraUser(
                object_id=spec["object_id"].lower(),
                user_principal_name=spec["user_principal_name"],
                display_name=spec.get("display_name")
                or f"{person['first_name']} {person['last_name']}".strip(),
                given_name=person["first_name"],
                surname=person["last_name"],
                mail=spec.get("mail"),
                other_mails=list(spec.get("other_mails", [])),
                proxy_addresses=list(spec.get("proxy_addresses", [])),
                account_enabled=spec.get("account_enabled", True),
                mobile_phone=person.get("phone"),
                directory_roles=set(spec.get("directory_roles", [])),
                custom_security_attributes={
                    k: dict(v) for k, v in spec.get("custom_security_attributes", {}).items()
                },
            )
            self.users[user.object_id] = user
            if person.get("username"):
                usernames[person["username"]] = user.object_id
        self.groups: dict[str, EntraGroup] = {}
        for group in tenant["groups"]:
            if group.get("entra_object_id"):
                members = [usernames[m] for m in group.get("members", []) if m in usernames]
                object_id = group["entra_object_id"].lower()
                self.groups[object_id] = EntraGroup(object_id, group["name"], members)
        self.applications: dict[str, Application] = {}
        for app in entra.get("applications", []):
            self.applications[app["client_id"].lower()] = Application(
                client_id=app["client_id"].lower(),
                display_name=app.get("display_name", "app"),
                public_client=app.get("public_client", True),
                redirect_uris=list(app.get("redirect_uris", ["http://localhost"])),
                client_secret=app.get("client_secret"),
                delegated_permissions=set(app.get("delegated_permissions", [])),
                application_permissions=set(app.get("application_permissions", [])),
                service_principal_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                certificates=[
                    x509.load_pem_x509_certificate(pem.encode())
                    for pem in app.get("certificates", [])
                ],
            )
        self.attribute_sets: dict[str, AttributeSet] = {}
        self.definitions: dict[tuple[str, str], AttributeDefinition] = {}
        for spec in entra.get("attribute_sets", []):
            attribute_set = AttributeSet(
                spec["id"], spec.get("description", ""), spec.get("max_attributes_per_set", 25)
            )
            self.attribute_sets[attribute_set.id.lower()] = attribute_set
            for attribute in spec.get("attributes", []):
                definition = AttributeDefinition(
                    attribute_set=attribute_set.id,
                    name=attribute["name"],
                    type=attribute.get("type", "String"),
                    is_collection=attribute.get("is_collection", False),
                    status=attribute.get("status", "Available"),
                    description=attribute.get("description", ""),
                )
                self.definitions[(attribute_set.id.lower(), definition.name)] = definition

        self.device_codes: dict[str, DeviceCode] = {}
        self.authorization_codes: dict[str, AuthorizationCode] = {}
        self.refresh_grants: dict[str, RefreshGrant] = {}

    # ------------------------------------------------------------------------------- directory

    def find_user(self, key: str) -> EntraUser | None:
        """A user by object id or UPN (case-insensitive), as ``/users/{id | userPrincipalName}``."""
        lowered = key.lower()
        if lowered in self.users:
            return self.users[lowered]
        return next(
            (u for u in self.users.values() if u.user_principal_name.lower() == lowered), None
        )

    def admin_user(self) -> EntraUser | None:
        """The sample admin: the first user holding User Administrator and Attribute Assignment
        Administrator."""
        wanted = {ROLE_USER_ADMIN, ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN}
        return next((u for u in self.users.values() if wanted <= u.directory_roles), None)

    # ------------------------------------------------------------------------------------ scopes

    def application(self, client_id: str) -> Application:
        app = self.applications.get(client_id.lower())
        if app is None:
            raise OAuthError(
                "unauthorized_client",
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.domain}'.",
                700016,
            )
        return app

    def delegated_scopes(self, app: Application, scope_text: str) -> list[str]:
        """Validate requested scopes; return the Graph permissions granted, reserved ones kept."""
        granted: list[str] = []
        for scope in scope_text.split():
            if scope in RESERVED_SCOPES:
                granted.append(scope)
                continue
            permission = _graph_scope(scope)
            if permission is None:
                raise OAuthError(
                    "invalid_scope",
                    f"The provided value for scope {scope} is not valid; the sandbox serves only "
                    "Microsoft Graph.",
                    70011,
                )
            if permission == ".default":
                granted.extend(sorted(app.delegated_permissions))
                continue
            if permission not in app.delegated_permissions:
                raise OAuthError(
                    "invalid_grant",
                    f"The user or administrator has not consented to use the application with "
                    f"ID '{app.client_id}' named '{app.display_name}'. Send an interactive "
                    f"authorization request for this user and resource. Missing: {permission}.",
                    65001,
                )
            granted.append(permission)
        return list(dict.fromkeys(granted))

    # ------------------------------------------------------------------------------------ tokens

    def _claims_base(self, app: Application, lifetime: int) -> dict[str, Any]:
        now = unix_seconds(self.clock.now())
        return {
            "aud": GRAPH_AUDIENCE,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": app.client_id,
            "tid": self.tenant_id,
            "uti": _random_text(self._rng, 22),
            "ver": "1.0",
        }

    def issue_user_tokens(
        self,
        app: Application,
        user: EntraUser,
        scopes: list[str],
        *,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        if not user.account_enabled:
            raise OAuthError("invalid_grant", "The user account is disabled.", 50057)
        graph_scopes = [s for s in scopes if s not in RESERVED_SCOPES]
        access = self._claims_base(app, self.access_token_lifetime) | {
            "idtyp": "user",
            "oid": user.object_id,
            "sub": user.object_id,
            "upn": user.user_principal_name,
            "unique_name": user.user_principal_name,
            "name": user.display_name,
            "scp": " ".join(graph_scopes),
        }
        now = unix_seconds(self.clock.now())
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self.signer.sign(access),
        }
        if "offline_access" in scopes:
            value = _random_text(self._rng, 64)
            self.refresh_grants[value] = RefreshGrant(
                app.client_id, user.object_id, self.clock.now() + REFRESH_TOKEN_LIFETIME
            )
            response["refresh_token"] = value
        if "openid" in scopes:
            id_claims = {
                "aud": app.client_id,
                "iss": f"{self.authority_origin}/{self.tenant_id}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "name": user.display_name,
                "oid": user.object_id,
                "preferred_username": user.user_principal_name,
                "sub": b64url(
                    hashlib.sha256(f"{user.object_id}:{app.client_id}".encode()).digest()
                ),
                "tid": self.tenant_id,
                "ver": "2.0",
            }
            if nonce:
                id_claims["nonce"] = nonce
            response["id_token"] = self.signer.sign(id_claims)
        response["client_info"] = b64url(
            f'{{"uid":"{user.object_id}","utid":"{self.tenant_id}"}}'.encode()
        )
        return response

    def issue_app_token(self, app: Application) -> dict[str, Any]:
        claims = self._claims_base(app, self.access_token_lifetime) | {
            "idtyp": "app",
            "oid": app.service_principal_id,
            "sub": app.service_principal_id,
            "roles": sorted(app.application_permissions),
        }
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self.signer.sign(claims),
        }

    # ------------------------------------------------------------------------------- device code

    def start_device_code(
        self, client_id: str, scope_text: str, verification_uri: str
    ) -> dict[str, Any]:
        app = self.application(client_id)
        scopes = self.delegated_scopes(app, scope_text)
        user_code = _random_text(self._rng, 9, string.ascii_uppercase + string.digits)
        flow = DeviceCode(
            device_code=_random_text(self._rng, 96),
            user_code=user_code,
            client_id=app.client_id,
            scopes=scopes,
            expires_at=self.clock.now() + DEVICE_CODE_LIFETIME,
            interval=self.device_code_interval,
        )
        if self.auto_approve_upn:
            auto = self.find_user(self.auto_approve_upn)
            flow.approved_user = auto.object_id if auto else None
        self.device_codes[flow.device_code] = flow
        seconds = int(DEVICE_CODE_LIFETIME.total_seconds())
        return {
            "user_code": user_code,
            "device_code": flow.device_code,
            "verification_uri": verification_uri,
            "expires_in": seconds,
            "interval": flow.interval,
            "message": (
                f"To sign in, use a web browser to open the page {verification_uri} and enter "
                f"the code {user_code} to authenticate."
            ),
        }

    def device_code_by_user_code(self, user_code: str) -> DeviceCode | None:
        wanted = user_code.strip().upper()
        return next((f for f in self.device_codes.values() if f.user_code == wanted), None)

    def approve_device_code(self, user_code: str, upn: str) -> None:
        flow = self.device_code_by_user_code(user_code)
        user = self.find_user(upn)
        if flow is None or user is None:
            raise KeyError("no such device code or user")
        flow.approved_user = user.object_id

    def decline_device_code(self, user_code: str) -> None:
        flow = self.device_code_by_user_code(user_code)
        if flow is None:
            raise KeyError("no such device code")
        flow.declined = True

    def redeem_device_code(self, client_id: str, device_code: str) -> dict[str, Any]:
        app = self.application(client_id)
        flow = self.device_codes.get(device_code)
        if flow is None or flow.client_id != app.client_id:
            raise OAuthError("bad_verification_code", "The provided device code is invalid.", 70000)
        now = self.clock.now()
        if flow.redeemed:
            raise OAuthError("invalid_grant", "The device code was already redeemed.", 54005)
        if now > flow.expires_at:
            raise OAuthError("expired_token", "The device code has expired.", 70020)
        if flow.declined:
            raise OAuthError(
                "authorization_declined", "The end user denied the authorization request.", 70000
            )
        if flow.approved_user is None:
            too_soon = flow.last_poll is not None and now - flow.last_poll < timedelta(
                seconds=flow.interval * 0.8
            )
            flow.last_poll = now
            if too_soon:
                raise OAuthError("slow_down", "The client is polling too quickly.", 70016)
            raise OAuthError(
                "authorization_pending",
                "The user has not yet completed authentication.",
                70016,
            )
        flow.redeemed = True
        return self.issue_user_tokens(app, self.users[flow.approved_user], flow.scopes)

    # ----------------------------------------------------------------------- authorization code

    def redirect_allowed(self, app: Application, redirect_uri: str) -> bool:
        """Registered redirect URIs; ``http://localhost`` admits any port, as Entra does."""
        for registered in app.redirect_uris:
            if redirect_uri == registered:
                return True
            if registered.rstrip("/") == "http://localhost" and redirect_uri.startswith(
                "http://localhost:"
            ):
                return True
        return False

    def new_authorization_code(
        self,
        app: Application,
        user: EntraUser,
        scopes: list[str],
        redirect_uri: str,
        code_challenge: str | None,
        code_challenge_method: str | None,
        nonce: str | None,
    ) -> str:
        value = _random_text(self._rng, 80)
        self.authorization_codes[value] = AuthorizationCode(
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            user_id=user.object_id,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            nonce=nonce,
            expires_at=self.clock.now() + AUTH_CODE_LIFETIME,
        )
        return value

    def redeem_authorization_code(
        self, client_id: str, code: str, redirect_uri: str, code_verifier: str | None
    ) -> dict[str, Any]:
        app = self.application(client_id)
        grant = self.authorization_codes.get(code)
        if grant is None or grant.client_id != app.client_id:
            raise OAuthError("invalid_grant", "Malformed or invalid authorization code.", 70000)
        if grant.redeemed:
            raise OAuthError(
                "invalid_grant", "OAuth2 Authorization code was already redeemed.", 54005
            )
        if self.clock.now() > grant.expires_at:
            raise OAuthError("invalid_grant", "The authorization code has expired.", 70008)
        if grant.redirect_uri != redirect_uri:
            raise OAuthError(
                "invalid_grant", "The redirect URI does not match the authorization request.", 50148
            )
        if grant.code_challenge is not None:
            if not code_verifier:
                raise OAuthError("invalid_request", "The code_verifier is missing.", 5000)
            if grant.code_challenge_method == "S256":
                expected = b64url(hashlib.sha256(code_verifier.encode()).digest())
            else:
                expected = code_verifier
            if expected != grant.code_challenge:
                raise OAuthError(
                    "invalid_grant",
                    "The code_verifier does not match the code_challenge supplied in the "
                    "authorization request for PKCE.",
                    501481,
                )
        grant.redeemed = True
        return self.issue_user_tokens(
            app, self.users[grant.user_id], grant.scopes, nonce=grant.nonce
        )

    # -------------------------------------------------------------------- refresh and app-only

    def redeem_refresh_token(
        self, client_id: str, refresh_token: str, scope_text: str
    ) -> dict[str, Any]:
        app = self.application(client_id)
        grant = self.refresh_grants.pop(refresh_token, None)
        if grant is None or grant.client_id != app.client_id:
            raise OAuthError(
                "invalid_grant", "The refresh token is invalid or was revoked.", 9002313
            )
        if self.clock.now() > grant.expires_at:
            raise OAuthError("invalid_grant", "The refresh token has expired.", 700082)
        scopes = self.delegated_scopes(app, scope_text or "offline_access openid profile")
        if "offline_access" not in scopes:
            scopes.append("offline_access")
        return self.issue_user_tokens(app, self.users[grant.user_id], scopes)

    def verify_client_assertion(
        self, app: Application, assertion: str, token_endpoint: str
    ) -> None:
        """A JWT signed with the key of one of the app's certificates (``x5t#S256`` or ``x5t``)."""

        def refuse(why: str) -> OAuthError:
            return OAuthError(
                "invalid_client", f"The client assertion is invalid: {why}.", 700027, 401
            )

        try:
            header_part, claims_part, signature_part = assertion.split(".")
            header = json.loads(b64url_decode(header_part))
            claims = json.loads(b64url_decode(claims_part))
            signature = b64url_decode(signature_part)
        except ValueError:
            raise refuse("it is not a JWT") from None
        certificate = None
        for candidate in app.certificates:
            sha256 = b64url(candidate.fingerprint(hashes.SHA256()))
            sha1 = b64url(candidate.fingerprint(hashes.SHA1()))  # identifies the key only
            # MSAL pads its base64url thumbprints, RFC 7515 does not: accept both.
            sent_sha256 = str(header.get("x5t#S256", "")).rstrip("=")
            sent_sha1 = str(header.get("x5t", "")).rstrip("=")
            if sent_sha256 == sha256 or sent_sha1 == sha1:
                certificate = candidate
        if certificate is None:
            raise OAuthError(
                "invalid_client",
                f"No certificate with that thumbprint is registered on the app '{app.client_id}'.",
                700027,
                401,
            )
        algorithms = {
            "RS256": padding.PKCS1v15(),
            "PS256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
        }
        if header.get("alg") not in algorithms:
            raise refuse(f"unsupported algorithm {header.get('alg')!r}")
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise refuse("only RSA certificates are supported")
        try:
            public_key.verify(
                signature,
                f"{header_part}.{claims_part}".encode(),
                algorithms[header["alg"]],
                hashes.SHA256(),
            )
        except InvalidSignature:
            raise refuse("the signature does not verify") from None
        now = unix_seconds(self.clock.now())
        if claims.get("aud") != token_endpoint:
            raise refuse(f"the audience must be {token_endpoint}")
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise refuse("iss and sub must be the client id")
        if int(claims.get("exp", 0)) <= now or int(claims.get("nbf", 0)) > now + 300:
            raise refuse("it is expired or not yet valid")

    def client_credentials(
        self,
        client_id: str,
        client_secret: str | None,
        scope_text: str,
        *,
        assertion: str | None = None,
        token_endpoint: str = "",
    ) -> dict[str, Any]:
        """App-only tokens, for a client secret or a certificate-signed assertion."""
        app = self.application(client_id)
        if app.public_client:
            raise OAuthError(
                "unauthorized_client", "A public client cannot use client credentials.", 700025
            )
        if assertion is not None:
            self.verify_client_assertion(app, assertion, token_endpoint)
        elif app.client_secret is None:
            raise OAuthError(
                "invalid_client",
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'; this application has no secret.",
                7000218,
                401,
            )
        elif client_secret != app.client_secret:
            raise OAuthError(
                "invalid_client",
                f"Invalid client secret provided for app '{app.client_id}'.",
                7000215,
                401,
            )
        scopes = scope_text.split()
        if len(scopes) != 1 or _graph_scope(scopes[0]) != ".default":
            raise OAuthError(
                "invalid_scope",
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"{scope_text} is not valid; use {GRAPH_AUDIENCE}/.default.",
                1002012,
            )
        return self.issue_app_token(app)

    # ---------------------------------------------------------------------------- Graph tokens

    def principal(self, claims: dict[str, Any]) -> Principal:
        app_id = str(claims.get("appid", ""))
        if claims.get("idtyp") == "app":
            return Principal(app_id, None, set(), set(claims.get("roles", [])))
        user = self.users.get(str(claims.get("oid", "")))
        scopes = set(str(claims.get("scp", "")).split())
        return Principal(app_id, user, scopes, set())
