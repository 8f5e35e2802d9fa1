"""The client job as a library under Windows CPython, against the sandbox and slapd on the
Linux side: MSAL's device code sign-in, Graph, LDAP, TLS with the sandbox's CA."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from dgprov import api, client_files
from dgprov.entra_auth import EntraSettings
from tests.windows.native.windows_host import running_under_wine

NO_SLAPD = "no slapd on a Windows runner: the AD read runs in the Wine lane"
WINE_BLOB = b"\x01\x00\x00\x00Wine Crypt32"
# CRYPTPROTECT's blob: dwVersion 1, then the provider GUID {df9d8cd0-1501-11d1-8c7a-00c04fc297eb}.
DPAPI_BLOB = bytes.fromhex("01000000d08c9ddf0115d1118c7a00c04fc297eb")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_entra_sign_in_reads_the_stored_token(lane: dict[str, Any], tmp_path: Path) -> None:
    output = tmp_path / "provisioning.json"
    entra = EntraSettings(
        tenant=lane["tenant_id"],
        client_id=lane["client_id"],
        authority=lane["authority_url"],
        graph_url=lane["graph_url"],
        ca_bundle=lane["ca_bundle"],
        auth="device-code",
    )
    api.fetch_config(source="entra", entra=entra, ca_bundle=lane["ca_bundle"], output=output)
    config = client_files.read(output)
    assert sha256(config.enrollment_token) == lane["entra_token_sha256"]
    cache_files = [path for path in (tmp_path / "sign-in-cache").iterdir() if path.is_file()]
    assert cache_files
    header = WINE_BLOB if running_under_wine() else DPAPI_BLOB
    for path in cache_files:
        data = path.read_bytes()
        assert data.startswith(header), f"{path.name} is not a DPAPI blob"
        assert b"refresh_token" not in data


def test_ad_reads_the_attribute(lane: dict[str, Any], tmp_path: Path) -> None:
    if lane["ldap_url"] is None:
        pytest.skip(NO_SLAPD)
    output = tmp_path / "provisioning.json"
    api.fetch_config(
        source="ad",
        ldap_url=lane["ldap_url"],
        base_dn=lane["base_dn"],
        bind_dn=lane["bind_dn"],
        bind_password=lane["bind_password"],
        sam_account_name=lane["sam_account_name"],
        output=output,
    )
    assert sha256(client_files.read(output).enrollment_token) == lane["ad_token_sha256"]
