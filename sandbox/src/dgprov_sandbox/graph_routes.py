"""Authentication, throttling and routing of one Graph request to its handler.

``dispatch`` is the single entry every request takes, direct or inside ``$batch``: it admits the
request through the throttle, routes it by its template (``/users/{id}``) and turns a
``GraphError`` into a reply. To serve a new path, add a branch to ``_route`` calling the handler
of its resource layer (the setup endpoints route themselves in ``graph_setup._setup_route``).
"""

from __future__ import annotations

import re

from .clock import unix_seconds
from .entra_directory import GRAPH_APP_ID, GRAPH_AUDIENCE
from .entra_tokens import Principal
from .graph_messages import (
    GraphCall,
    GraphError,
    GraphReply,
    bad_request,
    error_body,
    method_not_allowed,
)
from .graph_permissions import READ_MEMBERS, READ_USERS, require
from .graph_schema import (
    GROUP_PROPERTIES,
    KNOWN_QUERY_OPTIONS,
    UNEMULATED_QUERY_OPTIONS,
    group_record,
    project,
)
from .graph_setup import GraphSetup
from .keys import TokenInvalid
from .throttle import Throttle, format_retry_after, request_cost


def route_template(path: str) -> str:
    """``/users/3f..`` -> ``/users/{id}``; used for counters and throttling costs."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "/"
    named = [re.sub(r"\(.*\)$", "({key})", parts[0])]
    for index, part in enumerate(parts[1:], start=1):
        previous = parts[index - 1]
        if previous in (
            "users",
            "groups",
            "attributeSets",
            "customSecurityAttributeDefinitions",
            "applications",
            "servicePrincipals",
            "oauth2PermissionGrants",
            "roleAssignments",
        ):
            named.append("{id}")
        else:
            named.append(part)
    return "/" + "/".join(named)


class GraphRoutes(GraphSetup):
    """Authenticate a caller, then throttle and route each of its requests."""

    throttle: Throttle

    # ---------------------------------------------------------------------------- authentication

    def authenticate(self, authorization: str | None) -> Principal:
        def invalid(message: str) -> GraphError:
            return GraphError(
                401,
                "InvalidAuthenticationToken",
                message,
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )

        if (
            not authorization
            or not authorization.startswith("Bearer ")
            or not authorization[7:].strip()
        ):
            raise invalid("Access token is empty.")
        try:
            claims = self.state.signer.verify(authorization[7:].strip())
        except TokenInvalid:
            raise invalid("Access token validation failure. Invalid signature.") from None
        if claims.get("aud") not in (GRAPH_AUDIENCE, GRAPH_APP_ID):
            raise invalid("Access token validation failure. Invalid audience.")
        if claims.get("tid") != self.state.tenant_id:
            raise invalid("Access token validation failure. Invalid issuer.")
        if int(claims.get("exp", 0)) <= unix_seconds(self.state.clock.now()):
            raise invalid("Lifetime validation failed, the token is expired.")
        principal = self.state.principal(claims)
        if claims.get("idtyp") != "app" and principal.user is None:
            raise invalid("Access token validation failure. The user does not exist.")
        return principal

    # --------------------------------------------------------------------------------- dispatch

    def dispatch(self, principal: Principal, call: GraphCall) -> GraphReply:
        """Throttle, route and run one request; errors become replies."""
        template = route_template(call.path)
        route_key = (
            template.rsplit("/", 1)[-1]
            if template.endswith(("members", "transitiveMembers"))
            else ""
        )
        if template == "/users":
            route_key = "users"
        verdict = self.throttle.admit(
            principal.app_id,
            request_cost(call.method, route_key, call.query),
            write=call.method != "GET",
        )
        throttle_headers = {"x-ms-resource-unit": str(verdict.cost)}
        if not verdict.allowed:
            retry = format_retry_after(verdict.retry_after)
            headers = throttle_headers | {
                "Retry-After": retry,
                "x-ms-throttle-scope": verdict.scope,
                "x-ms-throttle-information": verdict.information,
            }
            return GraphReply(
                429,
                error_body("TooManyRequests", "Please retry again later.", call.headers) | {},
                headers,
            )
        if verdict.usage > 0.8:
            throttle_headers["x-ms-throttle-limit-percentage"] = f"{verdict.usage:.1f}"
        try:
            reply = self._route(principal, call, template)
        except GraphError as error:
            reply = GraphReply(
                error.status,
                error_body(error.code, error.message, call.headers, error.details),
                error.headers,
            )
        reply.headers.update(throttle_headers)
        return reply

    def _route(self, principal: Principal, call: GraphCall, template: str) -> GraphReply:
        parts = [p for p in call.path.split("/") if p]
        method = call.method
        self._check_query_options(call)
        setup_reply = self._setup_route(principal, call, parts)
        if setup_reply is not None:
            return setup_reply
        if template == "/users" and method == "GET":
            return self._list_users(principal, call)
        if template in ("/users/{id}", "/me"):
            user = self._target_user(principal, parts)
            if method == "GET":
                return self._get_user(principal, call, user, is_self=template == "/me")
            if method == "PATCH":
                return self._patch_user(principal, call, user)
            raise method_not_allowed()
        if template == "/groups" and method == "GET":
            return self._list_groups(principal, call)
        if template == "/groups/{id}" and method == "GET":
            group = self._group(parts[1])
            require(principal, READ_MEMBERS | READ_USERS)
            return GraphReply(200, project(group_record(group), GROUP_PROPERTIES, call, "group"))
        if (
            len(parts) in (3, 4)
            and parts[0] == "groups"
            and parts[2] in ("members", "transitiveMembers")
        ):
            if method != "GET":
                raise method_not_allowed()
            if len(parts) == 4 and parts[3] != "microsoft.graph.user":
                raise bad_request(f"Unsupported type cast segment '{parts[3]}'.")
            return self._members(principal, call, self._group(parts[1]))
        if parts[:1] == ["directory"] and len(parts) in (2, 3):
            if method != "GET":
                raise method_not_allowed()
            return self._definitions(principal, call, parts)
        raise GraphError(
            400,
            "BadRequest",
            f"Resource not found for the segment '{parts[0] if parts else ''}'.",
        )

    @staticmethod
    def _check_query_options(call: GraphCall) -> None:
        for option in call.query:
            if not option.startswith("$"):
                continue
            if option in UNEMULATED_QUERY_OPTIONS:
                raise GraphError(
                    400, "Request_UnsupportedQuery", f"The sandbox does not emulate {option}."
                )
            if option not in KNOWN_QUERY_OPTIONS:
                raise bad_request(f"Query option '{option}' is not allowed.")
