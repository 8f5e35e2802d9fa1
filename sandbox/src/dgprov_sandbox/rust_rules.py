"""Rust standard-library and crate semantics that Defguard's answers inherit.

Defguard core and its proxy are Rust programs; where a request's fate depends on how Rust parses
a number, what ``char::is_whitespace`` means, what base64 accepts or where chrono's calendar
ends, a Python emulator must not use Python's own rules. Each function names the Rust code it
imitates (read at the version Defguard v2.0.1 and v1.6.6 lock in ``Cargo.lock``).
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from datetime import datetime, timedelta

# char::is_whitespace: the Unicode White_Space property (also regex's `\s` in Unicode mode).
# Python's str.isspace() differs: it also accepts U+001C..U+001F.
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1

# chrono 0.4.44: TimeDelta::MAX is i64::MAX milliseconds (src/time_delta.rs:75), so
# TimeDelta::seconds accepts -i64::MAX/1000 ..= i64::MAX/1000 (src/time_delta.rs:215-228);
# NaiveDate::MIN is -262143-01-01 and NaiveDate::MAX 262142-12-31 (src/naive/date/mod.rs:1506,
# MAX_YEAR/MIN_YEAR at :2446/:2451).
TIMEDELTA_MAX_SECONDS = I64_MAX // 1000
CHRONO_MIN_YEAR = -262143
CHRONO_MAX_YEAR = 262142
SECONDS_PER_DAY = 86_400


def is_rust_whitespace(char: str) -> bool:
    return char in RUST_WHITESPACE


class RustParseError(ValueError):
    """``ParseIntError``; the message is its Display text."""


def parse_u32(text: str) -> int:
    """``str::parse::<u32>()`` (core ``from_str_radix``): an optional ``+``, ASCII digits only.

    Errors, in Rust's order: empty text, a lone sign or a non-digit ("invalid digit found in
    string"), a value above ``u32::MAX`` (found digit by digit, before later bad digits).
    """
    if text == "":
        raise RustParseError("cannot parse integer from empty string")
    digits = text[1:] if text[0] == "+" and len(text) > 1 else text
    value = 0
    for char in digits:
        if not ("0" <= char <= "9"):
            raise RustParseError("invalid digit found in string")
        value = value * 10 + (ord(char) - ord("0"))
        if value > U32_MAX:
            raise RustParseError("number too large to fit in target type")
    return value


def is_alphanumeric(char: str) -> bool:
    """``char::is_alphanumeric``: Alphabetic or Numeric (Nd, Nl, No).

    Approximation: letters (L*) stand in for the Alphabetic property, which also holds the
    Other_Alphabetic marks (e.g. Devanagari vowel signs) that Python cannot name; those are
    refused here where Rust accepts them.
    """
    category = unicodedata.category(char)
    return category[0] == "L" or category in ("Nd", "Nl", "No")


def is_wireguard_key(text: str) -> bool:
    """``Device::validate_pubkey`` (defguard v2.0.1
    crates/defguard_common/src/db/models/device.rs:1026): base64 ``STANDARD`` of 32 bytes.

    The engine requires canonical padding and zero trailing bits, so a key is valid exactly when
    re-encoding its bytes gives the same text.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode() == text


class ChronoOverflow(OverflowError):
    """``TimeDelta::seconds`` out of bounds or ``DateTime + TimeDelta`` overflowed: a panic."""


def _days_before_year(year: int) -> int:
    """Days from 0001-01-01 to January 1 of ``year``, proleptic Gregorian with a year 0."""
    previous = year - 1
    return previous * 365 + previous // 4 - previous // 100 + previous // 400


# Day numbers on Python's ordinal scale (0001-01-01 is 1) of chrono's first and last dates.
_CHRONO_FIRST_DAY = _days_before_year(CHRONO_MIN_YEAR) + 1
_CHRONO_LAST_DAY = _days_before_year(CHRONO_MAX_YEAR + 1)


def token_lifetime(now: datetime, seconds: int) -> int:
    """The signed lifetime ``Token::new`` gives a token, or ``ChronoOverflow``.

    ``Token::new`` (defguard v2.0.1 crates/defguard_core/src/db/models/enrollment.rs:106,
    v1.6.6 :112) computes ``now + TimeDelta::seconds(seconds as i64)`` from humantime's ``u64``:
    values above ``i64::MAX`` wrap to negative lifetimes (a token that is expired on issue), and
    either step panics outside chrono's range.
    """
    signed = seconds - 2**64 if seconds > I64_MAX else seconds
    if abs(signed) > TIMEDELTA_MAX_SECONDS:
        raise ChronoOverflow("TimeDelta::seconds out of bounds")
    micros_into_day = (now - datetime(now.year, now.month, now.day)) // timedelta(microseconds=1)
    day = now.toordinal() + (micros_into_day + signed * 10**6) // (SECONDS_PER_DAY * 10**6)
    if not _CHRONO_FIRST_DAY <= day <= _CHRONO_LAST_DAY:
        raise ChronoOverflow("`DateTime + TimeDelta` overflowed")
    return signed


def add_clamped(moment: datetime, seconds: int) -> datetime:
    """``moment + seconds`` within Python's calendar (years 1-9999), clamped at its ends.

    Chrono reaches years Python cannot hold; a token expiring after 9999 behaves exactly like one
    expiring at its end, because the sandbox clock cannot get there either.
    """
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max if seconds > 0 else datetime.min
