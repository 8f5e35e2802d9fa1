"""Rust semantics the Defguard emulators inherit (``rust_rules``), checked against the values the
Rust code gives (core ``str::parse::<u32>``, chrono 0.4.44, base64 0.22 ``STANDARD``)."""

from __future__ import annotations

from datetime import datetime

import pytest
from dgprov_sandbox.rust_rules import (
    ChronoOverflow,
    RustParseError,
    add_clamped,
    is_alphanumeric,
    is_wireguard_key,
    parse_u32,
    token_lifetime,
)

NOW = datetime(2026, 11, 27, 12, 0, 0)
YEAR = 31_557_600


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("+7", 7), ("007", 7), ("4294967295", 4294967295)]
)
def test_parse_u32_accepts(text: str, value: int) -> None:
    assert parse_u32(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot parse integer from empty string"),
        ("+", "invalid digit found in string"),
        ("-0", "invalid digit found in string"),
        (" 1", "invalid digit found in string"),
        ("1 ", "invalid digit found in string"),
        ("\u0661", "invalid digit found in string"),
        ("4294967296", "number too large to fit in target type"),
        ("99999999999x", "number too large to fit in target type"),  # overflow found first
    ],
)
def test_parse_u32_refuses(text: str, message: str) -> None:
    with pytest.raises(RustParseError, match=message):
        parse_u32(text)


def test_token_lifetime_within_chrono() -> None:
    assert token_lifetime(NOW, 0) == 0
    assert token_lifetime(NOW, 1000 * YEAR) == 1000 * YEAR
    assert token_lifetime(NOW, 2**64 - 1) == -1  # `as i64` wraps
    last_day = (datetime(9999, 12, 31) - NOW).total_seconds()  # well inside chrono's range
    assert token_lifetime(NOW, int(last_day)) == int(last_day)


@pytest.mark.parametrize(
    "seconds",
    [
        261_000 * YEAR,  # past 262142-12-31
        9_223_372_036_854_776,  # above TimeDelta::MAX seconds
        2**63,  # wraps to i64::MIN: below TimeDelta::MIN
    ],
)
def test_token_lifetime_overflow_is_a_panic(seconds: int) -> None:
    with pytest.raises(ChronoOverflow):
        token_lifetime(NOW, seconds)


def test_the_calendar_ends_on_262142_12_31() -> None:
    """chrono 0.4.44 src/naive/date/mod.rs:1506-1509: the last second of that day still adds."""
    days = 0
    for year in range(NOW.year, 262143):
        days += 366 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 365
    start_of_year = (datetime(NOW.year + 1, 1, 1) - NOW).total_seconds()
    to_end = int(start_of_year) + (days - (366 if NOW.year % 4 == 0 else 365)) * 86_400 - 1
    assert token_lifetime(NOW, to_end) == to_end
    with pytest.raises(ChronoOverflow):
        token_lifetime(NOW, to_end + 1)


def test_add_clamped_keeps_python_in_range() -> None:
    assert add_clamped(NOW, 10**15) == datetime.max
    assert add_clamped(NOW, -(10**15)) == datetime.min
    assert (add_clamped(NOW, 60) - NOW).total_seconds() == 60


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXs=", True),
        ("Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXt=", False),  # non-zero trailing bits
        ("Z2v0yCtvTuB4I6FZLRFpXW8b7+cR8cH8sHDB2iK9rXs", False),  # padding required
        ("Z2v0yCtvTuB4I6FZLRFpXW8b7-cR8cH8sHDB2iK9rXs=", False),  # URL-safe alphabet
        ("bm90IGEga2V5", False),  # 9 bytes
    ],
)
def test_wireguard_keys(key: str, valid: bool) -> None:
    assert is_wireguard_key(key) is valid


def test_alphanumeric_like_rust() -> None:
    assert all(is_alphanumeric(c) for c in "aZ9żЖ٣Ⅻ")  # letters, Nd, Nl
    assert not any(is_alphanumeric(c) for c in "&<`_ \u00a0")
