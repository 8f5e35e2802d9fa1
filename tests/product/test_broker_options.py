"""``dgprov broker``'s options: listening (TLS, loopback rule, port 0), lifetimes, workers,
starting in-process, and what happens without the ``broker`` extra (also in the binary)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..broker_fixtures import broker_command, broker_environment, broker_process, broker_token
from ..conftest import REPO, Running, StartSandbox, example_tenant, trust

BINARY = REPO / "dist" / "dgprov"


def run_broker(
    running: Running, *extra: str, prefix: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A broker command expected to refuse before it listens."""
    command = broker_command(running, *extra)
    if prefix is not None:
        command = prefix + command[3:]
    return subprocess.run(
        command, env=broker_environment(running), capture_output=True, text=True, timeout=60
    )


def refused(completed: subprocess.CompletedProcess[str], words: str) -> None:
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert completed.stderr.startswith("dgprov broker: error: ")
    assert words in completed.stderr
    assert completed.stdout == ""


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--listen", "0.0.0.0:0"), "plain HTTP is served on loopback only"),
        (("--listen", "localhost"), "--listen 'localhost': give HOST:PORT"),
        (("--tls-cert", __file__), "--tls-cert and --tls-key go together"),
        (("--tls-cert", __file__, "--tls-key", __file__), "cannot serve HTTPS with them"),
        (("--token-lifetime", "forever"), "--token-lifetime 'forever'"),
        (("--token-lifetime", "0"), "--token-lifetime '0' is zero"),
    ],
)
def test_refusals_before_listening(
    start_sandbox: StartSandbox, extra: tuple[str, ...], words: str
) -> None:
    refused(run_broker(start_sandbox(example_tenant()), *extra), words)


@pytest.mark.parametrize(
    ("missing", "words"),
    [
        ("DEFGUARD_API_TOKEN", "no Defguard API token: set DEFGUARD_API_TOKEN"),
        ("DGPROV_CLIENT_SECRET", "no client secret: set DGPROV_CLIENT_SECRET"),
    ],
)
def test_secrets_come_from_the_environment_or_files(
    start_sandbox: StartSandbox, missing: str, words: str
) -> None:
    running = start_sandbox(example_tenant())
    environment = {k: v for k, v in broker_environment(running).items() if k != missing}
    completed = subprocess.run(
        broker_command(running),
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    refused(completed, words)


def test_https_with_tls_cert_and_key_on_any_address(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    tls = Path(running.info["ca_bundle"]).parent
    extra = ("--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key"))
    with broker_process(running, *extra) as broker:
        assert broker.url.startswith("https://127.0.0.1:")
        token = broker_token(running, "jdoe@contoso.example")
        response = httpx.post(
            f"{broker.url}/v1/provisioning",
            headers={"Authorization": f"Bearer {token}"},
            verify=trust(running.info),
        )
        assert response.status_code == 200, response.text


def test_token_lifetime_and_two_workers(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    with broker_process(running, "--token-lifetime", "30m", "--workers", "2") as broker:
        for upn, username in (
            ("jdoe@contoso.example", "jdoe"),
            ("mlopez@contoso.example", "mlopez"),
            ("sobrien@contoso.example", "obrien"),
        ):
            response = broker.post(broker_token(running, upn))
            assert response.status_code == 200, response.text
            (issued,) = running.tokens(username)
            assert issued["lifetime_seconds"] == 1800
        assert broker.get("/readyz").status_code == 200
        # Whichever worker answers the scrape, it counts all three (shared metrics).
        for _ in range(4):
            metrics = httpx.get(f"{broker.url}/metrics", headers={"Connection": "close"}).text
            assert 'dgprov_broker_requests_total{outcome="provisioned"} 3.0' in metrics


def test_without_the_broker_extra_it_says_how_to_install_it(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    blocked = (
        "import sys; sys.modules['starlette'] = None; from dgprov.cli import main; "
        "main(sys.argv[1:], prog_name='dgprov')"
    )
    refused(
        run_broker(running, prefix=[sys.executable, "-c", blocked]),
        "pip install 'dgprov[broker]'",
    )


@pytest.mark.skipif(not BINARY.exists(), reason="build it first with: make dist (make test does)")
def test_the_binary_has_no_broker_and_says_how_to_get_one(start_sandbox: StartSandbox) -> None:
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(BINARY))
    modules = list(archive.open_embedded_archive("PYZ.pyz").toc)
    packages = {name.split(".")[0] for name in modules}
    assert "dgprov" in packages  # the listing is the product's
    assert packages.isdisjoint({"starlette", "uvicorn", "prometheus_client", "uvloop"})
    running = start_sandbox(example_tenant())
    refused(run_broker(running, prefix=[str(BINARY)]), "pip install 'dgprov[broker]'")


def test_start_in_thread(start_sandbox: StartSandbox) -> None:
    """The in-process entry point (``start_in_thread``), as the demo starts it."""
    from dgprov.commands.demo import sandbox_broker

    running = start_sandbox(example_tenant())
    with sandbox_broker(running.info, group_name="vpn-users") as url:
        token = broker_token(running, "jdoe@contoso.example")
        response = httpx.post(
            f"{url}/v1/provisioning", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz")
