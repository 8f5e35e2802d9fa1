"""HTTP face of the emulated Entra sign-in service (``/{tenant}/oauth2/v2.0/...``).

Who signs in is decided by the tenant and the test, never by a password: a device code is
approved over ``/_sandbox/`` (or automatically as ``auto_approve_upn``), and the authorize
endpoint signs in the ``login_hint`` user or the auto-approve user without showing a form, so a
headless stand-in for a browser can finish MSAL's real interactive flow. A person with a real
browser gets a one-click chooser instead.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .entra_directory import EntraUser, OAuthError
from .entra_state import EntraState
from .http_common import RequestCounter

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _oauth_error(error: OAuthError) -> JSONResponse:
    return JSONResponse(
        {
            "error": error.error,
            "error_description": error.description,
            "error_codes": [error.code],
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        },
        status_code=error.status,
    )


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


async def _form(request: Request) -> dict[str, str]:
    """URL-encoded form fields, parsed without python-multipart."""
    return dict(
        parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    )


class AuthorityHandlers:
    def __init__(self, state: EntraState) -> None:
        self.state = state

    def _check_tenant(self, request: Request) -> None:
        tenant = request.path_params["tenant"].lower()
        known = {self.state.tenant_id.lower(), self.state.domain.lower(), "organizations", "common"}
        if tenant not in known:
            raise OAuthError("invalid_request", f"Tenant '{tenant}' not found.", 90002)

    def _base(self, request: Request) -> str:
        return f"{self.state.authority_origin}/{request.path_params['tenant']}"

    async def openid_configuration(self, request: Request) -> Response:
        try:
            self._check_tenant(request)
        except OAuthError as error:
            return _oauth_error(error)
        base = self._base(request)
        origin = self.state.authority_origin
        return JSONResponse(
            {
                "issuer": f"{origin}/{self.state.tenant_id}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "response_types_supported": ["code"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
                "tenant_region_scope": "EU",
            }
        )

    async def keys(self, request: Request) -> Response:
        return JSONResponse(self.state.signer.jwks())

    # --------------------------------------------------------------------------------- authorize

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        chosen_upn = None
        if request.method == "POST":
            form = await _form(request)
            chosen_upn = form.pop("sandbox_upn", None)
            params = form
        try:
            self._check_tenant(request)
            app = self.state.application(params.get("client_id", ""))
        except OAuthError as error:
            return _page("Sign-in error", f"<p>{html.escape(error.description)}</p>", 400)
        redirect_uri = params.get("redirect_uri", "")
        if not self.state.redirect_allowed(app, redirect_uri):
            return _page(
                "Sign-in error",
                "<p>AADSTS50011: The redirect URI "
                f"'{html.escape(redirect_uri)}' does not match the "
                "redirect URIs configured for the application.</p>",
                400,
            )
        form_post = params.get("response_mode") == "form_post"
        state_value = params.get("state")

        def reply(fields: dict[str, str]) -> Response:
            if state_value is not None:
                fields["state"] = state_value
            if form_post:
                inputs = "".join(
                    f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
                    for k, v in fields.items()
                )
                return HTMLResponse(
                    "<!doctype html><html><head><title>Working...</title></head>"
                    f"<body onload='document.forms[0].submit()'><form method='POST' "
                    f"action='{html.escape(redirect_uri)}'>{inputs}"
                    "<noscript><button type='submit'>Continue</button></noscript>"
                    "</form></body></html>"
                )
            return RedirectResponse(f"{redirect_uri}?{urlencode(fields)}", status_code=302)

        if params.get("response_type") != "code":
            return reply(
                {
                    "error": "unsupported_response_type",
                    "error_description": "AADSTS700054: response_type must be 'code'.",
                }
            )
        try:
            scopes = self.state.delegated_scopes(app, params.get("scope", ""))
        except OAuthError as error:
            return reply({"error": error.error, "error_description": error.description})
        user = self._signed_in_user(params.get("login_hint"), chosen_upn)
        if user is None:
            return self._chooser(request, params)
        if not user.account_enabled:
            return reply(
                {
                    "error": "access_denied",
                    "error_description": "AADSTS50057: The user account is disabled.",
                }
            )
        code = self.state.new_authorization_code(
            app,
            user,
            scopes,
            redirect_uri,
            params.get("code_challenge"),
            params.get("code_challenge_method", "plain") if params.get("code_challenge") else None,
            params.get("nonce"),
        )
        return reply({"code": code, "session_state": "sandbox"})

    def _signed_in_user(self, login_hint: str | None, chosen: str | None) -> EntraUser | None:
        for candidate in (chosen, login_hint, self.state.auto_approve_upn):
            if candidate:
                user = self.state.find_user(candidate)
                if user is not None:
                    return user
        return None

    def _chooser(self, request: Request, params: dict[str, str]) -> Response:
        hidden = "".join(
            f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
            for k, v in params.items()
        )
        options = "".join(
            f"<option>{html.escape(u.user_principal_name)}</option>"
            for u in self.state.users.values()
        )
        return _page(
            "Sandbox sign-in",
            f"<form method='POST'>{hidden}<p>Sign in as <select name='sandbox_upn'>{options}"
            "</select> <button type='submit'>Sign in</button></p></form>",
        )

    # ------------------------------------------------------------------------ device code flow

    async def devicecode(self, request: Request) -> Response:
        form = await _form(request)
        try:
            self._check_tenant(request)
            flow = self.state.start_device_code(
                form.get("client_id", ""),
                form.get("scope", ""),
                f"{self.state.authority_origin}/devicelogin",
            )
        except OAuthError as error:
            return _oauth_error(error)
        return JSONResponse(flow)

    async def devicelogin(self, request: Request) -> Response:
        """The page ``verification_uri`` points at, for a person with a browser."""
        message = ""
        if request.method == "POST":
            form = await _form(request)
            try:
                self.state.approve_device_code(form.get("user_code", ""), form.get("upn", ""))
                return _page("Signed in", "<p>You can close this window.</p>")
            except KeyError:
                message = "<p>Unknown code or user.</p>"
        options = "".join(
            f"<option>{html.escape(u.user_principal_name)}</option>"
            for u in self.state.users.values()
        )
        return _page(
            "Enter code",
            f"{message}<form method='POST'><p>Code <input name='user_code'> as "
            f"<select name='upn'>{options}</select> <button type='submit'>Next</button></p></form>",
        )

    async def token(self, request: Request) -> Response:
        form = await _form(request)
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        try:
            self._check_tenant(request)
            if grant == DEVICE_GRANT:
                tokens = self.state.redeem_device_code(client_id, form.get("device_code", ""))
            elif grant == "authorization_code":
                tokens = self.state.redeem_authorization_code(
                    client_id,
                    form.get("code", ""),
                    form.get("redirect_uri", ""),
                    form.get("code_verifier"),
                )
            elif grant == "refresh_token":
                tokens = self.state.redeem_refresh_token(
                    client_id, form.get("refresh_token", ""), form.get("scope", "")
                )
            elif grant == "client_credentials":
                assertion = None
                if form.get("client_assertion_type") == CLIENT_ASSERTION_TYPE:
                    assertion = form.get("client_assertion", "")
                tokens = self.state.client_credentials(
                    client_id,
                    form.get("client_secret"),
                    form.get("scope", ""),
                    assertion=assertion,
                    token_endpoint=f"{self._base(request)}/oauth2/v2.0/token",
                )
            else:
                raise OAuthError(
                    "unsupported_grant_type", f"The grant type '{grant}' is not supported.", 70003
                )
        except OAuthError as error:
            return _oauth_error(error)
        return JSONResponse(tokens)

    # ---------------------------------------------------------------- control (``/_sandbox``)

    async def auto_approve(self, request: Request) -> Response:
        try:
            upn = json.loads(await request.body()).get("upn")
        except (ValueError, AttributeError):
            return JSONResponse(
                {"error": 'send {"upn": "<UPN>"} or {"upn": null}'}, status_code=400
            )
        if upn is not None and self.state.find_user(str(upn)) is None:
            return JSONResponse({"error": f"no Entra user {upn}"}, status_code=404)
        self.state.auto_approve_upn = upn
        return JSONResponse({"auto_approve_as": upn})

    async def rotate_keys(self, request: Request) -> Response:
        """Roll the signing key: tokens signed from now on carry a ``kid`` the JWKS did not
        publish before, and the old key disappears from it."""
        return JSONResponse({"kid": self.state.signer.rotate()})

    async def device_codes(self, request: Request) -> Response:
        return JSONResponse(
            {
                "device_codes": [
                    {
                        "user_code": f.user_code,
                        "client_id": f.client_id,
                        "scopes": f.scopes,
                        "approved": f.approved_user is not None,
                        "declined": f.declined,
                        "redeemed": f.redeemed,
                        "polled": f.last_poll is not None,
                    }
                    for f in self.state.device_codes.values()
                ]
            }
        )

    async def approve(self, request: Request) -> Response:
        body: Any = json.loads(await request.body() or b"{}")
        try:
            self.state.approve_device_code(request.path_params["user_code"], str(body.get("upn")))
        except KeyError:
            return JSONResponse({"error": "no such device code or user"}, status_code=404)
        return JSONResponse({"approved": True})

    async def decline(self, request: Request) -> Response:
        try:
            self.state.decline_device_code(request.path_params["user_code"])
        except KeyError:
            return JSONResponse({"error": "no such device code"}, status_code=404)
        return JSONResponse({"declined": True})


def build_authority_app(state: EntraState, counts: Counter[str]) -> RequestCounter:
    handlers = AuthorityHandlers(state)
    routes = [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", handlers.openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", handlers.keys),
        Route("/{tenant}/oauth2/v2.0/authorize", handlers.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/devicecode", handlers.devicecode, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/token", handlers.token, methods=["POST"]),
        Route("/devicelogin", handlers.devicelogin, methods=["GET", "POST"]),
        Route("/_sandbox/auto-approve", handlers.auto_approve, methods=["POST"]),
        Route("/_sandbox/rotate-keys", handlers.rotate_keys, methods=["POST"]),
        Route("/_sandbox/device-codes", handlers.device_codes, methods=["GET"]),
        Route("/_sandbox/device-codes/{user_code}/approve", handlers.approve, methods=["POST"]),
        Route("/_sandbox/device-codes/{user_code}/decline", handlers.decline, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    return RequestCounter(app, app.router, counts)
