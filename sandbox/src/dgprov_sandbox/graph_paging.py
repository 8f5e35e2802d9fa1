"""``$filter``, ``$top``, ``$count`` and opaque ``@odata.nextLink`` paging of Graph collections.

The lowest of the layers that ``GraphService`` stacks (paging, attributes, users, groups,
routes, batch). The skip token holds the whole query, so a next link works only if the client
resends the headers that made it (``ConsistencyLevel: eventual`` for advanced queries), as on
Graph. Equality filters on indexed user properties use the index built by ``GraphService``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

from .entra_directory import EntraUser
from .graph_messages import GraphCall, GraphError, GraphReply, bad_request
from .graph_schema import INDEXED_USER_PROPERTIES
from .odata import (
    FilterSyntaxError,
    FilterUnsupported,
    ParsedFilter,
    PropertyRule,
    parse_filter,
)

MAX_PAGE_SIZE = 999
DEFAULT_PAGE_SIZE = 100
MAX_OR_CHILDREN = 15


def _check_limits(parsed: ParsedFilter, resource: str) -> None:
    """Graph known issues ("Some limitations apply to query parameters"): outside advanced
    queries at most 15 ``in`` values / ``or`` children (the wording is Graph's, quoted in
    microsoft-graph-docs#21098) and string values of at most 120 characters (answered like an
    unfilterable property, microsoft-graph-explorer-v4#2103). Advanced queries limit only the
    URL length (2,048 characters), which the sandbox does not enforce."""
    if parsed.or_children > MAX_OR_CHILDREN:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Too many child clauses specified in search filter expression containing 'OR' "
            f"operators: {parsed.or_children}. Max allowed: {MAX_OR_CHILDREN}.",
        )
    if parsed.too_long is not None:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Unsupported or invalid query filter clause specified for property "
            f"'{parsed.too_long}' of resource '{resource}'.",
        )


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


class GraphPaging:
    """Page a filtered collection; the fields are seeded by ``GraphService.__init__``."""

    base_url: str  # ends in /v1.0
    # (property, lower-cased value) -> users; directory properties never change here.
    _index: dict[tuple[str, Any], list[EntraUser]]
    _position: dict[str, int]

    def _page(
        self,
        call: GraphCall,
        items: list[Any],
        record: Any,
        filters: dict[str, PropertyRule],
        resource: str,
        view: Any,
        context: str,
        indexed: bool = False,
    ) -> GraphReply:
        query = dict(call.query)
        offset = 0
        if "$skiptoken" in query:
            try:
                saved = json.loads(_unb64(query.pop("$skiptoken")))
                query, offset = dict(saved["q"]), int(saved["o"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("Invalid skip token.") from None
            # The views read $select from the call: a next page is rendered as the first page's
            # query asked, as on Graph, whose skip token carries the whole query.
            call.query.clear()
            call.query.update(query)
        advanced_mode = (
            call.headers.get("consistencylevel", "").lower() == "eventual"
            and query.get("$count", "").lower() == "true"
        )
        if "$filter" in query:
            try:
                parsed = parse_filter(query["$filter"], filters, resource)
            except FilterSyntaxError as exc:
                raise GraphError(400, "BadRequest", f"Invalid filter clause: {exc}") from None
            except FilterUnsupported as exc:
                raise GraphError(400, "Request_UnsupportedQuery", str(exc)) from None
            if parsed.advanced and not advanced_mode:
                raise GraphError(400, "Request_UnsupportedQuery", "Unsupported Query.")
            if not advanced_mode:
                _check_limits(parsed, resource)
            indexable = parsed.equalities is not None and all(
                name in INDEXED_USER_PROPERTIES for name, _ in parsed.equalities
            )
            if indexed and indexable and parsed.equalities is not None:
                items = self._candidates(parsed.equalities, items)
            items = [item for item in items if parsed.matches(record(item))]
        top_text = query.get("$top", str(DEFAULT_PAGE_SIZE))
        if not top_text.isdigit() or not 1 <= int(top_text) <= MAX_PAGE_SIZE:
            raise bad_request(
                f"Invalid page size specified: '{top_text}'. Must be between 1 and "
                f"{MAX_PAGE_SIZE} inclusive."
            )
        top = int(top_text)
        page_items = items[offset : offset + top]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/$metadata#{context}"}
        if advanced_mode and offset == 0:
            body["@odata.count"] = len(items)
        if offset + top < len(items):
            token = _b64(json.dumps({"q": query, "o": offset + top}))
            body["@odata.nextLink"] = (
                f"{self.base_url}{call.path}?{urlencode({'$skiptoken': token})}"
            )
        body["value"] = [view(item) for item in page_items]
        return GraphReply(200, body)

    def _candidates(self, equalities: set[tuple[str, Any]], items: list[Any]) -> list[Any]:
        """Users an equality filter can match, in list order, limited to ``items``."""
        found = {u.object_id: u for pair in equalities for u in self._index.get(pair, [])}
        if len(items) != len(self._position):
            allowed = {u.object_id for u in items}
            found = {k: v for k, v in found.items() if k in allowed}
        return sorted(found.values(), key=lambda u: self._position[u.object_id])
