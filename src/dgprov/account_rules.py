"""Defguard's password and phone rules, checked before the server sees them.

In an enrollment core applies both in ``activate_user``, the last call of the session, after the
device is registered and its files are written; a refusal there would come only after the device
exists. So ``dgprov enroll`` checks the phone number before anything is sent and the password
(typed or read from a file) before a device is registered. Pure rules with no I/O, kept apart from
the proxy client and the flow: the command checks a password without loading either, and the
rules are tested without a network.
"""

from __future__ import annotations

import re

from .errors import UsageError

ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
PHONE_NUMBER = re.compile(
    rf"(\+?\d{{1,3}}[{RUST_WHITESPACE}]?)?(\(\d{{1,3}}\)|\d{{1,3}})[-{RUST_WHITESPACE}]?\d{{1,4}}"
    rf"[-{RUST_WHITESPACE}]?\d{{1,4}}?\Z"
)
r"""Core's ``PHONE_NUMBER_REGEX`` (v2.0.1 lib.rs:231, v1.6.6 :177) as Rust's regex reads it:
``\d`` is any Unicode decimal digit (as Python's), ``\s`` the White_Space property (Python's
also takes U+001C-U+001F, hence the class), ``$`` only at the very end (``\Z``); matched at the
start (``re.match``) for its ``^``."""


def check_password(password: str) -> None:
    """Core's ``check_password_strength`` (v2.0.1 handlers/user.rs:96-118), checked before the
    server sees it: 8 to 128 *bytes* of UTF-8, and ASCII classes only (``is_ascii_*``), so
    "é" counts two towards the length and is neither a lower-case letter nor punctuation."""
    problems = []
    if not 8 <= len(password.encode("utf-8")) <= 128:
        problems.append("8 to 128 bytes (a character outside ASCII counts 2 to 4)")
    if not any("a" <= c <= "z" for c in password):
        problems.append("an ASCII lower-case letter (a-z)")
    if not any("A" <= c <= "Z" for c in password):
        problems.append("an ASCII upper-case letter (A-Z)")
    if not any("0" <= c <= "9" for c in password):
        problems.append("an ASCII digit (0-9)")
    if not any(c in ASCII_PUNCTUATION for c in password):
        problems.append("an ASCII punctuation mark such as ! or -")
    if problems:
        raise UsageError(f"the password needs {', '.join(problems)} (Defguard's password rules)")


def check_phone(phone: str) -> None:
    """Core's phone rule, checked before anything is sent (core refuses after the session)."""
    if PHONE_NUMBER.match(phone) is None:
        raise UsageError(
            "--phone: Defguard refuses this phone number; use digits with an optional +country "
            "code, spaces or dashes, e.g. +48 123 456 789"
        )
