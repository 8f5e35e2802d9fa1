"""The strict checks of a request head, on its bytes, before h11 parses it.

h11 bounds only an *unfinished* head (a complete 100 KiB head is parsed and served), accepts
bare-LF line endings and unfolds obsolete line folding. Each of those is a way to make two
parsers (a proxy's and the broker's) read one request differently, or to make the broker hold
more than it should, so the broker refuses them: 431 for a head above ``MAX_HEAD_BYTES``
(finished or not), 400 for a bare LF or CR, 400 for a header line that starts with a space or
a tab (RFC 9112 §5.2 lets a server refuse obs-fold with 400), and 400 for a request framed
two ways: ``Content-Length`` beside ``Transfer-Encoding``, or more than one length (h11 reads
the chunks and keeps the connection; a proxy that trusts the length reads the rest as another
request: RFC 9112 §6.1 lets a server refuse it, and says to close after responding).

Pure: bytes in, a refusal or None out; ``connections.StrictConnection`` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEAD_BYTES = 16 * 1024  # request line and headers, as h11's own bound
END_OF_HEAD = b"\r\n\r\n"


@dataclass(frozen=True)
class HeadRefusal:
    status: int
    message: str


def too_large(limit: int) -> HeadRefusal:
    return HeadRefusal(
        431, f"the request head is larger than {limit} bytes; send fewer or shorter headers"
    )


BARE_LINE_END = HeadRefusal(
    400, "every line of the request head must end with CRLF; a bare LF or CR is not accepted"
)
FOLDED = HeadRefusal(
    400,
    "a header line starts with a space or a tab (obsolete line folding); "
    "send each header on one line",
)

FRAMED_TWICE = HeadRefusal(
    400,
    "the request gives more than one Content-Length, or Content-Length with "
    "Transfer-Encoding; send exactly one of them",
)


def framing_refusal(head: bytes) -> HeadRefusal | None:
    """``FRAMED_TWICE`` for a complete head whose body length is given twice or two ways."""
    lengths = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            lengths += 1 + value.count(b",")
        elif name == b"transfer-encoding":
            chunked = True
    return FRAMED_TWICE if lengths > 1 or (lengths and chunked) else None


def head_refusal(buffer: bytes, limit: int = MAX_HEAD_BYTES) -> HeadRefusal | None:
    """Why the head at the start of ``buffer`` must be refused; None while it may still be fine.

    ``buffer`` is what the client sent since the previous request ended: the head (perhaps not
    all of it yet), then perhaps a body and more requests, which are not looked at. (An empty
    line before the request line is h11's to refuse.)
    """
    end = buffer.find(END_OF_HEAD)
    if end < 0:
        if len(buffer) > limit:
            return too_large(limit)
        # The last byte may be the CR of a CRLF still on its way.
        head = buffer[:-1] if buffer.endswith(b"\r") else buffer
    else:
        if end + len(END_OF_HEAD) > limit:
            return too_large(limit)
        head = buffer[: end + len(END_OF_HEAD)]
    line_ends = head.count(b"\r\n")
    if head.count(b"\n") != line_ends or head.count(b"\r") != line_ends:
        return BARE_LINE_END
    if b"\r\n " in head or b"\r\n\t" in head:
        return FOLDED
    return framing_refusal(head) if end >= 0 else None
