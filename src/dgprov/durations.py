"""Token lifetimes in the grammar Defguard parses (Rust ``humantime`` 2.3.0).

dgprov validates ``--enrollment-token-expiration-time`` locally so that a typo fails before any
token is issued, and passes the text through unchanged so the server computes the same lifetime.
The grammar: spans of ``<number><unit>`` concatenated with or without spaces; fractions only
where they convert exactly (``1.5h``); the bare string ``0``; units are case-sensitive.

Beyond the grammar dgprov accepts lifetimes from one minute to ten years only. Shorter ones
(``0``, ``0s``, ``1ns``) give tokens that have expired before anyone can use them, yet replace
the user's working token. Defguard itself accepts up to 2^64 seconds, adds the lifetime to the
current time with chrono and panics beyond about 262,000 years, and a panic aborts a release
build of core entirely (core 2.0.1, ``db/models/enrollment.rs``): one typo would stop the VPN's
control plane. Ten years is far below that and far above any real use (Defguard's default is
24 hours; an enrollment token is a bootstrap credential meant to be used within days, and one
stored in a directory is readable there until it is used), so a longer lifetime is taken for
what it almost certainly is, a typo such as ``1000y`` or ``87600d``.
"""

from __future__ import annotations

import re

from .errors import UsageError

_UNIT_SECONDS: dict[str, float] = {}
for _names, _seconds in (
    (("nanos", "nsec", "ns"), 1e-9),
    (("usec", "us", "µs"), 1e-6),
    (("millis", "msec", "ms"), 1e-3),
    (("seconds", "second", "secs", "sec", "s"), 1),
    (("minutes", "minute", "min", "mins", "m"), 60),
    (("hours", "hour", "hr", "hrs", "h"), 3600),
    (("days", "day", "d"), 86_400),
    (("weeks", "week", "wk", "wks", "w"), 604_800),
    (("months", "month", "M"), 2_630_016),
    (("years", "year", "yr", "yrs", "y"), 31_557_600),
):
    for _name in _names:
        _UNIT_SECONDS[_name] = _seconds

# A span: digits (whitespace allowed between them, as humantime skips it), an optional
# fraction, optional whitespace, then a unit made of ASCII letters or µ.
_SPAN = re.compile(
    r"\s*(?P<int>\d[\d\s]*?)(?:\.(?P<frac>[\d\s]*\d[\d\s]*?))?\s*(?P<unit>[A-Za-zµ]+)"
)
_NANOS_PER_SECOND = 1_000_000_000
MIN_LIFETIME_SECONDS = 60
MAX_LIFETIME_SECONDS = 10 * 31_557_600  # humantime's year is 365.25 days
MAX_LIFETIME_TEXT = "10 years"
_OPTION = "--enrollment-token-expiration-time"


def _span_nanos(integer: int, fraction: str | None, unit: str) -> int:
    per_unit = _UNIT_SECONDS[unit]
    unit_nanos = round(per_unit * _NANOS_PER_SECOND)
    total = integer * unit_nanos
    if fraction:
        if unit in ("nanos", "nsec", "ns"):
            raise ValueError("a fraction of a nanosecond")
        numerator, denominator = int(fraction), 10 ** len(fraction)
        # humantime divides in whole seconds for hours and longer, in nanoseconds below.
        base = _NANOS_PER_SECOND if per_unit >= 3600 else 1
        scaled = numerator * (unit_nanos // base)
        if scaled % denominator:
            raise ValueError("a fraction that is not a whole number of seconds")
        total += scaled // denominator * base
    return total


def duration_seconds(text: str) -> int:
    """Seconds Defguard would compute for ``text``; ``UsageError`` if its grammar refuses it."""
    return _nanos(text) // _NANOS_PER_SECOND


def parse_lifetime(text: str, option: str = _OPTION) -> int:
    """Seconds of token lifetime for ``text``: Defguard's grammar, within dgprov's bounds;
    ``option`` names the option in the message."""
    nanos = _nanos(text, option)
    if nanos < MIN_LIFETIME_SECONDS * _NANOS_PER_SECOND:
        what = "zero" if nanos == 0 else "shorter than a minute"
        raise UsageError(
            f"{option} {text!r} is {what}: the tokens would expire before anyone could use "
            "them, and each would still replace the user's current one; give at least 1m, "
            "e.g. 24h, 1d or 2w"
        )
    if nanos > MAX_LIFETIME_SECONDS * _NANOS_PER_SECOND:
        raise UsageError(
            f"{option} {text!r} is longer than {MAX_LIFETIME_TEXT}, the longest lifetime dgprov "
            "issues (enrollment tokens are meant to be used within days, and far longer "
            "lifetimes crash Defguard); give e.g. 24h, 2w or 1y"
        )
    return nanos // _NANOS_PER_SECOND


def _nanos(text: str, option: str = _OPTION) -> int:
    try:
        return _parse_nanos(text)
    except ValueError as exc:
        raise UsageError(
            f"{option} {text!r} is not a duration Defguard accepts "
            f"({exc}); use a number with a unit, e.g. 24h, 1d, 2w or 1h 30m"
        ) from None


def _parse_nanos(text: str) -> int:
    if text == "0":
        return 0
    if not text.strip():
        raise ValueError("it is empty")
    position, total = 0, 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _SPAN.match(text, position)
        if match is None:
            raise ValueError(f"unexpected text at position {position}")
        unit = match.group("unit")
        if unit not in _UNIT_SECONDS:
            raise ValueError(f"unknown unit {unit!r}")
        integer = int(re.sub(r"\s", "", match.group("int")))
        fraction = re.sub(r"\s", "", match.group("frac") or "") or None
        total += _span_nanos(integer, fraction, unit)
        position = match.end()
        if position < len(text) and not (text[position].isspace() or text[position].isdigit()):
            raise ValueError(f"unexpected {text[position]!r} at position {position}")
    if total >= 2**64 * _NANOS_PER_SECOND:
        raise ValueError("it is too large")
    return total
