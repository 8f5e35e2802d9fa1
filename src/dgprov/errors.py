"""dgprov's exception hierarchy and exit statuses: every failure an administrator can see.

Messages are written for the person running the command: one line naming the problem and the
fix. None may contain a secret; values that could be one are never interpolated. The CLI has one
handler for all of them (``cli.py``): it prints ``dgprov <command>: error: <message>`` and exits
with the error's ``exit_status``. Library callers catch ``DgprovError``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1  # some members failed; nothing found for this user; the server refused
EXIT_USAGE = 2  # bad input, a failed preflight or sign-in: nothing was changed
EXIT_NOT_JOINED = 3  # fetch-config --strict on a machine joined to nothing


class DgprovError(Exception):
    """Base class; ``exit_status`` is what the CLI exits with."""

    exit_status = EXIT_USAGE


class UsageError(DgprovError):
    """Bad options or input files; nothing was changed."""


class PreflightError(DgprovError):
    """A check before any change failed (reachability, licence, group, attributes…)."""


class AuthenticationError(DgprovError):
    """Signing in to Entra ID, Active Directory or Defguard failed."""


class Cancelled(DgprovError):
    """The person at the terminal declined the confirmation; nothing was changed."""

    exit_status = EXIT_SOME_FAILED


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


class NothingFound(DgprovError):
    """The client job found no usable configuration for this user."""

    exit_status = EXIT_SOME_FAILED


class InvalidProvisioningValue(DgprovError):
    """A stored or written value the desktop client could not use; never contains the token."""

    exit_status = EXIT_SOME_FAILED


class EnrollmentRefused(DgprovError):
    """The enrollment proxy refused; the message says what the token's holder can do."""

    exit_status = EXIT_SOME_FAILED


class NotJoined(DgprovError):
    """``fetch-config --strict`` on a machine joined neither to AD nor to Entra ID."""

    exit_status = EXIT_NOT_JOINED


class UnsafePath(UsageError):
    """A place dgprov would write through is a link (or a junction) or not what it should be;
    nothing was written and nothing was followed."""


class WrongAccount(AuthenticationError):
    """The account signed in (or the AD account named) is not the user the file is for; its
    token was not used and nothing was written."""


class InvalidAnswer(RemoteError):
    """A service answered, but with something dgprov cannot use: not JSON, a field missing or of
    the wrong type, a page count that never ends, an answer too large. The message names the
    service and the field; it never quotes the answer, which could hold a token."""


class OriginRefused(DgprovError):
    """A service's answer pointed at another scheme, host or port; the credentials of that
    service are never sent anywhere but to the origin they were configured for."""

    exit_status = EXIT_SOME_FAILED


class ReportNotWritten(DgprovError):
    """The final report could not be written after tokens were issued; the message says which
    earlier version of it is on disk and what this run did."""

    exit_status = EXIT_SOME_FAILED


class InvalidWireGuardConfig(DgprovError):
    """A WireGuard configuration from the enrollment proxy holds a key dgprov does not write
    (a command hook such as PostUp, or any key it does not know) or a value that does not parse."""

    exit_status = EXIT_SOME_FAILED


class IncompleteEnrollment(DgprovError):
    """The device is registered but not every WireGuard file was written; the private key is kept
    in a 0600 file and running ``dgprov enroll`` again reuses the same device."""

    exit_status = EXIT_SOME_FAILED


class MfaSetupRequired(DgprovError):
    """Defguard requires multi-factor authentication to be set up during activation, which only
    the desktop app does; refused after the session started and before any device exists."""

    exit_status = EXIT_SOME_FAILED


class AlreadyRunning(DgprovError):
    """Another ``dgprov sync`` or ``generate-tokens`` holds the admin jobs' lock; nothing was
    done (exit 2). The message names the holder and what to do."""
