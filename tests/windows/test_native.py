"""Runs ``native/`` with Windows CPython under Wine, against a sandbox and a slapd started here.

Windows CPython imports the product from ``src`` (the same sources the exe is built from) with
the hash-locked Windows wheels the build installed in the prefix. Its JUnit file,
``build/windows/lane/native.xml``, is what ``lane.py`` counts; here every test in it must pass:
a skipped Windows test would be one more guess.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import wine_prefix  # packaging/windows, put on the path by conftest.py
from dgprov_sandbox.tenant import synthetic_tenant

from ..conftest import ADMIN_TOKEN, REPO, StartSandbox
from ..product.test_fetch_config import TOKEN, VALUE, provision, slapd, stored_values
from ..slapd import PROVISIONER_DN, PROVISIONER_PASSWORD, USERS_DN, Slapd
from .lane import NATIVE as NATIVE_REPORT
from .lane import counts

__all__ = ["slapd"]

NATIVE = REPO / "tests" / "windows" / "native"
NATIVE_SECONDS = 600.0


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_product_under_windows_cpython(
    start_sandbox: StartSandbox, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    running = start_sandbox(synthetic_tenant(2, 31))
    provision(running, tmp_path)
    upn = running.info["user_upns"][0]
    entra_token = stored_values(running, upn)["EnrollmentToken"]  # signs the admin in
    assert running.sandbox.entra is not None
    running.sandbox.entra.auto_approve_upn = upn  # Windows CPython's device code sign-in
    # Windows runners have no slapd: there the native AD test says so (lane.py allows that skip).
    slapd: Slapd | None = None if wine_prefix.ON_WINDOWS else request.getfixturevalue("slapd")
    if slapd is not None:
        slapd.add_user(
            "Native", "winenative", "native@corp.example", defguardProvisioningConfig=VALUE
        )
    info = {
        key: running.info[key]
        for key in ("tenant_id", "client_id", "authority_url", "graph_url", "defguard_url")
    }
    info |= {
        "ca_bundle": wine_prefix.windows_path(running.info["ca_bundle"]),
        "entra_token_sha256": sha256(entra_token),
        "ldap_url": slapd.url if slapd is not None else None,
        "base_dn": USERS_DN,
        "bind_dn": PROVISIONER_DN,
        "bind_password": PROVISIONER_PASSWORD,  # the throwaway slapd's; no real secret
        "sam_account_name": "winenative",
        "ad_token_sha256": sha256(TOKEN),
    }
    lane_info = tmp_path / "lane.json"
    descriptor = os.open(lane_info, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    NATIVE_REPORT.parent.mkdir(parents=True, exist_ok=True)
    NATIVE_REPORT.unlink(missing_ok=True)
    completed = wine_prefix.run(
        [
            wine_prefix.PYTHON, "-m", "pytest",
            "-c", wine_prefix.windows_path(NATIVE / "pytest.ini"),
            "--rootdir", wine_prefix.windows_path(NATIVE),
            "--confcutdir", wine_prefix.windows_path(NATIVE),
            "--junitxml", wine_prefix.windows_path(NATIVE_REPORT),
            "-q", wine_prefix.windows_path(NATIVE),
        ],
        extra_environment={
            "PYTHONPATH": wine_prefix.windows_path(REPO / "src"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "DGPROV_LANE_INFO": wine_prefix.windows_path(lane_info),
        },
        timeout=NATIVE_SECONDS,
        cwd=REPO,
    )  # fmt: skip
    shown = completed.stdout + completed.stderr
    print(completed.stdout[-3000:])
    assert completed.returncode == 0, shown[-8000:]
    ran = counts(NATIVE_REPORT)
    assert ran["ran"] > 0, "Windows CPython ran no test"
    assert ran["failed"] == 0, ran
    assert ran["skipped"] == (1 if slapd is None else 0), ran
    for secret in (entra_token, TOKEN, ADMIN_TOKEN):
        assert secret not in shown, "a token reached the Windows tests' output"
