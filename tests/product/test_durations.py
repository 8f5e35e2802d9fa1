"""The product's local duration check agrees with the sandbox's port of humantime.

Both sides are written independently (the sandbox may not share product code), so agreeing on
a wide table of inputs is evidence that both follow the grammar, not each other.
"""

from __future__ import annotations

import pytest
from dgprov_sandbox.humantime import DurationError, parse_duration_seconds

from dgprov.durations import parse_lifetime
from dgprov.errors import UsageError

CASES = [
    "24h", "1d", "2w", "1h 30m", "1h30m", "1.5h", "0.5d", "1 h", "1 0h", "3months", "12M", "1y",
    "90s", "1500ms", "  20 min 17 nsec ", "0", "0s", "4.2s", "", "   ", "24", "00", "1.", "1.h",
    "h", "1x", "1H", "1 hour min", "-1h", "1h-", "1,5h", "0.3333h", "0.5ns", "2h 37min", "1w 2d",
    "7 days", "30m10s", "1.25h", "0.1s", "99999999999999999999s",
]  # fmt: skip


@pytest.mark.parametrize("text", CASES)
def test_product_and_sandbox_agree(text: str) -> None:
    try:
        expected: int | None = parse_duration_seconds(text)
    except DurationError:
        expected = None
    try:
        actual: int | None = parse_lifetime(text)
    except UsageError:
        actual = None
    assert actual == expected


def test_error_names_the_option_and_the_fix() -> None:
    with pytest.raises(UsageError) as caught:
        parse_lifetime("24")
    message = str(caught.value)
    assert "--enrollment-token-expiration-time" in message and "24h, 1d, 2w" in message
