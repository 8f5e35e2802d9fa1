"""Graph ``$batch`` retries and attribute writes, against ``httpx.MockTransport``.

Graph throttles item by item inside a successful ``$batch`` answer, so ``send``'s retries never
see it: ``GraphClient._batch`` must re-send exactly the refused items, wait as long as Graph
asks, and slow down. A mistake here either hammers a throttled tenant or silently reports
tokens as stored that were not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from dgprov import graph as graph_module
from dgprov.directory import WriteResult
from dgprov.errors import RemoteError
from dgprov.graph import BATCH_SIZE, BATCHES_IN_FLIGHT, CSA_TYPE, ITEM_ERROR_ATTEMPTS, GraphClient
from dgprov.retry import RetryPolicy
from dgprov.stored_value import ProvisioningConfig
from dgprov.tls import tls_context

GRAPH_URL = "https://graph.example/v1.0"
FAST = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)  # item backoff is always 0 s
TLS = tls_context()
TOLERANCE = 0.002  # the event loop may wake a timer up to its clock resolution early

Answer = Callable[[dict[str, Any], int], dict[str, Any]]
"""``(item, how many times this item id has been sent)`` -> the item's answer in the batch."""

OK: dict[str, Any] = {"status": 204}

Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)


class FakeGraph:
    """A ``$batch`` endpoint answering each item through ``answer``, recording every request."""

    def __init__(self, answer: Answer, graph: Callable[[], GraphClient | None] = lambda: None):
        self.answer = answer
        self.graph = graph
        self.batches: list[list[str]] = []  # item ids per $batch request, in arrival order
        self.sends: dict[str, int] = {}
        self.times: list[float] = []
        self.limits: list[int] = []  # graph.batches.limit as each request arrived
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(time.monotonic())
        client = self.graph()
        if client is not None:
            self.limits.append(client.batches.limit)
        items: list[dict[str, Any]] = json.loads(request.content)["requests"]
        self.batches.append([item["id"] for item in items])
        responses = []
        for item in items:
            self.sends[item["id"]] = self.sends.get(item["id"], 0) + 1
            responses.append({"id": item["id"], **self.answer(item, self.sends[item["id"]])})
        return httpx.Response(200, json={"responses": responses})


def graph_client(
    handler: Handler,
    policy: RetryPolicy = FAST,
) -> GraphClient:
    graph = GraphClient(GRAPH_URL, lambda fresh: "graph-token", verify=TLS, policy=policy)
    # GraphClient offers no way to pass a transport; its pool's client options are the only route
    # (read when the pool creates its first client, so before any request).
    graph.http._pool._options["transport"] = httpx.MockTransport(handler)
    return graph


def items(count: int) -> list[dict[str, Any]]:
    return [{"id": str(i), "method": "PATCH", "url": f"/users/u{i}"} for i in range(count)]


def batch(graph: GraphClient, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    async def go() -> dict[str, dict[str, Any]]:
        try:
            return await graph._batch(entries)
        finally:
            await graph.aclose()

    return asyncio.run(go())


def statuses(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {key: answer["status"] for key, answer in results.items()}


# ------------------------------------------------------------------------------- throttling


def test_throttled_items_alone_are_resent_after_the_largest_retry_after() -> None:
    """Items already written must not be written twice; the wait is the longest one asked."""

    def answer(item: dict[str, Any], sent: int) -> dict[str, Any]:
        if sent == 1 and item["id"] == "1":
            return {"status": 429, "headers": {"Retry-After": "0.01"}}
        if sent == 1 and item["id"] == "3":
            return {"status": 429, "headers": {"retry-after": "0.05"}}
        return OK

    fake = FakeGraph(answer)
    results = batch(graph_client(fake), items(5))
    assert fake.batches == [["0", "1", "2", "3", "4"], ["1", "3"]]
    assert fake.times[1] - fake.times[0] >= 0.05 - TOLERANCE
    assert statuses(results) == {str(i): 204 for i in range(5)}


def test_throttling_gives_up_after_the_maximum_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant that never stops throttling ends the run with its answer, not a hang."""
    monkeypatch.setattr(graph_module, "MAX_THROTTLED_SECONDS", 0.025)
    throttled = {"status": 429, "headers": {"Retry-After": "0.01"}, "body": {"error": {}}}
    # Graph relents after 10 tries, so a missing limit fails this test instead of hanging it.
    fake = FakeGraph(lambda item, sent: throttled if sent <= 10 else OK)
    results = batch(graph_client(fake), items(2))
    assert len(fake.batches) == 3  # waits of 0.01 and 0.02 s fit in 0.025 s; 0.03 does not
    assert statuses(results) == {"0": 429, "1": 429}


def test_server_error_items_get_limited_attempts() -> None:
    """5xx items are retried a few times; then their last answer is the result."""

    def answer(item: dict[str, Any], sent: int) -> dict[str, Any]:
        if item["id"] == "0":
            return {"status": 503, "body": {"error": {"message": f"down {sent}"}}}
        if item["id"] == "1" and sent <= 2:
            return {"status": 500}
        return OK

    fake = FakeGraph(answer)
    results = batch(graph_client(fake), items(3))
    assert fake.sends == {"0": ITEM_ERROR_ATTEMPTS, "1": 3, "2": 1}
    assert statuses(results) == {"0": 503, "1": 204, "2": 204}
    assert results["0"]["body"] == {"error": {"message": f"down {ITEM_ERROR_ATTEMPTS}"}}


def test_client_error_items_are_not_retried() -> None:
    """A 403 or 404 item is final at once; re-sending would not change it."""
    fake = FakeGraph(lambda item, sent: {"status": 403} if item["id"] == "1" else OK)
    results = batch(graph_client(fake), items(3))
    assert fake.batches == [["0", "1", "2"]]
    assert statuses(results) == {"0": 204, "1": 403, "2": 204}


def test_throttling_halves_the_batches_in_flight_and_clean_batches_restore_them() -> None:
    """Fewer batches in flight while Graph throttles; back to the maximum one at a time."""
    holder: list[GraphClient] = []

    def answer(item: dict[str, Any], sent: int) -> dict[str, Any]:
        if item["id"] == "0" and sent == 1:
            return {"status": 429, "headers": {"Retry-After": "0.001"}}
        return OK

    fake = FakeGraph(answer, lambda: holder[0])
    graph = graph_client(fake)
    holder.append(graph)

    async def go() -> list[int]:
        after = []
        await graph._batch(items(3))  # throttled once (4 -> 2), then clean (-> 3)
        after.append(graph.batches.limit)
        for _ in range(3):
            await graph._batch(items(1))
            after.append(graph.batches.limit)
        await graph.aclose()
        return after

    assert asyncio.run(go()) == [3, 4, BATCHES_IN_FLIGHT, BATCHES_IN_FLIGHT]
    assert fake.limits[:2] == [BATCHES_IN_FLIGHT, BATCHES_IN_FLIGHT // 2]


# ---------------------------------------------------------------------------------- batching


def test_at_most_20_items_per_batch_request() -> None:
    """Graph refuses a $batch of more than 20; every item still goes exactly once."""
    fake = FakeGraph(lambda item, sent: OK)
    results = batch(graph_client(fake), items(45))
    assert sorted(len(ids) for ids in fake.batches) == [5, BATCH_SIZE, BATCH_SIZE]
    sent = [key for ids in fake.batches for key in ids]
    assert sorted(sent) == sorted(str(i) for i in range(45))
    assert len(results) == 45


def test_batches_in_flight_are_bounded() -> None:
    """The adaptive limit, not the larger client pool, decides how many batches overlap."""
    inside, peak = 0, 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        for _ in range(10):
            await asyncio.sleep(0)  # let the other batches try to start meanwhile
        inside -= 1
        chunk = json.loads(request.content)["requests"]
        return httpx.Response(200, json={"responses": [{"id": i["id"], **OK} for i in chunk]})

    graph = graph_client(handler)
    assert graph.http._pool.size > BATCHES_IN_FLIGHT
    results = batch(graph, items(BATCH_SIZE * 10))
    assert len(results) == BATCH_SIZE * 10
    assert peak == BATCHES_IN_FLIGHT


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (400, {}, {"error": {"code": "BadRequest", "message": "Invalid batch payload"}}, None),
        (403, {}, {"error": {"code": "Forbidden", "message": "Not allowed"}}, None),
        (503, {"Retry-After": "0.001"}, None, "Service Unavailable"),
    ],
)
def test_non_200_batch_answer_raises_remote_error(
    status: int, headers: dict[str, str], body: dict[str, Any] | None, message: str | None
) -> None:
    """A refused $batch as a whole is an error, not a list of item answers."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, headers=headers, json=body)

    with pytest.raises(RemoteError) as caught:
        batch(graph_client(handler), items(2))
    expected = message or (body or {})["error"]["message"]
    assert (caught.value.service, caught.value.status, caught.value.message) == (
        "Microsoft Graph",
        status,
        expected,
    )
    assert len(calls) == (FAST.attempts if status == 503 else 1)


def test_expired_access_token_is_renewed_once() -> None:
    """A 401 asks the token provider for a fresh token and sends the batch again."""
    asked: list[bool] = []
    seen: list[str] = []

    def tokens(fresh: bool) -> str:
        asked.append(fresh)
        return "fresh-token" if fresh else "stale-token"

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer stale-token":
            return httpx.Response(401, json={"error": {"message": "expired"}})
        return httpx.Response(200, json={"responses": [{"id": "0", **OK}]})

    graph = graph_client(handler)
    graph.token_provider = tokens
    assert statuses(batch(graph, items(1))) == {"0": 204}
    assert asked == [False, True]
    assert seen == ["Bearer stale-token", "Bearer fresh-token"]


# ------------------------------------------------------------------------------------ writes


def test_write_attributes_maps_results_per_user() -> None:
    """Each user's own answer decides their outcome; Graph's message explains a refusal."""
    denied = {
        "error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}
    }

    def answer(item: dict[str, Any], sent: int) -> dict[str, Any]:
        return {"status": 403, "body": denied} if item["id"] == "1" else OK

    fake = FakeGraph(answer)
    graph = graph_client(fake)
    configs = [ProvisioningConfig("https://enroll.example", f"token-{i}") for i in range(3)]
    pairs = list(zip(["user-a", "user b/2", "user-c"], configs, strict=True))

    async def go() -> dict[str, WriteResult]:
        try:
            return await graph.write_attributes("Defguard", pairs)
        finally:
            await graph.aclose()

    results = asyncio.run(go())
    assert results == {
        "user-a": WriteResult(True, "204: "),
        "user b/2": WriteResult(False, "403: Insufficient privileges", denied=True),
        "user-c": WriteResult(True, "204: "),
    }
    request = fake.requests[0]
    assert request.url.path == "/v1.0/$batch"
    assert request.headers["Authorization"] == "Bearer graph-token"
    sent = json.loads(request.content)["requests"]
    assert [item["url"] for item in sent] == [
        "/users/user-a",
        "/users/user%20b%2F2",
        "/users/user-c",
    ]
    assert {item["method"] for item in sent} == {"PATCH"}
    assert sent[1]["body"] == {
        "customSecurityAttributes": {
            "Defguard": {
                "@odata.type": CSA_TYPE,
                "EnrollmentUrl": "https://enroll.example",
                "EnrollmentToken": "token-1",
            }
        }
    }


def test_write_attributes_retries_throttled_users_only() -> None:
    """A throttled write is stored on the second try; the others are written once."""

    def answer(item: dict[str, Any], sent: int) -> dict[str, Any]:
        if item["id"] == "2" and sent == 1:
            return {"status": 429, "headers": {"Retry-After": "0.001"}}
        return OK

    fake = FakeGraph(answer)
    graph = graph_client(fake)
    pairs = [(f"user-{i}", ProvisioningConfig("https://e.example", f"t{i}")) for i in range(4)]

    async def go() -> dict[str, WriteResult]:
        try:
            return await graph.write_attributes("Defguard", pairs)
        finally:
            await graph.aclose()

    results = asyncio.run(go())
    assert {user: result.ok for user, result in results.items()} == {
        "user-0": True,
        "user-1": True,
        "user-2": True,
        "user-3": True,
    }
    assert fake.sends == {"0": 1, "1": 1, "2": 2, "3": 1}
