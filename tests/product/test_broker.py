"""``dgprov broker`` over real HTTP against the sandbox: who gets which token, who is refused
with which status, the rate limit, the operations endpoints and what the broker never reveals.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from dgprov_sandbox.http_common import FaultSettings

from dgprov import api
from dgprov.broker.decisions import AMBIGUOUS

from ..broker_fixtures import BrokerProcess, broker_command, broker_process, broker_token
from ..conftest import Running, StartSandbox, example_tenant, trust
from .test_broker_tokens import resigned


@pytest.fixture
def sandbox_and_broker(start_sandbox: StartSandbox) -> Iterator[tuple[Running, BrokerProcess]]:
    running = start_sandbox(example_tenant())
    with broker_process(running) as broker:
        yield running, broker


def provision(broker: BrokerProcess, token: str) -> httpx.Response:
    return broker.post(token)


def test_a_member_gets_a_fresh_start_enrollment_token(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    running, broker = sandbox_and_broker
    response = provision(broker, broker_token(running, "jdoe@contoso.example"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"enrollment_url", "enrollment_token"}
    assert body["enrollment_url"].rstrip("/") == running.info["proxy_url"].rstrip("/")
    (issued,) = running.tokens("jdoe")
    assert issued["issued_by"] == "start_enrollment"
    assert issued["lifetime_seconds"] == 3600  # --token-lifetime default 1h
    session = running.proxy.post(
        "/api/v1/enrollment/start", json={"token": body["enrollment_token"]}
    )
    assert session.status_code == 200, session.text
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert "defguard;dur=" in response.headers["server-timing"]


def test_mapping_through_other_mails_as_generate_tokens_does(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    """mlopez's Defguard address is only one of her Entra otherMails."""
    running, broker = sandbox_and_broker
    assert provision(broker, broker_token(running, "mlopez@contoso.example")).status_code == 200
    assert len(running.tokens("mlopez")) == 1


@pytest.mark.parametrize(
    ("upn", "status", "code"),
    [
        ("admin@contoso.example", 403, "not_in_group"),
        ("nora@contoso.example", 404, "no_defguard_user"),
        ("tess@contoso.example", 409, "ambiguous"),
        ("tom@contoso.example", 409, "ambiguous"),
    ],
)
def test_mapping_refusals(
    sandbox_and_broker: tuple[Running, BrokerProcess], upn: str, status: int, code: str
) -> None:
    running, broker = sandbox_and_broker
    response = provision(broker, broker_token(running, upn))
    assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert response.json()["message"]
    assert not any("start" in route for route in running.sandbox.core_requests)


def test_a_409_names_no_account_to_the_caller(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    """Tom has no Defguard account, but his mail is the address of member twin: he hears a
    fixed message, and the audit line tells the administrator which member and objects."""
    running, broker = sandbox_and_broker
    response = provision(broker, broker_token(running, "tom@contoso.example"))
    assert (response.status_code, response.json()["error"]) == (409, "ambiguous")
    assert response.json()["message"] == AMBIGUOUS
    (line,) = [a for a in broker.audit_lines() if a["status"] == 409]
    assert "twin" in line["detail"] and "a0000000-0000-4000-8000-000000000005" in line["detail"]


def test_disabled_accounts_are_refused(start_sandbox: StartSandbox) -> None:
    """dora is disabled in Defguard and in Entra (so she cannot sign in; her token is one that
    was issued before); with her Defguard account active, her Entra account still refuses."""
    tenant = example_tenant()
    dora_record = next(u for u in tenant["users"] if u.get("username") == "dora")
    running = start_sandbox(tenant)
    with broker_process(running) as broker:
        template = broker_token(running, "jdoe@contoso.example")
        dora = resigned(
            running,
            template,
            oid=dora_record["entra"]["object_id"],
            upn="dora@contoso.example",
            preferred_username="dora@contoso.example",
        )
        response = provision(broker, dora)
        assert (response.status_code, response.json()["error"]) == (403, "user_disabled")
    dora_record["active"] = True
    running = start_sandbox(tenant)
    with broker_process(running) as broker:
        dora = resigned(
            running,
            broker_token(running, "jdoe@contoso.example"),
            oid=dora_record["entra"]["object_id"],
        )
        response = provision(broker, dora)
        assert (response.status_code, response.json()["error"]) == (403, "account_disabled")
    assert running.tokens("dora") == []


def test_enrolled_users_get_a_desktop_token_or_403(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    with broker_process(running) as broker:
        response = provision(broker, broker_token(running, "ed@contoso.example"))
        assert response.status_code == 200, response.text
        (issued,) = running.tokens("enrolled")
        assert issued["issued_by"] == "start_desktop"
    with broker_process(running, "--enrolled-users", "refuse") as broker:
        response = provision(broker, broker_token(running, "ed@contoso.example"))
        assert (response.status_code, response.json()["error"]) == (403, "enrolled")
    assert len(running.tokens("enrolled")) == 1


@pytest.mark.parametrize("policy", ["desktop", "refuse"])
def test_a_user_who_enrolled_since_the_mapping_was_cached(
    start_sandbox: StartSandbox, tmp_path: Path, policy: str
) -> None:
    """The cached mapping still says "not enrolled"; Defguard refuses a second activation, and
    the user gets what an enrolled user gets instead of a 503."""
    tenant = example_tenant()
    tenant["instance"]["mfa_required"] = False  # MFA setup at activation needs the desktop app
    running = start_sandbox(tenant)
    with broker_process(running, "--rate-window", "0", "--enrolled-users", policy) as broker:
        token = broker_token(running, "jdoe@contoso.example")
        first = provision(broker, token)
        assert first.status_code == 200, first.text
        provisioning = tmp_path / "provisioning.json"
        provisioning.write_text(json.dumps(first.json()), "utf-8")
        api.enroll(
            provisioning_file=provisioning,
            output_dir=tmp_path / "wg",
            device_name="laptop",
            password=lambda: "Broker-Passw0rd!",
            ca_bundle=running.info["ca_bundle"],
        )
        again = provision(broker, token)
    issued = [t["issued_by"] for t in running.tokens("jdoe")]
    if policy == "desktop":
        assert again.status_code == 200, again.text
        assert issued[-1] == "start_desktop"
    else:
        assert (again.status_code, again.json()["error"]) == (403, "enrolled")
        assert "start_desktop" not in issued


def test_a_user_asking_again_within_the_window_gets_429(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    running, broker = sandbox_and_broker
    token = broker_token(running, "jdoe@contoso.example")
    assert provision(broker, token).status_code == 200
    again = provision(broker, token)
    assert again.status_code == 429 and again.json()["error"] == "rate_limited"
    assert 1 <= int(again.headers["retry-after"]) <= 60
    assert len(running.tokens("jdoe")) == 1  # Defguard was not asked again
    other = provision(broker, broker_token(running, "paula@contoso.example"))
    assert other.status_code == 200


def test_racing_requests_of_one_user_get_one_token(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    running, broker = sandbox_and_broker
    token = broker_token(running, "jdoe@contoso.example")
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(
            r.status_code for r in pool.map(lambda _: provision(broker, token), range(6))
        )
    assert statuses == [200, 429, 429, 429, 429, 429]
    assert len(running.tokens("jdoe")) == 1


def test_a_refused_mapping_does_not_use_up_the_window(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    running, broker = sandbox_and_broker
    token = broker_token(running, "admin@contoso.example")
    assert [provision(broker, token).status_code for _ in range(3)] == [403, 403, 403]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_defguard_or_graph_down_is_503(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(example_tenant())
    token = broker_token(running, "jdoe@contoso.example")
    command = broker_command(running)
    command[command.index("--url") + 1] = f"http://127.0.0.1:{free_port()}"
    with broker_process(running, command=command) as broker:
        ready = broker.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        assert broker.get("/healthz").status_code == 200
        response = provision(broker, token)
        assert (response.status_code, response.json()["error"]) == (503, "defguard_unavailable")
    command = broker_command(running)
    command[command.index("--graph-url") + 1] = f"https://127.0.0.1:{free_port()}/v1.0"
    with broker_process(running, command=command) as broker:
        response = provision(broker, token)
        assert (response.status_code, response.json()["error"]) == (503, "entra_unavailable")
    assert running.tokens("jdoe") == []


def test_operations_endpoints_and_metrics(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    running, broker = sandbox_and_broker
    assert broker.get("/healthz").json() == {"status": "ok"}
    assert broker.get("/readyz").json() == {"status": "ready"}
    assert provision(broker, broker_token(running, "jdoe@contoso.example")).status_code == 200
    assert provision(broker, "garbage").status_code == 401
    metrics = broker.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'dgprov_broker_requests_total{outcome="provisioned"} 1.0' in text
    assert 'dgprov_broker_requests_total{outcome="invalid_token"} 1.0' in text
    assert 'dgprov_broker_request_duration_seconds_count{outcome="provisioned"} 1.0' in text
    for service, call in (("defguard", "start_enrollment"), ("graph", "user"), ("graph", "lookup")):
        assert (
            f'dgprov_broker_remote_call_duration_seconds_count{{call="{call}",service="{service}"}}'
            in text
        ), (service, call)


def test_no_secret_in_any_output_and_no_graph_write(
    sandbox_and_broker: tuple[Running, BrokerProcess],
) -> None:
    running, broker = sandbox_and_broker
    secrets = [running.info["api_token"], running.info["broker_client_secret"]]
    for upn in ("jdoe@contoso.example", "sobrien@contoso.example", "tess@contoso.example"):
        token = broker_token(running, upn)
        secrets.append(token)
        response = provision(broker, token)
        if response.status_code == 200:
            secrets.append(response.json()["enrollment_token"])
        provision(broker, token)  # 429: also audited
    output = broker.output()
    for secret in secrets:
        assert secret not in output
        assert secret[:40] not in output
    lines = broker.audit_lines()
    assert len(lines) == 6
    assert set(lines[0]) == {
        "time",
        "request_id",
        "entra_object_id",
        "upn",
        "defguard_username",
        "action",
        "outcome",
        "status",
        "latency_ms",
        "detail",
    }
    assert [(line["upn"], line["outcome"]) for line in lines[:2]] == [
        ("jdoe@contoso.example", "provisioned"),
        ("jdoe@contoso.example", "rate_limited"),
    ]
    assert lines[0]["defguard_username"] == "jdoe" and lines[0]["action"] == "start_enrollment"
    graph_origin = running.info["graph_url"].rsplit("/", 1)[0]
    counts = httpx.get(f"{graph_origin}/_sandbox/requests", verify=trust(running.info)).json()
    routes = counts["requests"]
    assert routes["GET /v1.0/users/{id}"] == 3  # the counts are live: reads are there
    writes = [r for r in routes if r != "POST /v1.0/$batch" and "GET" not in r]
    assert writes == []


def test_a_stop_lets_the_request_in_flight_finish(start_sandbox: StartSandbox) -> None:
    """SIGTERM while a provisioning request waits for a slow Defguard: the answer still comes,
    then the broker exits 0 (checked by ``broker_process``)."""
    running = start_sandbox(example_tenant(), faults=FaultSettings(latency_ms=700))
    token = broker_token(running, "jdoe@contoso.example")
    with broker_process(running) as broker, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(provision, broker, token)
        deadline = time.monotonic() + 30
        while not running.sandbox.core_requests["GET /api/v1/group-info"] and not answer.done():
            assert time.monotonic() < deadline, "the request never reached Defguard"
            time.sleep(0.01)
        broker.process.send_signal(signal.SIGTERM)
        assert answer.result(timeout=60).status_code == 200
    assert len(running.tokens("jdoe")) == 1
