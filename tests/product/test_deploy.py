"""``deploy/``: the container image and the Kubernetes manifest agree with each other and with
the real ``dgprov broker`` command (an option it lacks would crash-loop every replica)."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from dgprov.cli import main

from ..broker_fixtures import broker_process
from ..conftest import REPO, StartSandbox, make_certificate

DEPLOY = REPO / "deploy"
SECRET_VARIABLES = {"DEFGUARD_API_TOKEN", "DGPROV_CLIENT_SECRET"}


def documents() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text("utf-8"))
    return {document["kind"]: document for document in loaded if document}


def container() -> dict[str, Any]:
    (only,) = documents()["Deployment"]["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = only
    return found


def dockerfile() -> list[tuple[str, str]]:
    """The final stage's instructions, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text("utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    instructions = [tuple(line.split(None, 1)) for line in lines if line and line[0] != "#"]
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return [(keyword, rest) for keyword, rest in instructions[last_from:]]


def instruction(keyword: str) -> str:
    (found,) = [rest for name, rest in dockerfile() if name == keyword]
    return found


def broker_help_options() -> set[str]:
    result = CliRunner().invoke(main, ["broker", "--help"])
    assert result.exit_code == 0, result.output
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", result.output))


def options_of(arguments: list[str]) -> set[str]:
    return {argument.split("=", 1)[0] for argument in arguments if argument.startswith("--")}


def test_two_replicas_behind_a_service_with_probes() -> None:
    kinds = documents()
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    broker = container()
    (port,) = broker["ports"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        check = broker[probe]["httpGet"]
        assert (check["path"], check["port"], check["scheme"]) == (path, port["name"], "HTTPS")
    service = kinds["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_secrets_come_from_a_secret_never_from_the_manifest() -> None:
    broker = container()
    variables = {variable["name"]: variable for variable in broker["env"]}
    for name in SECRET_VARIABLES:
        assert "value" not in variables[name], name
        reference = variables[name]["valueFrom"]["secretKeyRef"]
        assert reference["name"] and reference["key"]
    arguments = broker["args"]
    assert not options_of(arguments) & {"--api-token", "--client-secret"}
    mounts = {mount["name"]: mount for mount in broker["volumeMounts"]}
    volumes = {
        volume["name"]: volume
        for volume in documents()["Deployment"]["spec"]["template"]["spec"]["volumes"]
    }
    tls = volumes[mounts["tls"]["name"]]["secret"]
    assert tls["secretName"] and mounts["tls"]["readOnly"] is True
    assert f"--tls-cert={mounts['tls']['mountPath']}/tls.crt" in arguments
    assert f"--tls-key={mounts['tls']['mountPath']}/tls.key" in arguments


def test_non_root_read_only_and_limited() -> None:
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    broker = container()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"]
    context = broker["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= broker["resources"]["limits"].keys()
    # Whatever the broker writes (the sign-in cache) goes to the writable /tmp volume.
    cache = next(v["value"] for v in broker["env"] if v["name"] == "DGPROV_CACHE_DIR")
    assert any(
        cache.startswith(m["mountPath"]) for m in broker["volumeMounts"] if m["name"] == "tmp"
    )


def test_the_image_runs_the_broker_as_a_non_root_user() -> None:
    user = instruction("USER").split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(instruction("ENTRYPOINT")) == ["dgprov", "broker"]
    install = next(rest for name, rest in dockerfile() if name == "RUN" and "pip install" in rest)
    assert "'dgprov[broker]'" in install
    assert "broker" in (metadata("dgprov").get_all("Provides-Extra") or [])
    listen = json.loads(instruction("CMD"))
    port = listen[listen.index("--listen") + 1].rsplit(":", 1)[1]
    assert instruction("EXPOSE") == port == str(container()["ports"][0]["containerPort"])
    health = instruction("HEALTHCHECK")
    assert f"https://127.0.0.1:{port}/healthz" in health


def test_every_option_used_exists_in_dgprov_broker() -> None:
    known = broker_help_options()
    assert "--listen" in known  # the help was read
    used = options_of(json.loads(instruction("CMD"))) | options_of(container()["args"])
    assert used <= known, used - known


def test_the_image_health_check_works_against_the_tls_broker(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """The HEALTHCHECK command, run as written (only the port changed) against a real
    ``dgprov broker`` serving TLS: healthy while it serves, unhealthy once it is gone."""
    key, certificate = make_certificate("dgprov-broker.contoso.example")
    (tmp_path / "tls.key").write_text(key)
    (tmp_path / "tls.crt").write_text(certificate)
    command = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1])
    port = json.loads(instruction("CMD"))[1].rsplit(":", 1)[1]
    running = start_sandbox()
    tls = ("--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key"))
    with broker_process(running, *tls) as broker:
        assert broker.url.startswith("https://127.0.0.1:")
        served = broker.url.rsplit(":", 1)[1]
        probe = [part.replace(f"127.0.0.1:{port}", f"127.0.0.1:{served}") for part in command]
        healthy = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert healthy.returncode == 0, healthy.stderr
    gone = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert gone.returncode != 0
