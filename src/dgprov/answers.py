"""Reading what remote services answer without trusting its shape.

Defguard, Graph and the enrollment proxy are reached over the network and may be old, new,
misconfigured or compromised. An answer that is not JSON, lacks a field or has one of the wrong
type must become one clear line naming the service and the field (``InvalidAnswer``), never a
``KeyError`` traceback; and no message may quote a value, since answers carry tokens. Every
client parses its answers through ``Answer``.
"""

from __future__ import annotations

from typing import Any

import httpx

from .errors import InvalidAnswer


class Answer:
    """A JSON value from ``service`` at ``where`` (a path such as ``data[3]``), read by type."""

    def __init__(self, service: str, status: int, value: Any, where: str = "") -> None:
        self.service = service
        self.status = status
        self.value = value
        self.where = where

    @classmethod
    def of(cls, response: httpx.Response, service: str) -> Answer:
        try:
            value = response.json()
        except ValueError:  # not JSON, or not UTF-8
            raise InvalidAnswer(service, response.status_code, "the answer is not JSON") from None
        return cls(service, response.status_code, value)

    def invalid(self, problem: str) -> InvalidAnswer:
        place = f" in {self.where}" if self.where else ""
        return InvalidAnswer(self.service, self.status, f"unusable answer: {problem}{place}")

    def _path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.where}[{key}]"
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str) -> Any:
        if not isinstance(self.value, dict):
            raise self.invalid(f"expected an object with {key!r}, got {_kind(self.value)}")
        return self.value.get(key)

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and self.value.get(key) is not None

    def child(self, key: str) -> Answer:
        """The object at ``key``."""
        value = self._get(key)
        if not isinstance(value, dict):
            raise self.invalid(f"{key!r} is {_kind(value)}, expected an object")
        return Answer(self.service, self.status, value, self._path(key))

    def items(self, key: str | None = None) -> list[Answer]:
        """The elements of the list at ``key`` (or of this value itself)."""
        value = self.value if key is None else self._get(key)
        if not isinstance(value, list):
            name = repr(key) if key is not None else "the answer"
            raise self.invalid(f"{name} is {_kind(value)}, expected a list")
        base = self if key is None else Answer(self.service, self.status, value, self._path(key))
        return [
            Answer(self.service, self.status, item, base._path(index))
            for index, item in enumerate(value)
        ]

    def text(self, key: str) -> str:
        """The string at ``key``; missing, null or another type is an error."""
        value = self._get(key)
        if not isinstance(value, str):
            raise self.invalid(f"{key!r} is {_kind(value)}, expected a string")
        return value

    def optional_text(self, key: str) -> str | None:
        """The string at ``key``, or None when it is missing or null."""
        return self.text(key) if self._get(key) is not None else None

    def integer(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.invalid(f"{key!r} is {_kind(value)}, expected an integer")
        return value

    def optional_integer(self, key: str) -> int | None:
        return self.integer(key) if self._get(key) is not None else None

    def flag(self, key: str) -> bool:
        """The boolean at ``key``; missing or null reads as false."""
        value = self._get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.invalid(f"{key!r} is {_kind(value)}, expected true or false")
        return value

    def texts(self, key: str) -> list[str]:
        """The list of strings at ``key``; missing or null reads as empty."""
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.invalid(f"{key!r} is {_kind(value)}, expected a list")
        # Checked in place: an Answer per element would cost 100,000 objects for a big group.
        for item in value:
            if not isinstance(item, str):
                raise self.invalid(f"an element of {key!r} is {_kind(item)}, not a string")
        return list(value)


def _kind(value: Any) -> str:
    """What a value is, for a message, without its content."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"
