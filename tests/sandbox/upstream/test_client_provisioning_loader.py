"""Ports of the desktop client's ``provisioning.json`` loader (DefGuard/client).

The loader is Rust inside the client (v1.6.9:src-tauri/src/enterprise/provisioning/mod.rs:8-72;
the same code moved to the crate src-tauri/enterprise/provisioning/src/lib.rs on ``dev``, commit
60d84dd8, which adds unit tests). It has no server side: it reads a file. So its assertions are
ported as tests of ``read_provisioning``, a reader in this module that behaves as the loader
does, and the file it reads is made from a real sandbox ``start_enrollment`` answer in the shape
the client's Windows script writes (Get-ProvisioningConfig.ps1:92); the last test then takes the
client's next step against the sandbox proxy (src/shared/hooks/useAddInstance.ts:22-58).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ...conftest import Running

CONFIG_FILE_NAME = "provisioning.json"  # mod.rs:8


@dataclass(frozen=True)
class ProvisioningConfig:
    """``ProvisioningConfig`` (mod.rs:10-14): two required strings, unknown keys ignored."""

    enrollment_url: str
    enrollment_token: str

    def __repr__(self) -> str:
        """The ``Debug`` impl (mod.rs:16-28) redacts the token."""
        return (
            f'ProvisioningConfig {{ enrollment_url: "{self.enrollment_url}", '
            'enrollment_token: "***" }'
        )


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    for field in ("enrollment_url", "enrollment_token"):
        if names.count(field) > 1:
            raise _Refused(f"duplicate field `{field}`")  # serde_derive
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")  # serde_json has no NaN/Infinity


def _check_strings(value: Any) -> None:
    """serde_json refuses lone surrogates in ``\\u`` escapes, even in ignored keys."""
    if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
        raise _Refused("lone surrogate")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    if isinstance(value, list):
        for item in value:
            _check_strings(item)


def read_provisioning(directory: Path) -> ProvisioningConfig | None:
    """``try_get_provisioning_config`` (mod.rs:64-72) and ``ProvisioningConfig::load`` (:32-60):
    UTF-8 only (``fs::read_to_string``), every leading U+FEFF stripped (``trim_start_matches``),
    then ``serde_json::from_str``; any failure is a logged warning and None."""
    try:
        text = (directory / CONFIG_FILE_NAME).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    text = text.lstrip("\ufeff")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
        _check_strings(value)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, list):  # serde_derive also reads a struct from a sequence
        if len(value) != 2:
            return None
        value = {"enrollment_url": value[0], "enrollment_token": value[1]}
    if not isinstance(value, dict):
        return None
    url, token = value.get("enrollment_url"), value.get("enrollment_token")
    if not isinstance(url, str) or not isinstance(token, str):
        return None
    return ProvisioningConfig(url, token)


def write(directory: Path, content: str | bytes) -> Path:
    path = directory / CONFIG_FILE_NAME
    if isinstance(content, str):
        path.write_text(content, "utf-8")
    else:
        path.write_bytes(content)
    return path


def test_load_valid_config(tmp_path: Path) -> None:
    """dev@60d84dd8:src-tauri/enterprise/provisioning/src/lib.rs:78."""
    write(tmp_path, '{"enrollment_url":"https://enroll","enrollment_token":"secret"}')
    assert read_provisioning(tmp_path) == ProvisioningConfig("https://enroll", "secret")


def test_missing_file_returns_none(tmp_path: Path) -> None:
    """dev@60d84dd8:src-tauri/enterprise/provisioning/src/lib.rs:92."""
    assert read_provisioning(tmp_path) is None


def test_malformed_json_returns_none(tmp_path: Path) -> None:
    """dev@60d84dd8:src-tauri/enterprise/provisioning/src/lib.rs:98."""
    write(tmp_path, b"{ not valid json")
    assert read_provisioning(tmp_path) is None


def test_bom_prefixed_config_parses(tmp_path: Path) -> None:
    """dev@60d84dd8:src-tauri/enterprise/provisioning/src/lib.rs:105."""
    write(tmp_path, '\ufeff{"enrollment_url":"https://enroll","enrollment_token":"secret"}')
    assert read_provisioning(tmp_path) == ProvisioningConfig("https://enroll", "secret")


def test_debug_redacts_token() -> None:
    """dev@60d84dd8:src-tauri/enterprise/provisioning/src/lib.rs:119."""
    rendered = repr(ProvisioningConfig("https://enroll", "super-secret"))
    assert "***" in rendered and "super-secret" not in rendered
    assert "https://enroll" in rendered


@pytest.mark.parametrize(
    ("content", "loads"),
    [
        ('\ufeff\ufeff{"enrollment_url":"u","enrollment_token":"t"}', True),  # every BOM
        (' \ufeff{"enrollment_url":"u","enrollment_token":"t"}', False),  # BOM not first
        ('{"enrollment_url":"u","enrollment_token":"t","userPrincipalName":"x"}', True),
        ('{"enrollmentUrl":"u","enrollmentToken":"t"}', False),  # AD's camelCase keys
        ('{"enrollment_url":"u"}', False),
        ('{"enrollment_url":"u","enrollment_token":null}', False),
        ('{"enrollment_url":"u","enrollment_token":42}', False),
        ('{"enrollment_url":"u","enrollment_url":"v","enrollment_token":"t"}', False),
        ('{"enrollment_url":"u","enrollment_token":"t"} trailing', False),
        ('{"enrollment_url":"u","enrollment_token":"t","x":NaN}', False),
        ('{"enrollment_url":"u","enrollment_token":"t","x":"\\ud800"}', False),
        ('["u","t"]', True),
        ('{"enrollment_url":"u","enrollment_token":"t"}\r\n', True),
    ],
)
def test_load_parses_like_serde(tmp_path: Path, content: str, loads: bool) -> None:
    """v1.6.9:src-tauri/src/enterprise/provisioning/mod.rs:47-49: ``trim_start_matches`` of
    U+FEFF, then ``serde_json::from_str::<ProvisioningConfig>`` (no ``deny_unknown_fields``)."""
    write(tmp_path, content)
    assert (read_provisioning(tmp_path) is not None) is loads


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "latin-1"])
def test_load_reads_utf8_only(tmp_path: Path, encoding: str) -> None:
    """v1.6.9:src-tauri/src/enterprise/provisioning/mod.rs:34 (``fs::read_to_string``):
    Windows PowerShell's default UTF-16 fails, and so does any non-UTF-8 byte."""
    write(tmp_path, '{"enrollment_url":"ü","enrollment_token":"t"}'.encode(encoding))
    assert read_provisioning(tmp_path) is None


def test_file_from_a_sandbox_token_starts_an_enrollment(sandbox: Running, tmp_path: Path) -> None:
    """The file as Get-ProvisioningConfig.ps1:92 writes it (``ConvertTo-Json`` then
    ``Out-File -Encoding UTF8``: a BOM, indented, CRLF) from a real ``start_enrollment``
    answer loads, and the client's next step works against the sandbox proxy: one trailing
    ``/`` stripped, ``/api/v1`` appended, ``POST /enrollment/start``, a ``defguard_proxy``
    cookie required (v1.6.9:src/shared/hooks/useAddInstance.ts:22-58)."""
    issued = sandbox.core.post("/api/v1/user/jdoe/start_enrollment", json={}).json()
    pretty = json.dumps(
        {
            "enrollment_url": issued["enrollment_url"],
            "enrollment_token": issued["enrollment_token"],
        },
        indent=4,
    ).replace("\n", "\r\n")
    write(tmp_path, ("\ufeff" + pretty + "\r\n").encode("utf-8"))
    config = read_provisioning(tmp_path)
    assert config is not None and config.enrollment_token == issued["enrollment_token"]
    proxy_url = config.enrollment_url
    if proxy_url.endswith("/"):
        proxy_url = proxy_url[:-1]
    response = sandbox.proxy.post(
        f"{proxy_url}/api/v1/enrollment/start", json={"token": config.enrollment_token}
    )
    assert response.status_code == 200
    assert response.headers["set-cookie"].startswith("defguard_proxy=")
    assert response.json()["user"]["enrolled"] is False  # the client goes on to enroll
