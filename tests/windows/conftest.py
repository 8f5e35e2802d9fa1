"""The Windows lane's Linux side: ``dgprov.exe`` and Windows CPython run under Wine, against the
sandbox, slapd and ``dgprov broker`` started here on 127.0.0.1 by the usual fixtures.

Not part of the default test run (``tests/conftest.py`` leaves this folder out): ``make
test-windows`` runs it through ``tests/windows/lane.py``, after ``make windows`` has built the
exe and the prefix. ``native/`` holds the tests that Windows CPython itself runs; they import
nothing from here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from ..conftest import REPO

sys.path.insert(0, str(REPO / "packaging" / "windows"))
import wine_prefix

collect_ignore = ["native"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "posix_services: needs slapd or a POSIX broker process, which Windows runners lack",
    )


EXE_SECONDS = 180.0  # one run of dgprov.exe under Wine: seconds normally, minutes never


@pytest.fixture(scope="session", autouse=True)
def wine_server() -> Iterator[None]:
    """One Wine server for the whole lane (each program would otherwise start its own)."""
    if not wine_prefix.EXE.exists() or not wine_prefix.PYTHON.exists():
        pytest.fail(f"no {wine_prefix.EXE.relative_to(REPO)}: build it with make windows")
    wine_prefix.keep_server_running()
    yield
    wine_prefix.stop_server()


def wine_state() -> list[Path]:
    """What dgprov and the Defguard client keep for the Wine account, seen from Linux."""
    return [
        wine_prefix.roaming_app_data() / "net.defguard",
        wine_prefix.local_app_data() / "dgprov",
        wine_prefix.program_data() / "dgprov",
    ]


@pytest.fixture(autouse=True)
def clean_wine_account() -> Iterator[None]:
    """The prefix is the build's and outlives the lane: each test starts and ends with none of
    dgprov's or the Defguard client's state in it."""
    for path in wine_state():
        shutil.rmtree(path, ignore_errors=True)
    yield
    for path in wine_state():
        shutil.rmtree(path, ignore_errors=True)


def run_exe(
    *arguments: str, environment: Mapping[str, str] | None = None, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``dgprov.exe`` with ``arguments``, as the Wine account, its output captured."""
    return wine_prefix.run(
        [wine_prefix.EXE, *arguments],
        extra_environment=environment,
        timeout=EXE_SECONDS,
        input_text=input_text,
    )
