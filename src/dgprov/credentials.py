"""Reading secrets the way administrators expect: environment, file, prompt, and only reluctantly
the command line (visible to every local user in the process list).

No terminal code here: the caller passes how to prompt and how to warn, so the library API can
be driven by a CLI, a service or a test alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import environment
from .errors import UsageError

Prompt = Callable[[str], str]
"""Asks the person at the terminal for a hidden value; given the question."""


def read_secret(
    *,
    what: str,
    env_var: str,
    file: Path | None,
    file_option: str,
    command_line: str | None = None,
    command_line_option: str = "",
    prompt: Prompt | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> str:
    """The secret from the command line, a file, the environment or a prompt, in that order."""
    if command_line:
        warn(
            f"warning: {command_line_option} puts the {what} in the process list, visible to other "
            f"users; prefer {env_var} or {file_option}"
        )
        return command_line
    if file is not None:
        try:
            value = file.read_text("utf-8").strip()
        except OSError as exc:
            raise UsageError(f"{file_option} {file}: cannot read it ({exc.strerror})") from None
        if not value:
            raise UsageError(f"{file_option} {file}: the file is empty")
        return value
    from_environment = environment.get(env_var)
    if from_environment:
        return from_environment
    if prompt is not None:
        value = prompt(f"{what[0].upper()}{what[1:]}").strip()
        if value:
            return value
    raise UsageError(f"no {what}: set {env_var} or pass {file_option}")


def is_token_text(value: str) -> bool:
    """Whether ``value`` can travel as a bearer token: printable ASCII, no white space.

    API and enrollment tokens are sent in HTTP headers and bodies exactly as given; httpx raises
    on a header value with a non-ASCII character and the server refuses one with a control
    character, so such a value is a copy-paste accident to report, not to send.
    """
    return bool(value) and all(33 <= ord(character) <= 126 for character in value)
