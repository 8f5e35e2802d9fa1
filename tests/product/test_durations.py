"""The product's local duration check: Defguard's grammar, and dgprov's own bounds.

The grammar is compared with the sandbox's port of humantime. Both sides are written
independently (the sandbox may not share product code), so agreeing on a wide table of inputs is
evidence that both follow the grammar, not each other. The bounds are dgprov's: a lifetime the
server would accept but that gives useless tokens or crashes the server never leaves the machine.
"""

from __future__ import annotations

import pytest
from dgprov_sandbox.humantime import DurationError, parse_duration_seconds

from dgprov.durations import MAX_LIFETIME_SECONDS, duration_seconds, parse_lifetime
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
        actual: int | None = duration_seconds(text)
    except UsageError:
        actual = None
    assert actual == expected


def test_error_names_the_option_and_the_fix() -> None:
    with pytest.raises(UsageError) as caught:
        parse_lifetime("24")
    message = str(caught.value)
    assert "--enrollment-token-expiration-time" in message and "24h, 1d, 2w" in message


@pytest.mark.parametrize("text", ["0", "0s", "1ns", "999ms", "59s", "59.5s", "0.5min", "59s 999ms"])
def test_lifetimes_under_a_minute_are_refused(text: str) -> None:
    """Tokens that expire before anyone can use them would still replace working ones."""
    with pytest.raises(UsageError) as caught:
        parse_lifetime(text)
    message = str(caught.value)
    assert message.startswith(f"--enrollment-token-expiration-time {text!r} is ")
    assert "give at least 1m" in message


@pytest.mark.parametrize(
    "text", ["10y 1s", "11y", "1000y", "87600d", "300000y", "18446744073709551615s"]
)
def test_lifetimes_over_ten_years_are_refused(text: str) -> None:
    """Defguard accepts these (up to 2^64 s) and panics beyond ~262,000 years; dgprov stops far
    below, where a lifetime can only be a typo."""
    with pytest.raises(UsageError) as caught:
        parse_lifetime(text)
    assert "longer than 10 years" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("60s", 60), ("1min 0.5s", 60), ("24h", 86_400), ("1y", 31_557_600),
     ("10y", MAX_LIFETIME_SECONDS), ("87600h", 315_360_000)],
)  # fmt: skip
def test_lifetimes_within_bounds_are_accepted(text: str, seconds: int) -> None:
    assert parse_lifetime(text) == seconds


@pytest.mark.parametrize("text", ["0", "1ns", "59s", "11y", "500y"])
def test_the_server_would_take_what_the_bounds_refuse(text: str) -> None:
    """Defguard's grammar accepts all of these: only dgprov's bounds keep them from the server."""
    parse_duration_seconds(text)
    with pytest.raises(UsageError):
        parse_lifetime(text)
