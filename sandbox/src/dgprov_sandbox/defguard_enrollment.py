"""Enrollment tokens of the emulated Defguard core, from issue to the proxy's session.

Core issues them (``start_enrollment``, ``start_desktop``: one unused token per user, humantime
lifetimes); the enrollment proxy starts a session with one and activates the user inside the
session window. The check orders are the server's, since a client sees only the first failure:
core v2.0.1 ``crates/defguard_core/src/handlers/user.rs`` and ``enrollment_management.rs``,
``crates/defguard_proxy_manager/src/servers/enrollment.rs``; v1.6.6
``crates/defguard_core/src/handlers/user.rs``, ``db/models/enrollment.rs`` and
``grpc/enrollment.rs``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from .defguard_directory import DefguardDirectory
from .defguard_model import (
    ALNUM,
    TOKEN_ENROLLMENT,
    CoreCrash,
    CoreError,
    EnrollmentToken,
    ProxyError,
    Session,
    StartRequest,
    User,
)
from .humantime import DurationError, DurationPanic, parse_duration_seconds
from .rust_rules import RUST_WHITESPACE, ChronoOverflow, add_clamped, token_lifetime

# PHONE_NUMBER_REGEX (v2.0.1 crates/defguard_core/src/lib.rs:231, v1.6.6 :177) in Rust regex's
# Unicode mode: `\s` is White_Space, `\d` is Nd, and `$` matches only at the very end (`\Z`).
_S = f"[{RUST_WHITESPACE}]"
PHONE_NUMBER = re.compile(
    rf"(\+?\d{{1,3}}{_S}?)?(\(\d{{1,3}}\)|\d{{1,3}})[-{RUST_WHITESPACE}]?\d{{1,4}}"
    rf"[-{RUST_WHITESPACE}]?\d{{1,4}}?\Z"
)
ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def valid_phone_number(phone: str) -> bool:
    return PHONE_NUMBER.match(phone) is not None


def password_is_strong(password: str) -> bool:
    """``check_password_strength`` (v2.0.1 crates/defguard_core/src/handlers/user.rs:96-118,
    v1.6.6 :85-107): 8-128 *bytes* (``str::len``) with an ASCII punctuation mark, digit,
    lower-case and upper-case letter (``is_ascii_*``)."""
    return (
        8 <= len(password.encode("utf-8")) <= 128
        and any(c in ASCII_PUNCTUATION for c in password)
        and any("0" <= c <= "9" for c in password)
        and any("a" <= c <= "z" for c in password)
        and any("A" <= c <= "Z" for c in password)
    )


class DefguardEnrollment(DefguardDirectory):
    """Issue enrollment tokens (core side) and run enrollment sessions (proxy side)."""

    token_timeout: timedelta
    session_timeout: timedelta
    admin_device_management: bool
    tokens: dict[str, EnrollmentToken]
    _tokens_by_user: dict[int, set[str]]

    # --------------------------------------------------------------------------- enrollment tokens

    def _new_token_value(self) -> str:
        return "".join(self._rng.choices(ALNUM, k=32))

    def _issue(
        self, user: User, admin: User, email: str | None, seconds: int, via: str
    ) -> EnrollmentToken:
        """Delete the user's unused tokens and create one (``Token::new`` + ``save``).

        ``Token::new`` panics for lifetimes chrono cannot add; the core then aborts inside the
        open transaction, so the deletion is rolled back: nothing changes.
        """
        now = self.clock.now()
        try:
            lifetime = token_lifetime(now, seconds)
        except ChronoOverflow as panic:
            raise CoreCrash(str(panic)) from None
        owned = self._tokens_by_user.setdefault(user.id, set())
        for value in [v for v in owned if not self.tokens[v].used_at]:
            del self.tokens[value]
            owned.discard(value)
        token = EnrollmentToken(
            value=self._new_token_value(),
            kind=TOKEN_ENROLLMENT,
            user_id=user.id,
            admin_id=admin.id,
            email=email,
            created_at=now,
            expires_at=add_clamped(now, lifetime),
            lifetime_seconds=lifetime,
            via=via,
        )
        self.tokens[token.value] = token
        owned.add(token.value)
        return token

    def _lifetime_seconds(self, text: str | None) -> int:
        """``parse_duration(..).as_secs()``, or the configured default."""
        if text is None:
            return int(self.token_timeout.total_seconds())
        try:
            return parse_duration_seconds(text)
        except DurationError:
            raise CoreError(400, "Failed to parse token expiration time") from None
        except DurationPanic as panic:
            raise CoreCrash(str(panic)) from None

    def start_enrollment(
        self, session: Session, username: str, body: StartRequest
    ) -> EnrollmentToken:
        """``POST /user/{username}/start_enrollment`` after the extractors have passed
        (v2.0.1 handlers/user.rs:439-500 then enrollment_management.rs:14-57; v1.6.6
        handlers/user.rs:394-454 then db/models/enrollment.rs:396-453)."""
        if body.send_enrollment_notification and body.email is None:
            raise CoreError(400, "Email notification is enabled, but email was not provided")
        user = self.get_user(username)
        seconds = self._lifetime_seconds(body.token_expiration_time)
        already = user.has_password() if self.line == "1.6" else self.is_enrolled(user)
        if already:
            raise CoreError(400, "User account is already activated")
        if not user.is_active:
            raise CoreError(401, "Enrollment user is disabled")
        token = self._issue(user, session.user, body.email, seconds, "start_enrollment")
        user.enrollment_pending = True
        self.touch_user(user)  # user.save(): an UPDATE even when the flag was already set
        return token

    def start_desktop(self, session: Session, username: str, body: StartRequest) -> EnrollmentToken:
        """``POST /user/{username}/start_desktop``: no enrolled check, fixed lifetime (v2.0.1
        handlers/user.rs ``start_remote_desktop_configuration``, enrollment_management.rs:89)."""
        if self.admin_device_management and not session.user.is_admin:
            raise CoreError(403, "Only admin users can manage devices")
        user = self.user_for_admin_or_self(session, username)
        if not user.is_active:
            raise CoreError(401, "Enrollment user is disabled")
        email = body.email if body.email is not None else user.email
        seconds = int(self.token_timeout.total_seconds())
        return self._issue(user, session.user, email, seconds, "start_desktop")

    # ---------------------------------------------------------------------- enrollment proxy side

    def session_open(self, token: EnrollmentToken) -> bool:
        """``Token::is_session_valid``: strictly before ``used_at`` + the session timeout."""
        return token.used_at is not None and self.clock.now() < token.used_at + self.session_timeout

    def start_session(self, value: str) -> EnrollmentToken:
        """``EnrollmentServer::start_enrollment`` and ``Token::start_session`` (v2.0.1
        servers/enrollment.rs:121-173, db/models/enrollment.rs:163-197)."""
        token = self.tokens.get(value)
        if token is None:
            raise ProxyError(401, "invalid token")
        if token.kind != TOKEN_ENROLLMENT:
            raise ProxyError(403, "invalid token")
        user = self.users_by_id[token.user_id]
        if not user.is_active:
            raise ProxyError(403, "user is disabled")
        now = self.clock.now()
        if token.expires_at < now:
            raise ProxyError(401, "token expired")
        if token.used_at is not None:
            if not self.session_open(token):
                raise ProxyError(401, "invalid token")
        else:
            token.used_at = now
        return token

    def session_token(self, value: str | None) -> EnrollmentToken:
        """``validate_session`` (v2.0.1 servers/enrollment.rs:70-97, v1.6.6 grpc/enrollment.rs:84):
        the token the ``defguard_proxy`` cookie holds, with a session still open."""
        if value is None:
            raise ProxyError(401, "Missing authorization header")
        token = self.tokens.get(value)
        if token is None:
            raise ProxyError(401, "invalid token")  # TokenError::NotFound
        if token.kind != TOKEN_ENROLLMENT:
            raise ProxyError(403, "invalid token")
        if not self.session_open(token):
            raise ProxyError(401, "Session expired")
        return token

    def deadline(self, token: EnrollmentToken) -> datetime:
        assert token.used_at is not None
        return token.used_at + self.session_timeout

    def activate_user(self, token: EnrollmentToken, password: str, phone: str | None) -> None:
        """``activate_user`` after ``validate_session`` (v2.0.1 servers/enrollment.rs:387-505,
        v1.6.6 grpc/enrollment.rs:364-440): phone, password, already activated, disabled; the
        phone is replaced by the request's, null included."""
        if phone is not None and not valid_phone_number(phone):
            raise ProxyError(400, "invalid phone number")
        if not password_is_strong(password):
            raise ProxyError(400, "password not strong enough")
        user = self.users_by_id[token.user_id]
        if user.has_password():
            raise ProxyError(400, "user already activated")
        if not user.is_active:
            raise ProxyError(400, "user is disabled")
        user.password = password
        user.phone = phone
        user.enrollment_pending = False
        if self.line == "2.0" and user.from_ldap:
            user.ldap_remote_enrollment_completed = True
        self.touch_user(user)
