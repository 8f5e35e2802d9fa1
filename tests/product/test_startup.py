"""Start-up cost: what the command line loads before it knows which directory it will use."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("cryptography", "msal", "requests")


def test_the_command_line_loads_no_sign_in_or_key_library_until_it_needs_one() -> None:
    """msal, requests and cryptography were half of dgprov's start-up time; an Active Directory
    run, the client's fetch from AD or a cached config, and ``--help`` never need them."""
    program = (
        "import sys, dgprov.cli, dgprov.api, dgprov.ldap_directory, dgprov.entra_auth\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        # The check can fail: signing in and making a WireGuard key do load them.
        "import msal\n"
        "from dgprov.device_files import new_key_pair\n"
        "assert new_key_pair().public\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert shown == ["[]", "['cryptography', 'msal', 'requests']"]
