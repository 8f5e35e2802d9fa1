"""What the Linux side started for these tests: ``DGPROV_LANE_INFO`` names a JSON file with the
sandbox's and slapd's addresses, and the SHA-256 of the tokens stored there (never the tokens).

These tests run under Windows CPython only, import the product from ``src`` and nothing from the
rest of ``tests``; the sandbox stays on the Linux side.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.platform != "win32":
    raise RuntimeError("these tests run under Windows CPython: make test-windows")


@pytest.fixture(scope="session")
def lane() -> dict[str, Any]:
    path = os.environ.get("DGPROV_LANE_INFO")
    if not path:
        pytest.fail("DGPROV_LANE_INFO is not set: run these tests with make test-windows")
    info: dict[str, Any] = json.loads(Path(path).read_text("utf-8"))
    return info


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or leaves a sign-in cache in the Wine account's profile by accident."""
    monkeypatch.setenv("DGPROV_CACHE_DIR", str(tmp_path / "sign-in-cache"))
