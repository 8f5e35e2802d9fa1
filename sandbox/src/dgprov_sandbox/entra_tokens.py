"""Token minting of the emulated Entra ID tenant: RS256 JWTs as Graph and MSAL expect them.

Every grant ends here. Access tokens carry ``aud`` Graph, ``tid``, ``oid``, a unique ``uti`` and
either ``scp`` (delegated) or ``roles`` (app-only); ID tokens and ``client_info`` are what MSAL
needs to cache an account; refresh tokens are opaque and recorded as grants. ``principal`` reads
a verified access token back into the caller Graph authorises.
"""

from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .clock import SandboxClock, unix_seconds
from .entra_directory import (
    GRAPH_AUDIENCE,
    RESERVED_SCOPES,
    Application,
    EntraDirectory,
    EntraUser,
    OAuthError,
)
from .keys import JwtSigner, b64url

REFRESH_TOKEN_LIFETIME = timedelta(days=90)


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

    def in_role(self, roles: set[str], attribute_set: str | None = None) -> bool:
        """Directory roles of the signed-in user; app-only callers need none.

        A role assigned at an attribute set's scope counts for that set only.
        """
        if self.user is None or self.user.directory_roles & roles:
            return True
        if attribute_set is None:
            return False
        wanted = attribute_set.lower()
        return any(name in roles and scope == wanted for name, scope in self.user.scoped_roles)

    def in_role_anywhere(self, roles: set[str]) -> bool:
        """Holds one of ``roles`` tenant-wide or at the scope of some attribute set."""
        return self.in_role(roles) or any(
            name in roles for name, _ in (self.user.scoped_roles if self.user else set())
        )


def random_text(
    rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits
) -> str:
    return "".join(rng.choices(alphabet, k=length))


class EntraTokens(EntraDirectory):
    """Sign access, ID and refresh tokens; read access-token claims back into a principal."""

    clock: SandboxClock
    signer: JwtSigner
    authority_origin: str
    access_token_lifetime: int
    _rng: random.Random
    refresh_grants: dict[str, RefreshGrant]

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
            "uti": random_text(self._rng, 22),
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
        granted = [s for s in scopes if s not in RESERVED_SCOPES]
        resource = self._resource(granted)
        if resource is None:
            access = self._claims_base(app, self.access_token_lifetime) | {
                "idtyp": "user",
                "oid": user.object_id,
                "sub": user.object_id,
                "upn": user.user_principal_name,
                "unique_name": user.user_principal_name,
                "name": user.display_name,
                "scp": " ".join(granted),
            }
        else:
            self.setup.check_assignment(resource, app, user)
            access = self._api_claims(app, resource, user.object_id) | {
                "idtyp": "user",
                "name": user.display_name,
                "preferred_username": user.user_principal_name,
                "upn": user.user_principal_name,
                "scp": " ".join(s.rpartition("/")[2] for s in granted),
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
            value = random_text(self._rng, 64)
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

    def _resource(self, granted: list[str]) -> Application | None:
        """The tenant's web API the granted scopes are for; None for Graph."""
        for scope in granted:
            api = self.api_scope(scope)
            if api is not None:
                return api[0]
        return None

    def _api_claims(self, app: Application, resource: Application, subject: str) -> dict[str, Any]:
        """A v2.0 access token for one of the tenant's web APIs (accessTokenAcceptedVersion 2):
        ``aud`` its client id, ``iss`` the v2.0 issuer, ``azp`` the calling client; for an API
        registered through Graph without ``requestedAccessTokenVersion: 2``, the v1.0 shape."""
        now = unix_seconds(self.clock.now())
        if resource.access_token_version != 2:
            # requestedAccessTokenVersion null or 1: the v1.0 shape, audience the App ID URI.
            return {
                "aud": resource.identifier_uri or resource.client_id,
                "iss": f"https://sts.windows.net/{self.tenant_id}/",
                "iat": now,
                "nbf": now,
                "exp": now + self.access_token_lifetime,
                "appid": app.client_id,
                "appidacr": "0" if app.public_client else "1",
                "oid": subject,
                "sub": b64url(hashlib.sha256(f"{subject}:{resource.client_id}".encode()).digest()),
                "tid": self.tenant_id,
                "uti": random_text(self._rng, 22),
                "ver": "1.0",
            }
        return {
            "aud": resource.client_id,
            "iss": f"{self.authority_origin}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + self.access_token_lifetime,
            "azp": app.client_id,
            "azpacr": "0" if app.public_client else "1",
            "oid": subject,
            "sub": b64url(hashlib.sha256(f"{subject}:{resource.client_id}".encode()).digest()),
            "tid": self.tenant_id,
            "uti": random_text(self._rng, 22),
            "ver": "2.0",
        }

    def issue_app_token(
        self, app: Application, resource: Application | None = None
    ) -> dict[str, Any]:
        """App-only: Graph's application permissions, or the app roles granted on a web API."""
        if resource is None:
            claims = self._claims_base(app, self.access_token_lifetime) | {
                "idtyp": "app",
                "oid": app.service_principal_id,
                "sub": app.service_principal_id,
                "roles": sorted(app.application_permissions),
            }
        else:
            self.setup.check_assignment(resource, app, None)
            claims = self._api_claims(app, resource, app.service_principal_id) | {"idtyp": "app"}
            claims["sub"] = app.service_principal_id
            roles = app.api_roles.get(resource.client_id, set()) & resource.app_roles
            if roles:  # Entra leaves the claim out when no role is granted
                claims["roles"] = sorted(roles)
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self.signer.sign(claims),
        }

    # ---------------------------------------------------------------------------- Graph tokens

    def principal(self, claims: dict[str, Any]) -> Principal:
        app_id = str(claims.get("appid", ""))
        if claims.get("idtyp") == "app":
            return Principal(app_id, None, set(), set(claims.get("roles", [])))
        user = self.users.get(str(claims.get("oid", "")))
        scopes = set(str(claims.get("scp", "")).split())
        return Principal(app_id, user, scopes, set())
