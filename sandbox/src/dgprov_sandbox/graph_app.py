"""HTTP face of the emulated Microsoft Graph (``/v1.0``), with JSON batching and throttling.

Every request, whether it arrives directly or inside ``$batch``, goes through one dispatcher
(``GraphService.dispatch``), so batch items are authorised, validated and throttled exactly as
direct calls are. The strict corners come from ``shared/reference/graph-msal.md``: custom security
attributes only on ``$select`` and ``null`` without read rights, advanced-query rules, opaque
``@odata.nextLink`` paging that needs its headers resent, and 429s inside batches.

``GraphService`` stacks the layers, each a module of its own: ``graph_paging``,
``graph_attributes``, ``graph_users``, ``graph_groups``, ``graph_routes`` and ``graph_batch``;
this module seeds it and serves it with Starlette.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .entra_directory import EntraUser
from .entra_state import EntraState
from .graph_attributes import CsaReadRole, EmptyPatchRule
from .graph_batch import GraphBatch
from .graph_messages import GraphCall, GraphError, GraphReply, error_body, method_not_allowed
from .graph_routes import route_template
from .graph_schema import INDEXED_USER_PROPERTIES, user_record
from .throttle import Throttle


class GraphService(GraphBatch):
    """The Graph endpoints of one tenant."""

    def __init__(
        self,
        state: EntraState,
        throttle: Throttle,
        base_url: str,
        seed: int,
        *,
        empty_patch_rule: EmptyPatchRule = "checked",
        csa_read_role: CsaReadRole = "reader",
    ) -> None:
        self.state = state
        self.empty_patch_rule = empty_patch_rule
        self.csa_read_role = csa_read_role
        self.throttle = throttle
        self.base_url = base_url  # ends in /v1.0
        self.rng = random.Random(f"{seed}:graph")
        self.counts: Counter[str] = Counter()
        # (property, lower-cased value) -> users; directory properties never change here.
        self._index: dict[tuple[str, Any], list[EntraUser]] = {}
        self._position: dict[str, int] = {}
        for position, user in enumerate(state.users.values()):
            self._position[user.object_id] = position
            record = user_record(user)
            for name in INDEXED_USER_PROPERTIES:
                values = record[name] if isinstance(record[name], list) else [record[name]]
                for value in values:
                    key = (name, value.lower() if isinstance(value, str) else value)
                    self._index.setdefault(key, []).append(user)


def build_graph_app(service: GraphService) -> Starlette:
    def respond(reply: GraphReply, request_headers: dict[str, str]) -> Response:
        headers = dict(reply.headers)
        headers["request-id"] = request_headers["request-id"]
        if "client-request-id" in request_headers:
            headers["client-request-id"] = request_headers["client-request-id"]
        if reply.body is None:
            return Response(status_code=reply.status, headers=headers)
        return Response(
            json.dumps(reply.body),
            status_code=reply.status,
            headers=headers,
            media_type="application/json",
        )

    async def endpoint(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        headers["request-id"] = str(uuid.uuid4())
        path = "/" + request.path_params["path"]
        service.counts[f"{request.method} /v1.0{route_template(path)}"] += 1
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return respond(
                GraphReply(
                    400, error_body("BadRequest", "Unable to read JSON request payload.", headers)
                ),
                headers,
            )
        try:
            principal = service.authenticate(request.headers.get("authorization"))
            if path == "/$batch":
                if request.method != "POST":
                    raise method_not_allowed()
                reply = service.batch(principal, body, headers)
            else:
                call = GraphCall(request.method, path, dict(request.query_params), headers, body)
                reply = service.dispatch(principal, call)
        except GraphError as error:
            reply = GraphReply(
                error.status,
                error_body(error.code, error.message, headers, error.details),
                error.headers,
            )
        return respond(reply, headers)

    async def counts(request: Request) -> Response:
        return Response(
            json.dumps({"requests": dict(service.counts)}), media_type="application/json"
        )

    return Starlette(
        routes=[
            Route("/_sandbox/requests", counts, methods=["GET"]),
            Route("/v1.0/{path:path}", endpoint, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        ]
    )


def graph_server_error(rng: random.Random) -> Response:
    """A 503 (half of them with Retry-After) or 504, in Graph's error envelope."""
    status = 503 if rng.random() < 0.5 else 504
    code = "serviceNotAvailable" if status == 503 else "gatewayTimeout"
    body = {"error": {"code": code, "message": "The service is temporarily unavailable."}}
    headers = {"Retry-After": "1"} if status == 503 and rng.random() < 0.5 else {}
    return Response(
        json.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )
