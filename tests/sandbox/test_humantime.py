"""The emulator's duration grammar against humantime 2.3.0 (chronotope/humantime v2.3.0
src/duration.rs): documented behaviour, its own tests, and the ``u64`` limits of ``Duration``."""

from __future__ import annotations

import pytest
from dgprov_sandbox.humantime import (
    DurationError,
    DurationPanic,
    parse_duration,
    parse_duration_seconds,
)

U64_MAX = 2**64 - 1
YEAR = 31_557_600

HOUR = 3600
DAY = 86_400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 24 * HOUR),
        ("1d", DAY),
        ("2w", 14 * DAY),
        ("1h 30m", 5400),
        ("1h30m", 5400),
        ("2h 37min", 9420),
        ("1.5h", 5400),
        ("0.5d", DAY // 2),
        ("1 h", HOUR),
        ("1 0h", 10 * HOUR),
        ("3months", 3 * 2_630_016),
        ("12M", 12 * 2_630_016),
        ("1y", 31_557_600),
        ("90s", 90),
        ("1500ms", 1),
        ("  20 min 17 nsec ", 1200),
        ("0", 0),
        ("0s", 0),
        ("4.2s", 4),
        ("1\u3000h", HOUR),  # U+3000 is White_Space, as char::is_whitespace sees it
        (f"{U64_MAX}s", U64_MAX),  # Duration holds u64 seconds: 584 billion years
        (f"{U64_MAX // YEAR}y", U64_MAX // YEAR * YEAR),
        ("1s 1000000000ns", 2),  # add_current carries a whole second only through Duration::new
    ],
)
def test_accepted_durations(text: str, seconds: int) -> None:
    assert parse_duration_seconds(text) == seconds


def test_subsecond_precision_is_kept_until_truncation() -> None:
    """humantime v2.3.0 src/duration.rs:362 (the doc test of parse_duration)."""
    assert parse_duration("4.2s") == (4, 200_000_000)
    assert parse_duration("32ms") == (0, 32_000_000)
    assert parse_duration("2h 37min") == (9420, 0)


def test_carrying_the_last_second_past_u64_panics() -> None:
    """``Duration::new`` panics on the carry (src/duration.rs:301): Defguard would abort."""
    with pytest.raises(DurationPanic):
        parse_duration(f"{U64_MAX}s 1000000000ns")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "24",
        "00",
        "1.",
        "1.h",
        "h",
        "1x",
        "1H",
        "1 hour min",
        "-1h",
        "1h-",
        "1,5h",
        "0.3333h",
        "0.5ns",
        "99999999999999999999s",
        f"{U64_MAX + 1}s",
        f"{U64_MAX // YEAR + 1}y",
        "1\x1ch",  # U+001C: Python's isspace() says yes, Rust's is_whitespace no
    ],
)
def test_rejected_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration_seconds(text)
