"""What a Graph request and its answer are, apart from HTTP, and Graph's error envelope.

A ``GraphCall`` is one request below ``/v1.0``, from the wire or from inside ``$batch``; every
handler answers a ``GraphReply`` or raises a ``GraphError``, which the dispatcher renders in
Graph's envelope (``code``, ``message``, ``innerError`` with the request ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class GraphError(Exception):
    """A Graph failure, rendered in Graph's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


@dataclass
class GraphCall:
    method: str
    path: str  # below /v1.0, starting with "/"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any = None


@dataclass
class GraphReply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error_body(
    code: str,
    message: str,
    headers: dict[str, str],
    details: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "innerError": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": headers.get("request-id", ""),
            "client-request-id": headers.get("client-request-id", ""),
        },
    }
    if details:
        error["details"] = details
    return {"error": error}


def not_found(key: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are "
        "not present.",
    )


def bad_request(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def method_not_allowed() -> GraphError:
    return GraphError(
        405,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
