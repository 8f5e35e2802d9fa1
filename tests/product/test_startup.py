"""Start-up cost: what the command line loads before it knows which directory it will use."""

from __future__ import annotations

import subprocess
import sys

ENTRA_SIGN_IN = ("msal", "requests")


def test_the_command_line_loads_no_entra_sign_in_library_until_it_signs_in() -> None:
    """msal and requests are half of dgprov's start-up time; an Active Directory run, the
    client's fetch from AD or a cached config, and ``--help`` never need them."""
    program = (
        "import sys, dgprov.cli, dgprov.api, dgprov.ldap_directory, dgprov.entra_auth\n"
        f"print(sorted(m for m in {ENTRA_SIGN_IN!r} if m in sys.modules))\n"
        "import msal\n"  # the check can fail: the library is there to load
        f"print(sorted(m for m in {ENTRA_SIGN_IN!r} if m in sys.modules))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert shown == ["[]", "['msal', 'requests']"]
