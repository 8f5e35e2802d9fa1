"""``python -m dgprov_sandbox`` as an administrator runs it: a subprocess printing one JSON line.

The sandbox's own entry point (``dgprov-sandbox`` and ``dgprov sandbox`` run the same command);
only ``test_dgprov_version`` starts the product.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from ..conftest import example_tenant, public_client
from .conftest import sandbox_process

SANDBOX = [sys.executable, "-m", "dgprov_sandbox"]
READY_TIMEOUT = 20.0


def test_users_1_6_group_by_name_works() -> None:
    with sandbox_process("--users", "20", "--defguard-version", "1.6") as info:
        assert {"defguard_url", "proxy_url", "api_token", "defguard_version", "group_name"} <= set(
            info
        )
        assert info["defguard_version"] == "1.6"
        headers = {"Authorization": f"Bearer {info['api_token']}"}
        response = httpx.get(
            f"{info['defguard_url']}/api/v1/group/{info['group_name']}", headers=headers
        )
        assert response.status_code == 200
        assert len(response.json()["members"]) == 20


def test_users_2_0_refuses_group_names() -> None:
    with sandbox_process("--users", "20") as info:
        assert info["defguard_version"] == "2.0"
        headers = {"Authorization": f"Bearer {info['api_token']}"}
        response = httpx.get(
            f"{info['defguard_url']}/api/v1/group/{info['group_name']}", headers=headers
        )
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/plain")


def test_tokens_issued_by_a_synthetic_tenant_work_end_to_end() -> None:
    with sandbox_process("--users", "3", "--seed", "5") as info:
        core = httpx.Client(
            base_url=info["defguard_url"], headers={"Authorization": f"Bearer {info['api_token']}"}
        )
        issued = core.post("/api/v1/user/user0002/start_enrollment", json={}).json()
        assert issued["enrollment_url"] == info["proxy_url"] + "/"
        start = httpx.post(
            issued["enrollment_url"].rstrip("/") + "/api/v1/enrollment/start",
            json={"token": issued["enrollment_token"]},
        )
        assert start.status_code == 200


def test_tenant_file(tmp_path: Path) -> None:
    tenant = tmp_path / "tenant.json"
    tenant.write_text(json.dumps(example_tenant()), "utf-8")
    with sandbox_process("--tenant", str(tenant)) as info:
        assert "group_name" not in info
        assert info["api_token"] == example_tenant()["api_tokens"][0]["token"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SANDBOX, *args], capture_output=True, text=True, timeout=60)


def test_invalid_tenant_is_rejected_naming_the_field(tmp_path: Path) -> None:
    document = example_tenant()
    document["users"][2]["active"] = "yes"
    tenant = tmp_path / "tenant.json"
    tenant.write_text(json.dumps(document), "utf-8")
    result = run("--tenant", str(tenant))
    assert result.returncode != 0 and result.stdout == ""
    assert "$.users[2].active" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors() -> None:
    conflict = run("--users", "3", "--tenant", "x.json")
    assert conflict.returncode == 2 and "--tenant and --users conflict" in conflict.stderr
    public = run("--host", "0.0.0.0")
    assert public.returncode == 2 and "not a loopback address" in public.stderr
    rates = run("--error-rate", "0.7", "--drop-rate", "0.5")
    assert rates.returncode == 2 and "exceed 1" in rates.stderr


def test_port_in_use() -> None:
    with sandbox_process("--users", "1") as info:
        port = info["defguard_url"].rsplit(":", 1)[1]
        result = run("--users", "1", "--port", port)
        assert result.returncode == 1
        assert f"127.0.0.1:{port}" in result.stderr and "0 for a free one" in result.stderr


def test_help() -> None:
    help_text = run("--help").stdout
    assert help_text.startswith("Usage: python -m dgprov_sandbox [OPTIONS]")
    for option in (
        "--tenant",
        "--users",
        "--defguard-version",
        "--latency-ms",
        "--error-rate",
        "--seed",
    ):
        assert option in help_text


def test_entra_keys_in_the_ready_line() -> None:
    with sandbox_process("--users", "4", "--seed", "9", "--auto-approve-as", "admin") as info:
        for key in (
            "authority_url",
            "graph_url",
            "tenant_id",
            "client_id",
            "ca_bundle",
            "admin_upn",
        ):
            assert info[key], key
        assert (
            info["authority_url"]
            == f"{info['authority_url'].rsplit('/', 1)[0]}/{info['tenant_id']}"
        )
        assert info["authority_url"].startswith("https://127.0.0.1:")
        assert info["graph_url"].endswith("/v1.0")
        assert info["user_upns"] == [f"user000{n}@example.com" for n in range(1, 5)]
        assert Path(info["ca_bundle"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        app = public_client(info)
        result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=["User.Read"]))
        assert result["id_token_claims"]["preferred_username"] == info["admin_upn"]
    with sandbox_process("--users", "4", "--seed", "9") as again:
        assert again["tenant_id"] == info["tenant_id"] and again["user_upns"] == info["user_upns"]


def test_unknown_auto_approve_user() -> None:
    result = run("--users", "2", "--auto-approve-as", "nobody@example.com")
    assert result.returncode == 1 and "no Entra user with that UPN" in result.stderr


def test_switches_reach_the_emulators() -> None:
    """``--user-list-order``, ``--empty-attribute-patch`` and ``--csa-read-role`` (docs/sandbox.md
    "Decisions"); a bad value is a usage error."""
    from ..conftest import confidential_client, trust

    args = ("--users", "12", "--user-list-order", "unstable", "--empty-attribute-patch", "rejected")
    with sandbox_process(*args, "--csa-read-role", "administrator") as info:
        headers = {"Authorization": f"Bearer {info['api_token']}"}
        lists = [
            [
                u["username"]
                for u in httpx.get(f"{info['defguard_url']}/api/v1/user", headers=headers).json()[
                    "data"
                ]
            ]
            for _ in range(2)
        ]
        assert lists[0] != lists[1] and sorted(lists[0]) == sorted(lists[1])
        app = confidential_client(info, info["client_secret"])
        token = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        graph = httpx.Client(
            base_url=info["graph_url"],
            verify=trust(info),
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        empty = {
            "customSecurityAttributes": {
                "Defguard": {"@odata.type": "#microsoft.graph.customSecurityAttributeValue"}
            }
        }
        assert graph.patch(f"/users/{info['user_upns'][0]}", json=empty).status_code == 400
    wrong = run("--csa-read-role", "everyone")
    assert wrong.returncode == 2 and "--csa-read-role" in wrong.stderr
