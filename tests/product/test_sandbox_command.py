"""The ``dgprov`` entry point itself, and ``dgprov sandbox`` / ``dgprov demo`` with and without
the dgprov-sandbox package."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Runs dgprov's CLI in a fresh interpreter where ``dgprov_sandbox`` cannot be imported, as on a
# machine where only the product was installed.
WITHOUT_SANDBOX = """
import sys
from importlib.abc import MetaPathFinder

class NoSandbox(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "dgprov_sandbox":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoSandbox())
from dgprov.cli import main
main(sys.argv[1:], prog_name="dgprov")
"""


def run_without_sandbox(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SANDBOX, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", [["sandbox"], ["sandbox", "--users", "3"], ["demo"]])
def test_without_the_package_one_line_says_how_to_install_it(command: list[str]) -> None:
    completed = run_without_sandbox(*command)
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"dgprov {command[0]}: error: the dgprov-sandbox package")
    assert "pip install ./sandbox" in lines[0]


def test_the_other_commands_work_without_the_package() -> None:
    completed = run_without_sandbox("enroll", "--provisioning-file", "/nonexistent/p.json")
    assert completed.returncode == 2
    assert "does not exist; run dgprov fetch-config first" in completed.stderr


def test_with_the_package_dgprov_sandbox_hands_over_its_options() -> None:
    """``dgprov sandbox --help`` is the sandbox's own help, so no option list is kept twice."""
    help_text = subprocess.run(
        [sys.executable, "-m", "dgprov", "sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert help_text.startswith("Usage: dgprov sandbox [OPTIONS]")
    assert "--defguard-version" in help_text and "--auto-approve-as" in help_text
    refused = subprocess.run(
        [sys.executable, "-m", "dgprov", "sandbox", "--users", "2", "--tenant", "t.json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "conflict" in refused.stderr
    assert json.dumps("api_token") not in refused.stdout  # it never got as far as starting


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dgprov", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("dgprov, version ")
