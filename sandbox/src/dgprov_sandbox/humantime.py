"""The duration grammar Defguard core accepts for ``token_expiration_time``.

Defguard parses the field with Rust ``humantime::parse_duration`` (2.3.0) and truncates the result
to whole seconds. The emulator must reject exactly what the server rejects, including the odd
corners of that parser, or a client validated against it would fail in production:

* spans concatenate with or without spaces (``1h30m``, ``1h 30m``); whitespace is also skipped
  *inside* a number (``1 0h`` is ten hours);
* a fraction must convert to a whole number of the unit's base (seconds for hours and longer,
  nanoseconds below): ``1.5h`` is fine, ``0.3333h`` is not;
* the bare string ``"0"`` is zero, any other bare number is an error;
* units are case-sensitive (``M`` is months, ``m`` minutes);
* the total is a ``std::time::Duration``: up to ``u64::MAX`` seconds (584 billion years), far
  beyond what Defguard can then store (see ``rust_rules.token_lifetime``).
"""

from __future__ import annotations

from .rust_rules import U64_MAX, is_rust_whitespace

_NANOS_PER_SECOND = 1_000_000_000

# unit -> (seconds per unit, nanoseconds per unit); exactly one of the two is non-zero.
_UNITS: dict[str, tuple[int, int]] = {}
for _names, _secs, _nanos in (
    (("nanos", "nsec", "ns"), 0, 1),
    (("usec", "us", "µs"), 0, 1_000),
    (("millis", "msec", "ms"), 0, 1_000_000),
    (("seconds", "second", "secs", "sec", "s"), 1, 0),
    (("minutes", "minute", "min", "mins", "m"), 60, 0),
    (("hours", "hour", "hr", "hrs", "h"), 3_600, 0),
    (("days", "day", "d"), 86_400, 0),
    (("weeks", "week", "wk", "wks", "w"), 604_800, 0),
    (("months", "month", "M"), 2_630_016, 0),
    (("years", "year", "yr", "yrs", "y"), 31_557_600, 0),
):
    for _name in _names:
        _UNITS[_name] = (_secs, _nanos)


class DurationError(ValueError):
    """The text is not a duration Defguard would accept."""


class DurationPanic(OverflowError):
    """``Duration::new`` overflowed carrying nanoseconds: humantime src/duration.rs:301 panics."""


def _is_unit_char(char: str) -> bool:
    return ("a" <= char <= "z") or ("A" <= char <= "Z") or char == "µ"


def _checked(value: int) -> int:
    """``u64`` checked arithmetic: past ``u64::MAX`` is ``Error::NumberOverflow``."""
    if value > U64_MAX:
        raise DurationError("number is too large")
    return value


def _exact(numerator: int, denominator: int) -> int:
    """humantime's ``OverflowOp::div``: a remainder is an error too (src/duration.rs:98)."""
    if numerator % denominator:
        raise DurationError("the fraction cannot be represented exactly")
    return numerator // denominator


def _add(total: tuple[int, int], secs: int, nanos: int) -> tuple[int, int]:
    """``add_current`` (src/duration.rs:294): carries only above 10^9, then ``Duration::new``."""
    total_secs, total_nanos = total
    nanos = _checked(total_nanos + nanos)
    if nanos > _NANOS_PER_SECOND:
        secs = _checked(secs + nanos // _NANOS_PER_SECOND)
        nanos %= _NANOS_PER_SECOND
    secs = _checked(total_secs + secs)
    if nanos == _NANOS_PER_SECOND:  # Duration::new carries the last second itself
        if secs == U64_MAX:
            raise DurationPanic("overflow in Duration::new")
        secs, nanos = secs + 1, 0
    return secs, nanos


def _span(
    total: tuple[int, int], integer: int, fraction: tuple[int, int] | None, unit: str
) -> tuple[int, int]:
    """Add one ``<number><unit>`` span (``parse_unit``, src/duration.rs:234)."""
    if unit not in _UNITS:
        if unit == "":
            raise DurationError(f"time unit needed, for example {integer}sec or {integer}ms")
        raise DurationError(f"unknown time unit {unit!r}")
    secs, nanos = _UNITS[unit]
    total = _add(total, _checked(integer * secs), _checked(integer * nanos))
    if fraction is None:
        return total
    numerator, denominator = fraction
    if unit in ("nanos", "nsec", "ns"):
        raise DurationError("values below 1ns are not supported")
    if secs >= 3_600:  # hours and longer divide in seconds
        return _add(total, _exact(_checked(numerator * secs), denominator), 0)
    per_unit = secs * _NANOS_PER_SECOND or nanos  # seconds and minutes divide in nanoseconds
    return _add(total, 0, _exact(_checked(numerator * per_unit), denominator))


def parse_duration(text: str) -> tuple[int, int]:
    """``humantime::parse_duration`` (src/duration.rs:364): ``(secs, nanos)``."""
    if text == "0":
        return 0, 0
    chars = list(text)
    position = 0

    def skip_to_first_digit() -> int | None:
        nonlocal position
        while position < len(chars):
            char = chars[position]
            position += 1
            if char.isdigit() and char.isascii():
                return int(char)
            if not is_rust_whitespace(char):
                raise DurationError(f"expected number at {position - 1}")
        return None

    first = skip_to_first_digit()
    if first is None:
        raise DurationError("value was empty")
    integer, total = first, (0, 0)
    while True:
        fraction: tuple[int, int] | None = None
        unit_start = len(chars)
        while position < len(chars):
            char = chars[position]
            if char.isascii() and char.isdigit():
                integer = _checked(integer * 10 + int(char))
            elif char == ".":
                position += 1
                fraction, unit_start = _read_fraction(chars, position)
                position = unit_start
                break
            elif _is_unit_char(char):
                unit_start = position
                break
            elif not is_rust_whitespace(char):
                raise DurationError(f"invalid character at {position}")
            position += 1
        unit_end = unit_start
        next_integer: int | None = None
        while unit_end < len(chars):
            char = chars[unit_end]
            if char.isascii() and char.isdigit():
                next_integer = int(char)
                break
            if is_rust_whitespace(char):
                break
            if not _is_unit_char(char):
                raise DurationError(f"invalid character at {unit_end}")
            unit_end += 1
        total = _span(total, integer, fraction, "".join(chars[unit_start:unit_end]))
        position = unit_end + 1
        if next_integer is None:
            following = skip_to_first_digit()
            if following is None:
                return total
            next_integer = following
        integer = next_integer


def _read_fraction(chars: list[str], position: int) -> tuple[tuple[int, int], int]:
    """Digits after the decimal point; returns ``((numerator, denominator), unit_start)``."""
    numerator, denominator = 0, 1
    while position < len(chars):
        char = chars[position]
        if char.isascii() and char.isdigit():
            numerator = _checked(numerator * 10 + int(char))
            denominator = _checked(denominator * 10)
        elif _is_unit_char(char):
            break
        elif not is_rust_whitespace(char):
            raise DurationError(f"invalid character at {position}")
        position += 1
    if denominator == 1:
        raise DurationError(f"invalid character at {position}")
    return (numerator, denominator), position


def parse_duration_seconds(text: str) -> int:
    """Whole seconds, truncated, as Defguard stores a token lifetime (``Duration::as_secs``)."""
    return parse_duration(text)[0]
