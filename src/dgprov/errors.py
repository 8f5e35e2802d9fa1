"""dgprov's exception hierarchy: every failure an administrator can see, with its exit status.

Messages are written for the person running the command: one line naming the problem and the
fix. None may contain a secret; values that could be one are never interpolated.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2


class DgprovError(Exception):
    """Base class; ``exit_status`` is what the CLI exits with."""

    exit_status = EXIT_USAGE


class UsageError(DgprovError):
    """Bad options or input files; nothing was changed."""


class PreflightError(DgprovError):
    """A check before any change failed (reachability, licence, group, attributes…)."""


class AuthenticationError(DgprovError):
    """Signing in to Entra ID, Active Directory or Defguard failed."""


class RemoteError(DgprovError):
    """A remote service answered with an error; carries the HTTP status and the server's message."""

    exit_status = EXIT_SOME_FAILED

    def __init__(self, service: str, status: int, message: str) -> None:
        super().__init__(f"{service} answered {status}: {message}")
        self.service = service
        self.status = status
        self.message = message


class TransportFailure(DgprovError):
    """A service could not be reached after the retries allowed."""

    exit_status = EXIT_SOME_FAILED
