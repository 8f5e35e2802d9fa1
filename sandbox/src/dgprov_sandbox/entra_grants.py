"""The OAuth grants of the emulated Entra ID tenant, as MSAL drives them.

Device code, authorization code with PKCE, refresh token and client credentials (a secret or a
certificate-signed assertion), with the errors and AADSTS codes recorded in
``shared/reference/graph-msal.md``. Who signs in is decided by the test or the auto-approve user,
never by a password. Every grant that succeeds mints its tokens through ``entra_tokens``.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .clock import unix_seconds
from .entra_directory import GRAPH_AUDIENCE, Application, EntraUser, OAuthError, graph_scope
from .entra_tokens import EntraTokens, random_text
from .keys import b64url, b64url_decode

DEVICE_CODE_LIFETIME = timedelta(minutes=15)
AUTH_CODE_LIFETIME = timedelta(minutes=10)


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


class EntraGrants(EntraTokens):
    """Start, decide and redeem grants; each successful redemption issues tokens."""

    device_code_interval: int
    auto_approve_upn: str | None
    device_codes: dict[str, DeviceCode]
    authorization_codes: dict[str, AuthorizationCode]

    # ------------------------------------------------------------------------------- device code

    def start_device_code(
        self, client_id: str, scope_text: str, verification_uri: str
    ) -> dict[str, Any]:
        app = self.application(client_id)
        scopes = self.delegated_scopes(app, scope_text)
        user_code = random_text(self._rng, 9, string.ascii_uppercase + string.digits)
        flow = DeviceCode(
            device_code=random_text(self._rng, 96),
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
        if app.registered_through_graph and not app.public_client:
            # Without isFallbackPublicClient ("Allow public client flows") Entra treats the app
            # as confidential and wants a credential (setup-entra.md section 3.2).
            raise OAuthError(
                "invalid_client",
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
                7000218,
                401,
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
        value = random_text(self._rng, 80)
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
        elif client_secret != app.client_secret and client_secret not in app.extra_secrets:
            raise OAuthError(
                "invalid_client",
                f"Invalid client secret provided for app '{app.client_id}'.",
                7000215,
                401,
            )
        scopes = scope_text.split()
        api = self.api_scope(scopes[0]) if len(scopes) == 1 else None
        if api is not None and api[1] == ".default":
            return self.issue_app_token(app, api[0])
        if len(scopes) != 1 or graph_scope(scopes[0]) != ".default":
            raise OAuthError(
                "invalid_scope",
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"{scope_text} is not valid; use {GRAPH_AUDIENCE}/.default or "
                "{App ID URI}/.default.",
                1002012,
            )
        return self.issue_app_token(app)
