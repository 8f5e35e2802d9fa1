"""``$filter`` and ``$select`` on the small collections setup-entra reads (applications, service
principals, grants, role assignments, attribute definitions): no paging, no index, Graph's
error codes for a filter it cannot parse or does not support."""

from __future__ import annotations

from typing import Any

from .graph_messages import GraphCall, GraphError
from .odata import FilterSyntaxError, FilterUnsupported, PropertyRule, parse_filter

DEFINITION_FILTERS = {
    name: PropertyRule(name) for name in ("attributeSet", "name", "status", "type", "id")
}
APPLICATION_FILTERS = {
    name: PropertyRule(name) for name in ("appId", "uniqueName", "displayName", "id")
}
SERVICE_PRINCIPAL_FILTERS = {
    name: PropertyRule(name) for name in ("appId", "displayName", "id")
} | {"servicePrincipalNames": PropertyRule("servicePrincipalNames", collection=True)}
GRANT_FILTERS = {
    name: PropertyRule(name)
    for name in ("clientId", "consentType", "principalId", "resourceId", "id")
}
ROLE_ASSIGNMENT_FILTERS = {
    name: PropertyRule(name)
    for name in ("principalId", "roleDefinitionId", "directoryScopeId", "id")
}


def filter_records(
    records: list[dict[str, Any]], text: str, rules: dict[str, PropertyRule]
) -> list[dict[str, Any]]:
    """The records ``$filter`` keeps; advanced constructs (``ne``, ``not``) are not offered."""
    try:
        parsed = parse_filter(text, rules, "resource")
    except FilterSyntaxError as exc:
        raise GraphError(400, "BadRequest", str(exc)) from None
    except FilterUnsupported as exc:
        raise GraphError(400, "Request_UnsupportedQuery", str(exc)) from None
    if parsed.advanced:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            f"Unsupported query: {', '.join(sorted(parsed.advanced))} on this resource.",
        )
    return [record for record in records if parsed.matches(record)]


def select(call: GraphCall, record: dict[str, Any]) -> dict[str, Any]:
    """``$select``: only the named properties (and ``id``); all of them without it."""
    wanted = call.query.get("$select")
    if not wanted:
        return record
    names = {n.strip() for n in wanted.split(",") if n.strip()} | {"id"}
    return {k: v for k, v in record.items() if k in names or k.startswith("@odata.")}
