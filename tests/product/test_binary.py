"""The single-file executable (``make dist``) runs the client job against the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import REPO, StartSandbox
from .test_fetch_config import provision

BINARY = REPO / "dist" / "dgprov"


@pytest.mark.skipif(not BINARY.exists(), reason="build it first with: make dist (make test does)")
def test_binary_fetches_the_config(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    running = start_sandbox(synthetic_tenant(2, 31))
    provision(running, tmp_path)
    info = running.info
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = info["user_upns"][0]
    output = tmp_path / "provisioning.json"
    completed = subprocess.run(
        [
            str(BINARY),
            "fetch-config",
            "--source",
            "entra",
            "--tenant",
            info["tenant_id"],
            "--client-id",
            info["client_id"],
            "--authority",
            info["authority_url"],
            "--graph-url",
            info["graph_url"],
            "--ca-bundle",
            info["ca_bundle"],
            "--auth",
            "device-code",
            "--output",
            str(output),
        ],
        env={**os.environ, "DGPROV_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(output.read_text())
    assert set(document) == {"enrollment_url", "enrollment_token"}
    assert document["enrollment_token"] not in completed.stdout + completed.stderr


@pytest.mark.skipif(not BINARY.exists(), reason="build it first with: make dist (make test does)")
def test_binary_carries_no_emulator_and_says_how_to_get_one() -> None:
    """What goes to every desktop holds no fake authority, no web server and no emulator."""
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(BINARY))
    modules = list(archive.open_embedded_archive("PYZ.pyz").toc)
    packages = {name.split(".")[0] for name in modules}
    assert "dgprov" in packages and "msal" in packages  # the listing is the product's
    assert packages.isdisjoint({"dgprov_sandbox", "uvicorn", "starlette", "jsonschema"})
    for command in (["sandbox"], ["sandbox", "--help"], ["demo"]):
        completed = subprocess.run(
            [str(BINARY), *command], capture_output=True, text=True, timeout=60
        )
        assert completed.returncode == 2, completed.stderr
        assert completed.stderr.count("\n") == 1
        assert "dgprov-sandbox package is not installed" in completed.stderr
        assert "pip install ./sandbox" in completed.stderr
