"""How dgprov compares e-mail addresses and account names: by ASCII case only.

Graph, AD and Defguard compare addresses without regard to case, each with its own idea of
case. Python's ``str.lower()`` turns the Kelvin sign (U+212A) into ``k``, so an Entra account
whose mail was ``\u212aim@…`` matched the member ``kim@…`` and received her token. dgprov
therefore folds only ``A``-``Z`` (``fold``), and an address holding a non-ASCII character that
some case mapping or compatibility normalisation turns into ASCII is *confusable*: a directory
may take it for the plain-ASCII address it resembles (``skeleton``), so it never matches, and
the member it resembles is refused as ambiguous rather than given to either person.
"""

from __future__ import annotations

import functools
import string
import unicodedata

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold(text: str) -> str:
    """``text`` with ``A``-``Z`` lower-cased and nothing else changed; the same string object
    when nothing changes (100,000 addresses are held at once)."""
    folded = text.translate(_ASCII_LOWER)
    return text if folded == text else folded


@functools.lru_cache(maxsize=4096)
def _into_ascii(char: str) -> str:
    """The ASCII a non-ASCII character may become under lower, upper or full case folding,
    or NFKC normalisation (then folded): ``''`` when none of them reaches ASCII."""
    forms = {char.lower(), char.upper(), char.casefold(), unicodedata.normalize("NFKC", char)}
    forms |= {form.casefold() for form in forms}
    reached = ("".join(c for c in form if c.isascii()) for form in forms)
    return fold(max(reached, key=len))


def look_alikes(text: str) -> list[str]:
    """The characters of ``text`` that may fold into ASCII, each once, in order."""
    if text.isascii():
        return []
    return list(dict.fromkeys(c for c in text if not c.isascii() and _into_ascii(c)))


def confusable(text: str) -> bool:
    """Whether a directory might match ``text`` to an address it is not (see the module)."""
    return bool(look_alikes(text))


def skeleton(text: str) -> str:
    """``fold(text)`` with each look-alike character replaced by the ASCII it may become: the
    plain address a directory might take ``text`` for."""
    if text.isascii():
        return fold(text)
    return "".join(fold(c) if c.isascii() else (_into_ascii(c) or c) for c in text)


def describe(text: str) -> str:
    """The look-alike characters of ``text``, each by code point, as itself and with the ASCII it
    may become, for a message (``U+00DF 'ß' may read as 'ss'``): an address such as ``groß@…``
    is genuine, and refused only because a directory may take it for ``gross@…``, whether or
    not anyone holds that one; the message must make that plain. ``repr`` shows a character
    that cannot be printed as an escape."""
    return ", ".join(
        f"U+{ord(c):04X} {c!r} may read as {_into_ascii(c)!r}" for c in look_alikes(text)
    )
