"""What dgprov does when Defguard or Graph is unreachable, slow, hostile or broken.

Each server here is a small one of the test's own on 127.0.0.1 (``hostile.py``), or a forwarder in
front of the sandbox that spoils one answer. The rules under test: secrets never leave their
origin, every wait and every answer is bounded, and whatever a server sends becomes one clear
error naming the service and the field, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from dgprov.cli import main
from dgprov.defguard import DefguardClient
from dgprov.errors import DgprovError
from dgprov.graph import GraphClient
from dgprov.retry import RetryPolicy, retry_after_seconds
from dgprov.tls import tls_context

from ..conftest import StartSandbox, example_tenant
from .hostile import Exchange, closed_port, hostile, replying, silent_listener
from .test_generate_tokens import EXPECTED, cli_args, environment

API_TOKEN = "dg-Hostil3ServerTestToken0000000001"
GRAPH_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.graph-token-for-tests"
ISSUED = {"enrollment_url": "https://enroll.example/", "enrollment_token": "A" * 32}
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], limit: float = 15.0) -> T:
    """Run a client call, failing the test (not hanging it) if it never ends."""
    return asyncio.run(asyncio.wait_for(coroutine, limit))


def defguard(url: str, policy: RetryPolicy | None = None) -> DefguardClient:
    return DefguardClient(url, API_TOKEN, verify=tls_context(), policy=policy)


def defguard_call(
    url: str, call: Callable[[DefguardClient], Coroutine[Any, Any, T]], **policy: Any
) -> T:
    async def go() -> T:
        client = defguard(url, RetryPolicy(**policy) if policy else None)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return run(go())


def graph_lookup(url: str, *emails: str) -> Any:
    async def go() -> Any:
        client = GraphClient(f"{url}/v1.0", lambda fresh: GRAPH_TOKEN, verify=tls_context())
        try:
            return await client.find_users(emails)
        finally:
            await client.aclose()

    return run(go())


def generate(url: str, token: str = API_TOKEN) -> Result:
    """``generate-tokens`` against ``url`` with AD options that pass validation; Defguard's
    preflight comes first, so no directory is ever contacted here."""
    args = [
        "generate-tokens", "--url", url, "--group-name", "vpn-users", "--directory", "ad",
        "--ldap-url", "ldap://127.0.0.1:1", "--base-dn", "dc=corp,dc=example",
        "--ad-attribute", "defguardProvisioningConfig", "--bind-dn", "cn=nobody", "--yes",
    ]  # fmt: skip
    env = {"DEFGUARD_API_TOKEN": token, "DGPROV_BIND_PASSWORD": "unused"}
    return CliRunner().invoke(main, args, env=env)


def assert_clean_failure(result: Result, status: int) -> None:
    """One error line and the status; no traceback behind it."""
    assert result.exit_code == status, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def info_then(route: Callable[[Exchange], None]) -> Callable[[Exchange], None]:
    """A Defguard whose ``/api/v1/info`` answers well; everything else goes to ``route``."""

    def answer(exchange: Exchange) -> None:
        if exchange.path == "/api/v1/info":
            exchange.reply(200, {"version": "2.0.1"}, {"defguard-component-version": "2.0.1"})
        else:
            route(exchange)

    return answer


# ------------------------------------------------------------------- 11: token, reachability


@pytest.mark.parametrize(
    "token",
    ["dg-Exampl3\nToken", "dg-Exampl3Tökén", "dg-Exampl3\x01Token", "dg-Exampl3 Token"],
    ids=["newline", "non-ascii", "control", "space"],
)
def test_malformed_api_token_is_a_usage_error(token: str) -> None:
    """httpx raises on such header values (or the server refuses them): no traceback, no retry
    storm, nothing sent, and the token never echoed."""
    with hostile(replying(200, {})) as server:
        result = generate(server.url, token)
    assert_clean_failure(result, 2)
    assert "API token" in result.output and "copy it again" in result.output
    assert token not in result.output and "Exampl3" not in result.output
    assert server.received == []


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_defguard_fails_the_preflight_within_seconds(kind: str) -> None:
    """A refused connection or a server that never answers: exit 2 within about 10 s, not the
    issue phase's minutes of retries."""
    started = time.monotonic()
    if kind == "refused":
        result = generate(closed_port())
    else:
        with silent_listener() as url:
            result = generate(url)
    elapsed = time.monotonic() - started
    assert_clean_failure(result, 2)
    assert "Defguard could not be reached" in result.output
    assert elapsed < 10.0


# ----------------------------------------------------------------------- 12, 14: Retry-After


def test_retry_after_zero_does_not_spend_every_attempt_at_once() -> None:
    """tower-governor rounds Retry-After down, so a limit refilling within a second says 0:
    retries must still be spread out, and succeed once the bucket has refilled."""
    refused_until: list[float] = []

    def limiter(exchange: Exchange) -> None:
        now = time.monotonic()
        refused_until.append(refused_until[0] if refused_until else now + 0.6)
        if now < refused_until[0]:
            headers = {"retry-after": "0", "x-ratelimit-after": "0"}
            exchange.reply(429, "Too Many Requests! Wait for 0s", headers)
        else:
            exchange.reply(201, ISSUED)

    with hostile(limiter) as server:
        issued = defguard_call(
            server.url,
            lambda client: client.start_enrollment("jdoe", None),
            attempts=5,
            base_delay=0.05,
        )
    assert issued.enrollment_url == ISSUED["enrollment_url"]
    # Waits of 0.05, 0.1, 0.2 and 0.4 s (the backoff's ceiling), not a burst of requests.
    assert 2 <= len(server.received) <= 6


@pytest.mark.parametrize(
    "value", ["inf", "nan", "99999999", "Fri, 31 Dec 9999 23:59:59 GMT", "-inf", "1e400"]
)
def test_retry_after_is_bounded(value: str) -> None:
    """A Retry-After of forever (or of no number at all) neither crashes nor stalls: it is
    unreadable (then backoff) or capped."""
    seconds = retry_after_seconds(value)
    assert seconds is None or seconds >= 0
    assert RetryPolicy().throttled_delay(seconds, 0) <= 300
    answers = iter([(429, "Too Many Requests!", {"retry-after": value}), (201, ISSUED, {})])

    def route(exchange: Exchange) -> None:
        status, body, headers = next(answers)
        exchange.reply(status, body, headers)

    started = time.monotonic()
    with hostile(route) as server:
        defguard_call(
            server.url,
            lambda client: client.start_enrollment("jdoe", None),
            attempts=3,
            base_delay=0.01,
            max_retry_after=0.2,
        )
    assert time.monotonic() - started < 3.0


# ------------------------------------------------------------------------- 13: token origin


def batch_answer(exchange: Exchange, body: dict[str, Any]) -> None:
    """Every lookup in a ``$batch`` answered with ``body``."""
    requests = exchange.json()["requests"]
    exchange.reply(
        200, {"responses": [{"id": r["id"], "status": 200, "body": body} for r in requests]}
    )


def batching(body: dict[str, Any]) -> Callable[[Exchange], None]:
    def route(exchange: Exchange) -> None:
        batch_answer(exchange, body)

    return route


def test_next_link_to_another_origin_never_gets_the_token() -> None:
    with hostile(replying(200, {"value": []})) as elsewhere:
        next_link = f"{elsewhere.url}/v1.0/users?$skiptoken=steal"
        page = {"value": [], "@odata.nextLink": next_link}
        with hostile(batching(page)) as graph, pytest.raises(DgprovError) as caught:
            graph_lookup(graph.url, "jdoe@contoso.example")
    assert elsewhere.received == []  # not a request, so no Authorization header either
    message = str(caught.value)
    assert elsewhere.url in message and "refused, nothing was sent" in message
    assert "steal" not in message and GRAPH_TOKEN not in message
    assert all(r.headers["authorization"] == f"Bearer {GRAPH_TOKEN}" for r in graph.received)


def test_next_link_on_the_same_origin_is_followed() -> None:
    """The rule refuses origins, not paging: Graph's own absolute links are followed."""
    user = {"id": "u1", "userPrincipalName": "jdoe@contoso.example", "mail": "jdoe@contoso.example"}

    def graph_route(exchange: Exchange) -> None:
        if exchange.path.endswith("$batch"):
            page = {"value": [], "@odata.nextLink": f"{origin[0]}/v1.0/users?page=2"}
            batch_answer(exchange, page)
        else:
            exchange.reply(200, {"value": [user]})

    origin: list[str] = []
    with hostile(graph_route) as graph:
        origin.append(graph.url.replace("http://", "HTTP://"))  # the origin, spelled otherwise
        matches = graph_lookup(graph.url, "jdoe@contoso.example")
    assert [u.id for u in matches.stages[0][1]["jdoe@contoso.example"]] == ["u1"]


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("users?$skiptoken=x", True),
        ("/v1.0/users", True),
        ("HTTPS://Graph.Example:443/v1.0/users", True),
        ("https://graph.example.evil/v1.0", False),
        ("http://graph.example/v1.0", False),
        ("https://graph.example:8443/v1.0", False),
        ("//evil.example/v1.0/users", False),
        ("https://graph.example:notaport/v1.0", False),
        ("file:///etc/passwd", False),
    ],
)
def test_the_origin_rule(url: str, same: bool) -> None:
    from dgprov.urls import same_origin

    assert same_origin(url, "https://graph.example/v1.0") is same


# ------------------------------------------------------------------------ 14: everything ends


def test_repeating_next_link_stops_with_an_error() -> None:
    def graph_route(exchange: Exchange) -> None:
        page = {"value": [], "@odata.nextLink": f"{server_url[0]}/v1.0/users?page=again"}
        if exchange.path.endswith("$batch"):
            batch_answer(exchange, page)
        else:
            exchange.reply(200, page)

    server_url: list[str] = []
    with hostile(graph_route) as graph:
        server_url.append(graph.url)
        with pytest.raises(DgprovError) as caught:
            graph_lookup(graph.url, "jdoe@contoso.example")
    assert "Microsoft Graph" in str(caught.value) and "repeats" in str(caught.value)
    assert len(graph.received) <= 3


def test_endless_page_count_stops_with_an_error() -> None:
    """Defguard 2.0's ``total_pages`` is believed only as far as ``total_items`` explains it."""
    page = {
        "data": [{"username": "jdoe", "email": None, "is_active": True, "enrolled": False}],
        "pagination": {
            "current_page": 1, "next_page": 2, "page_size": 100,
            "total_items": 1, "total_pages": 10**9,
        },
    }  # fmt: skip
    with hostile(replying(200, page)) as server, pytest.raises(DgprovError) as caught:
        defguard_call(server.url, lambda client: client.users())
    assert "Defguard" in str(caught.value) and "total_pages" in str(caught.value)
    assert len(server.received) == 1


@pytest.mark.parametrize("framing", ["declared", "chunked"])
def test_answer_over_16_mib_is_refused(framing: str) -> None:
    """17 MiB of valid JSON, announced by Content-Length or streamed without it."""
    item = json.dumps({"id": 1, "name": "x" * 1000, "members": []}).encode()
    count = 17 * 2**20 // len(item) + 1
    body = b"[" + b",".join([item] * count) + b"]"

    def huge(exchange: Exchange) -> None:
        if framing == "declared":
            exchange.reply(200, body)
        else:
            exchange.stream(body[i : i + 2**16] for i in range(0, len(body), 2**16))

    with hostile(info_then(huge)) as server:
        result = generate(server.url)
    assert_clean_failure(result, 1)
    assert "Defguard answered 200: the answer is larger than 16 MiB" in result.output


def test_trickled_answer_fails_within_the_deadline() -> None:
    """One byte every 5 s never trips a read timeout; the per-call deadline (2 s here) does."""
    with hostile(lambda exchange: exchange.trickle(b'{"data": []}' * 10, every=5.0)) as server:
        started = time.monotonic()
        with pytest.raises(DgprovError) as caught:
            defguard_call(server.url, lambda client: client.users(), attempts=1, deadline=2.0)
        elapsed = time.monotonic() - started
    assert "no complete answer within 2 s" in str(caught.value)
    assert 2.0 <= elapsed < 5.0


# ---------------------------------------------------------------------- 15: malformed answers


def defguard_answering(path: str, status: int, body: Any) -> Callable[[Exchange], None]:
    def route(exchange: Exchange) -> None:
        if exchange.path == path:
            exchange.reply(status, body)
        else:
            exchange.reply(404, {"msg": "not here"})

    return info_then(route)


ENTRY = {"username": "jdoe", "email": "j@x", "is_active": True, "enrolled": False}
MALFORMED_DEFGUARD = [
    ("/api/v1/info", "version", 200, b"<html>", "the answer is not JSON"),
    ("/api/v1/group-info", "group", 200, {"groups": []}, "expected a list"),
    ("/api/v1/group-info", "group", 200, [{"id": "1", "name": "vpn-users"}], "'id' is a string"),
    (
        "/api/v1/group-info", "group", 200,
        [{"id": 1, "name": "vpn-users", "members": ["a", 7]}], "an element of 'members'",
    ),
    ("/api/v1/user", "users", 200, {"data": [{**ENTRY, "username": 7}]}, "'username' is a number"),
    ("/api/v1/user", "users", 200, {"data": [{**ENTRY, "is_active": "yes"}]}, "'is_active'"),
    ("/api/v1/user", "users", 200, {"data": None}, "'data' is missing"),
    (
        "/api/v1/user/jdoe/start_enrollment", "issue", 201,
        {"enrollment_token": "A" * 32}, "'enrollment_url' is missing",
    ),
    (
        "/api/v1/user/jdoe/start_enrollment", "issue", 201,
        {"enrollment_url": ["https://x"], "enrollment_token": "A" * 32},
        "'enrollment_url' is a list",
    ),
    ("/api/v1/user/jdoe/start_enrollment", "issue", 201, b"{", "the answer is not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "call", "status", "body", "problem"), MALFORMED_DEFGUARD)
def test_malformed_defguard_answer_is_one_clear_error(
    path: str, call: str, status: int, body: Any, problem: str
) -> None:
    calls: dict[str, Callable[[DefguardClient], Coroutine[Any, Any, Any]]] = {
        "version": lambda client: client.server_version(),
        "group": lambda client: client.group("vpn-users"),
        "users": lambda client: client.users(),
        "issue": lambda client: client.start_enrollment("jdoe", None),
    }

    # /api/v1/info answered without a version header, so the body is read
    route = replying(status, body) if call == "version" else defguard_answering(path, status, body)
    with hostile(route) as server, pytest.raises(DgprovError) as caught:
        defguard_call(server.url, calls[call])
    message = str(caught.value)
    assert message.startswith(f"Defguard answered {status}: ") and problem in message
    assert "A" * 32 not in message


MALFORMED_GRAPH = [
    ({"value": []}, "'responses' is missing"),
    ({"responses": [{"id": "0", "status": "200", "body": {}}]}, "'status' is a string"),
    ({"responses": []}, "no response for request 0"),
    ({"responses": [{"id": "0", "status": 200, "body": {"value": [{"mail": "a@b"}]}}]}, "'id'"),
    (
        {"responses": [{"id": "0", "status": 200, "body": {"value": [{"id": "u", "mail": 5}]}}]},
        "'mail' is a number",
    ),
]


@pytest.mark.parametrize(("answer", "problem"), MALFORMED_GRAPH)
def test_malformed_graph_answer_is_one_clear_error(answer: dict[str, Any], problem: str) -> None:
    with hostile(replying(200, answer)) as graph, pytest.raises(DgprovError) as caught:
        graph_lookup(graph.url, "jdoe@contoso.example")
    assert str(caught.value).startswith("Microsoft Graph answered 200: ")
    assert problem in str(caught.value)


def test_malformed_token_answer_fails_that_member_only(
    start_sandbox: StartSandbox, tmp_path: Path
) -> None:
    """A 201 without ``enrollment_url`` for one member, through a forwarder in front of the
    sandbox: that member fails with the reason, the others are provisioned as usual."""
    running = start_sandbox(example_tenant())
    core = running.info["defguard_url"]

    def spoil(body: Any) -> Any:
        return {key: value for key, value in body.items() if key != "enrollment_url"}

    def route(exchange: Exchange) -> None:
        is_jdoe = exchange.path == "/api/v1/user/jdoe/start_enrollment"
        exchange.forward(core, spoil if is_jdoe else None)

    report = tmp_path / "report.json"
    with hostile(route) as forwarder:
        args = cli_args(running, "--report", str(report))
        args[args.index("--url") + 1] = forwarder.url
        assert running.sandbox.entra is not None
        running.sandbox.entra.auto_approve_upn = running.info["admin_upn"]
        result = CliRunner().invoke(main, args, env=environment(running, tmp_path / "cache"))
    assert result.exit_code == 1, result.output
    rows = {row["username"]: row for row in json.loads(report.read_text())["members"]}
    assert rows["jdoe"]["outcome"] == "failed"
    assert "Defguard answered 201: unusable answer: 'enrollment_url'" in rows["jdoe"]["reason"]
    expected = {**EXPECTED, "jdoe": ("start_enrollment", "failed")}
    assert {name: (row["action"], row["outcome"]) for name, row in rows.items()} == expected
