"""``dgprov demo``: both jobs on the embedded sandbox, with no prompt and no secret shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dgprov.cli import main


@pytest.mark.parametrize("line", ["1.6", "2.0"])
def test_demo_runs_both_jobs_without_showing_a_token(line: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["demo", "--defguard-version", line], env={"DGPROV_CACHE_DIR": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert "provisioned" in result.output and "ambiguous" in result.output
    assert "keys enrollment_url, enrollment_token (mode 600)" in result.output
    assert "Client Ready: jdoe is enrolled at Contoso VPN" in result.output
    assert "HQ.conf (mode 600)" in result.output and "needs internal MFA" in result.output
    assert not re.search(r"(?<![A-Za-z0-9])[A-Za-z0-9]{32}(?![A-Za-z0-9])", result.output)
    assert "turns off MFA at activation" in result.output
    assert_config_shown_masked(result.output)
    assert not list(tmp_path.iterdir())  # the demo keeps its sign-in in memory only


WIREGUARD_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def assert_config_shown_masked(output: str) -> None:
    """The configuration is shown as wg-quick reads it, with the private key hidden."""
    assert "[Interface]" in output and "[Peer]" in output and "Endpoint = " in output
    assert "PrivateKey = (hidden)" in output
    keys = [line for line in output.splitlines() if WIREGUARD_KEY.search(line)]
    assert keys and all(line.strip().startswith("PublicKey = ") for line in keys)


def test_demo_broker_reaches_client_ready_with_no_stored_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--broker"], env={"DGPROV_CACHE_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "dgprov broker --url" in result.output
    assert "fetch-config --source broker" in result.output and "no directory role" in result.output
    assert "generate-tokens" not in result.output  # nothing is issued ahead, nothing stored
    assert "keys enrollment_url, enrollment_token (mode 600)" in result.output
    assert "Client Ready: jdoe is enrolled at Contoso VPN" in result.output
    (audit,) = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert audit["outcome"] == "provisioned" and audit["defguard_username"] == "jdoe"
    shown = result.output.replace(audit["request_id"], "")  # 32 hex digits, but no secret
    assert not re.search(r"(?<![A-Za-z0-9])[A-Za-z0-9]{32}(?![A-Za-z0-9])", shown)
    assert "eyJ" not in result.output  # no access token (a JWT) either
    assert_config_shown_masked(result.output)
    assert not list(tmp_path.iterdir())
