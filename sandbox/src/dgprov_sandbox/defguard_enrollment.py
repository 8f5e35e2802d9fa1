"""Enrollment tokens of the emulated Defguard core, from issue to the proxy's session.

Core issues them (``start_enrollment``, ``start_desktop``: one unused token per user, humantime
lifetimes); the enrollment proxy starts a session with one and activates the user inside the
session window. The check orders are the server's, since a client sees only the first failure.
"""

from __future__ import annotations

import string
from datetime import datetime, timedelta

from .defguard_directory import DefguardDirectory
from .defguard_model import (
    ALNUM,
    TOKEN_ENROLLMENT,
    CoreError,
    EnrollmentToken,
    ProxyError,
    Session,
    StartRequest,
    User,
)
from .humantime import DurationError, parse_duration_seconds


def password_is_strong(password: str) -> bool:
    """Defguard's rule: 8-128 characters with a lower, an upper, a digit and a punctuation mark."""
    return (
        8 <= len(password) <= 128
        and any(c.islower() for c in password)
        and any(c.isupper() for c in password)
        and any(c.isdigit() for c in password)
        and any(c in string.punctuation for c in password)
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
        self, user: User, admin: User, email: str | None, ttl: timedelta, via: str
    ) -> EnrollmentToken:
        owned = self._tokens_by_user.setdefault(user.id, set())
        for value in [v for v in owned if not self.tokens[v].used_at]:
            del self.tokens[value]
            owned.discard(value)
        now = self.clock.now()
        token = EnrollmentToken(
            value=self._new_token_value(),
            kind=TOKEN_ENROLLMENT,
            user_id=user.id,
            admin_id=admin.id,
            email=email,
            created_at=now,
            expires_at=now + ttl,
            via=via,
        )
        self.tokens[token.value] = token
        owned.add(token.value)
        return token

    def _parse_ttl(self, text: str | None) -> timedelta:
        if text is None:
            return self.token_timeout
        try:
            seconds = parse_duration_seconds(text)
        except DurationError:
            raise CoreError(400, "Failed to parse token expiration time") from None
        try:
            ttl = timedelta(seconds=seconds)
            self.clock.now() + ttl
        except OverflowError:
            # chrono would overflow adding this to now(); the server answers with a 500.
            raise CoreError(500, "Internal server error") from None
        return ttl

    def start_enrollment(
        self, session: Session, username: str, body: StartRequest
    ) -> EnrollmentToken:
        """``POST /user/{username}/start_enrollment`` after the extractors have passed."""
        if body.send_enrollment_notification and body.email is None:
            raise CoreError(400, "Email notification is enabled, but email was not provided")
        user = self.get_user(username)
        ttl = self._parse_ttl(body.token_expiration_time)
        already = user.has_password() if self.line == "1.6" else self.is_enrolled(user)
        if already:
            raise CoreError(400, "User account is already activated")
        if not user.is_active:
            raise CoreError(401, "Enrollment user is disabled")
        token = self._issue(user, session.user, body.email, ttl, "start_enrollment")
        user.enrollment_pending = True
        return token

    def start_desktop(self, session: Session, username: str, body: StartRequest) -> EnrollmentToken:
        """``POST /user/{username}/start_desktop``: no enrolled check, fixed lifetime."""
        if self.admin_device_management and not session.user.is_admin:
            raise CoreError(403, "Only admin users can manage devices")
        user = self.get_user(username)
        if not session.user.is_admin and session.user.id != user.id:
            raise CoreError(403, "requires privileged access")
        if not user.is_active:
            raise CoreError(401, "Enrollment user is disabled")
        email = body.email if body.email is not None else user.email
        return self._issue(user, session.user, email, self.token_timeout, "start_desktop")

    # ---------------------------------------------------------------------- enrollment proxy side

    def start_session(self, value: str) -> EnrollmentToken:
        """``Token::start_session``: the checks behind ``POST /enrollment/start``."""
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
            if now > token.used_at + self.session_timeout:
                raise ProxyError(401, "invalid token")
        else:
            token.used_at = now
        return token

    def session_token(self, value: str | None) -> EnrollmentToken:
        """The enrollment session behind a ``defguard_proxy`` cookie, still inside its window."""
        if value is None:
            raise ProxyError(401, "Missing authorization header")
        token = self.tokens.get(value)
        if token is None or token.used_at is None:
            raise ProxyError(401, "Session expired")
        if self.clock.now() > token.used_at + self.session_timeout:
            raise ProxyError(401, "Session expired")
        return token

    def deadline(self, token: EnrollmentToken) -> datetime:
        assert token.used_at is not None
        return token.used_at + self.session_timeout

    def activate_user(self, token: EnrollmentToken, password: str, phone: str | None) -> None:
        user = self.users_by_id[token.user_id]
        if not user.is_active:
            raise ProxyError(400, "user is disabled")
        if user.has_password():
            raise ProxyError(400, "user already activated")
        if phone is not None and not _valid_phone(phone):
            raise ProxyError(400, "invalid phone number")
        if not password_is_strong(password):
            raise ProxyError(400, "password not strong enough")
        user.password = password
        user.phone = phone if phone is not None else user.phone
        user.enrollment_pending = False


def _valid_phone(phone: str) -> bool:
    digits = phone[1:] if phone.startswith("+") else phone
    return 5 <= len(digits) <= 15 and digits.isdigit()
