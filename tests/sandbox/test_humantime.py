"""The emulator's duration grammar against humantime 2.3.0's documented and observed behaviour."""

from __future__ import annotations

import pytest
from dgprov_sandbox.humantime import DurationError, parse_duration_nanos, parse_duration_seconds

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
    ],
)
def test_accepted_durations(text: str, seconds: int) -> None:
    assert parse_duration_seconds(text) == seconds


def test_subsecond_precision_is_kept_until_truncation() -> None:
    assert parse_duration_nanos("4.2s") == 4_200_000_000
    assert parse_duration_nanos("32ms") == 32_000_000


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
    ],
)
def test_rejected_durations(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration_seconds(text)
