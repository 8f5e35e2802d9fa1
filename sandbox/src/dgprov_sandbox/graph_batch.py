"""JSON batching (``POST /$batch``): up to 20 requests, ``dependsOn`` ordering, inner errors.

Each item goes through ``dispatch`` like a direct call, so it is authorised, validated and
throttled on its own (a refused item is an inner 429). Malformed batches are refused whole;
an item whose dependency failed is 424. Responses come back in a seeded shuffled order, so
clients must correlate them by id, as on Graph.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .entra_tokens import Principal
from .graph_messages import GraphCall, GraphReply, bad_request, error_body
from .graph_routes import GraphRoutes, route_template

MAX_BATCH = 20


class GraphBatch(GraphRoutes):
    """Run a batch through the dispatcher."""

    rng: random.Random
    counts: Counter[str]

    def batch(
        self, principal: Principal, payload: Any, outer_headers: dict[str, str]
    ) -> GraphReply:
        if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
            raise bad_request("Invalid batch payload format.")
        requests = payload["requests"]
        if len(requests) > MAX_BATCH:
            raise bad_request("Number of requests inside batch exceeds the limit.")
        by_id: dict[str, dict[str, Any]] = {}
        for item in requests:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("id", "method", "url")
            ):
                raise bad_request(
                    "Each batch request needs string 'id', 'method' and 'url' properties."
                )
            if item["id"].lower() in by_id:
                raise bad_request(f"Batch request id '{item['id']}' is duplicated.")
            by_id[item["id"].lower()] = item
        for item in requests:
            for dependency in item.get("dependsOn") or []:
                if (
                    str(dependency).lower() not in by_id
                    or str(dependency).lower() == item["id"].lower()
                ):
                    raise bad_request(
                        f"Batch request '{item['id']}' depends on unknown request '{dependency}'."
                    )
        order = _dependency_order(requests)
        results: dict[str, dict[str, Any]] = {}
        for item in order:
            failed = [
                d for d in item.get("dependsOn") or [] if results[str(d).lower()]["status"] >= 400
            ]
            if failed:
                results[item["id"].lower()] = {
                    "id": item["id"],
                    "status": 424,
                    "headers": {"Content-Type": "application/json"},
                    "body": error_body(
                        "FailedDependency",
                        "The request depends on a request that failed.",
                        outer_headers,
                    ),
                }
                continue
            results[item["id"].lower()] = self._batch_item(principal, item, outer_headers)
        responses = list(results.values())
        self.rng.shuffle(responses)
        return GraphReply(200, {"responses": responses})

    def _batch_item(
        self, principal: Principal, item: dict[str, Any], outer_headers: dict[str, str]
    ) -> dict[str, Any]:
        headers = item.get("headers") or {}
        url = item["url"]
        parsed = urlsplit(url)
        reply: GraphReply
        if parsed.scheme or parsed.netloc:
            reply = GraphReply(
                400, error_body("BadRequest", "Batch request urls must be relative.", outer_headers)
            )
        elif "body" in item and not any(k.lower() == "content-type" for k in headers):
            reply = GraphReply(
                400,
                error_body(
                    "BadRequest",
                    "A Content-Type header is required for a request with a body.",
                    outer_headers,
                ),
            )
        else:
            path = parsed.path if parsed.path.startswith("/") else f"/{parsed.path}"
            call = GraphCall(
                method=item["method"].upper(),
                path=path,
                query=dict(parse_qsl(parsed.query, keep_blank_values=True)),
                headers={k.lower(): str(v) for k, v in headers.items()}
                | {"request-id": outer_headers.get("request-id", "")},
                body=item.get("body"),
            )
            self.counts[f"$batch {call.method} {route_template(call.path)}"] += 1
            reply = self.dispatch(principal, call)
        inner_headers = (
            {"Content-Type": "application/json"} | reply.headers
            if reply.body is not None
            else reply.headers
        )
        entry: dict[str, Any] = {"id": item["id"], "status": reply.status, "headers": inner_headers}
        if reply.body is not None:
            entry["body"] = reply.body
        return entry


def _dependency_order(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests with each after everything it depends on; a cycle is a malformed batch."""
    remaining = {r["id"].lower(): r for r in requests}
    ordered: list[dict[str, Any]] = []
    done: set[str] = set()
    while remaining:
        ready = [
            key
            for key, r in remaining.items()
            if all(str(d).lower() in done for d in r.get("dependsOn") or [])
        ]
        if not ready:
            raise bad_request("The dependsOn references of the batch form a cycle.")
        for key in ready:
            ordered.append(remaining.pop(key))
            done.add(key)
    return ordered
