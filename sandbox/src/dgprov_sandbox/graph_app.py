"""HTTP face of the emulated Microsoft Graph (``/v1.0``), with JSON batching and throttling.

Every request, whether it arrives directly or inside ``$batch``, goes through one dispatcher
(``GraphService.dispatch``), so batch items are authorised, validated and throttled exactly as
direct calls are. The strict corners come from ``shared/reference/graph-msal.md``: custom security
attributes only on ``$select`` and ``null`` without read rights, advanced-query rules, opaque
``@odata.nextLink`` paging that needs its headers resent, and 429s inside batches.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .defguard_state import unix_seconds
from .entra_state import (
    GRAPH_APP_ID,
    GRAPH_AUDIENCE,
    ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN,
    ROLE_ATTRIBUTE_ASSIGNMENT_READER,
    ROLE_ATTRIBUTE_DEFINITION_ADMIN,
    ROLE_ATTRIBUTE_DEFINITION_READER,
    AttributeDefinition,
    EntraGroup,
    EntraState,
    EntraUser,
    Principal,
)
from .keys import TokenInvalid
from .odata import FilterSyntaxError, FilterUnsupported, PropertyRule, parse_filter
from .throttle import Throttle, format_retry_after, request_cost

READ_USERS = {
    "User.Read.All",
    "User.ReadBasic.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
READ_SELF = READ_USERS | {"User.Read", "User.ReadWrite"}
READ_MEMBERS = {
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
CSA_READ = {"CustomSecAttributeAssignment.Read.All", "CustomSecAttributeAssignment.ReadWrite.All"}
CSA_WRITE = {"CustomSecAttributeAssignment.ReadWrite.All"}
CSA_DEFINITIONS_READ = {
    "CustomSecAttributeDefinition.Read.All",
    "CustomSecAttributeDefinition.ReadWrite.All",
}
CSA_READ_ROLES = {ROLE_ATTRIBUTE_ASSIGNMENT_READER, ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN}
CSA_WRITE_ROLES = {ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN}
DEFINITION_READ_ROLES = {
    ROLE_ATTRIBUTE_DEFINITION_READER,
    ROLE_ATTRIBUTE_DEFINITION_ADMIN,
    ROLE_ATTRIBUTE_ASSIGNMENT_READER,
    ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN,
}
CSA_TYPE_WRITE = "#microsoft.directoryservices.customsecurityattributevalue"
CSA_TYPE_READ = "#microsoft.graph.customSecurityAttributeValue"
CSA_VALUE_MAX_LENGTH = 64
CSA_VALUES_PER_OBJECT = 50
MAX_PAGE_SIZE = 999
DEFAULT_PAGE_SIZE = 100
MAX_BATCH = 20
INSUFFICIENT = "Insufficient privileges to complete the operation."

USER_DEFAULT = [
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
]
USER_PROPERTIES = [
    *USER_DEFAULT,
    "accountEnabled",
    "otherMails",
    "proxyAddresses",
    "mailNickname",
    "userType",
    "customSecurityAttributes",
]
GROUP_PROPERTIES = [
    "id",
    "displayName",
    "description",
    "mail",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
]
USER_FILTERS = {
    "id": PropertyRule("id"),
    "mail": PropertyRule("mail"),
    "userPrincipalName": PropertyRule("userPrincipalName"),
    "displayName": PropertyRule("displayName"),
    "givenName": PropertyRule("givenName"),
    "surname": PropertyRule("surname"),
    "accountEnabled": PropertyRule("accountEnabled"),
    "otherMails": PropertyRule("otherMails", collection=True),
    "proxyAddresses": PropertyRule("proxyAddresses", collection=True),
}
GROUP_FILTERS = {
    "id": PropertyRule("id"),
    "displayName": PropertyRule("displayName"),
    "mail": PropertyRule("mail"),
}
INDEXED_USER_PROPERTIES = (
    "id",
    "mail",
    "userPrincipalName",
    "displayName",
    "otherMails",
    "proxyAddresses",
)
KNOWN_QUERY_OPTIONS = {"$filter", "$select", "$top", "$count", "$skiptoken"}
UNEMULATED_QUERY_OPTIONS = {"$expand", "$orderby", "$search", "$skip", "$format"}


class GraphError(Exception):
    """A Graph failure, rendered in Graph's error envelope."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class GraphCall:
    method: str
    path: str  # below /v1.0, starting with "/"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any = None


@dataclass
class GraphReply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error_body(code: str, message: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": headers.get("request-id", ""),
                "client-request-id": headers.get("client-request-id", ""),
            },
        }
    }


def _not_found(key: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are "
        "not present.",
    )


def _bad_request(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def route_template(path: str) -> str:
    """``/users/3f..`` -> ``/users/{id}``; used for counters and throttling costs."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "/"
    named = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        previous = parts[index - 1]
        if previous in ("users", "groups", "attributeSets", "customSecurityAttributeDefinitions"):
            named.append("{id}")
        else:
            named.append(part)
    return "/" + "/".join(named)


class GraphService:
    """The Graph endpoints of one tenant."""

    def __init__(self, state: EntraState, throttle: Throttle, base_url: str, seed: int) -> None:
        self.state = state
        self.throttle = throttle
        self.base_url = base_url  # ends in /v1.0
        self.rng = random.Random(f"{seed}:graph")
        self.counts: Counter[str] = Counter()
        # (property, lower-cased value) -> users; directory properties never change here.
        self._index: dict[tuple[str, Any], list[EntraUser]] = {}
        self._position: dict[str, int] = {}
        for position, user in enumerate(state.users.values()):
            self._position[user.object_id] = position
            record = self._user_record(user)
            for name in INDEXED_USER_PROPERTIES:
                values = record[name] if isinstance(record[name], list) else [record[name]]
                for value in values:
                    key = (name, value.lower() if isinstance(value, str) else value)
                    self._index.setdefault(key, []).append(user)

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
                error.status, error_body(error.code, error.message, call.headers), error.headers
            )
        reply.headers.update(throttle_headers)
        return reply

    def _route(self, principal: Principal, call: GraphCall, template: str) -> GraphReply:
        parts = [p for p in call.path.split("/") if p]
        method = call.method
        self._check_query_options(call)
        if template == "/users" and method == "GET":
            return self._list_users(principal, call)
        if template in ("/users/{id}", "/me"):
            user = self._target_user(principal, parts)
            if method == "GET":
                return self._get_user(principal, call, user, is_self=template == "/me")
            if method == "PATCH":
                return self._patch_user(principal, call, user)
            raise self._method_not_allowed()
        if template == "/groups" and method == "GET":
            return self._list_groups(principal, call)
        if template == "/groups/{id}" and method == "GET":
            group = self._group(parts[1])
            self._require(principal, READ_MEMBERS | READ_USERS)
            return GraphReply(
                200, self._project(self._group_record(group), GROUP_PROPERTIES, call, "group")
            )
        if (
            len(parts) in (3, 4)
            and parts[0] == "groups"
            and parts[2] in ("members", "transitiveMembers")
        ):
            if method != "GET":
                raise self._method_not_allowed()
            if len(parts) == 4 and parts[3] != "microsoft.graph.user":
                raise _bad_request(f"Unsupported type cast segment '{parts[3]}'.")
            return self._members(principal, call, self._group(parts[1]))
        if parts[:1] == ["directory"] and len(parts) in (2, 3):
            if method != "GET":
                raise self._method_not_allowed()
            return self._definitions(principal, parts)
        raise GraphError(
            400,
            "BadRequest",
            f"Resource not found for the segment '{parts[0] if parts else ''}'.",
        )

    @staticmethod
    def _method_not_allowed() -> GraphError:
        return GraphError(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
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
                raise _bad_request(f"Query option '{option}' is not allowed.")

    @staticmethod
    def _require(principal: Principal, permissions: set[str]) -> None:
        if not principal.granted(permissions):
            raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)

    # ----------------------------------------------------------------------------------- users

    def _target_user(self, principal: Principal, parts: list[str]) -> EntraUser:
        if parts[0] == "me":
            if principal.user is None:
                raise _bad_request("/me request is only valid with delegated authentication flow.")
            return principal.user
        user = self.state.find_user(parts[1])
        if user is None:
            if not principal.granted(READ_USERS):
                raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
            raise _not_found(parts[1])
        return user

    @staticmethod
    def _user_record(user: EntraUser) -> dict[str, Any]:
        return {
            "id": user.object_id,
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": user.given_name,
            "jobTitle": None,
            "mail": user.mail,
            "mobilePhone": user.mobile_phone,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": user.surname,
            "userPrincipalName": user.user_principal_name,
            "accountEnabled": user.account_enabled,
            "otherMails": list(user.other_mails),
            "proxyAddresses": list(user.proxy_addresses),
            "mailNickname": user.user_principal_name.split("@", 1)[0],
            "userType": "Member",
        }

    def _csa_view(self, principal: Principal, user: EntraUser) -> dict[str, Any] | None:
        """Custom security attributes as Graph returns them: null when unset *or* unreadable."""
        if not (principal.granted(CSA_READ) and principal.in_role(CSA_READ_ROLES)):
            return None
        view: dict[str, Any] = {}
        for set_id, values in user.custom_security_attributes.items():
            present = {k: v for k, v in values.items() if v is not None and v != []}
            if not present:
                continue
            entry: dict[str, Any] = {"@odata.type": CSA_TYPE_READ}
            for name, value in present.items():
                definition = self.state.definitions.get((set_id.lower(), name))
                if definition is not None and definition.is_collection:
                    entry[f"{name}@odata.type"] = (
                        f"#Collection({definition.type.replace('Integer', 'Int32')})"
                    )
                elif definition is not None and definition.type == "Integer":
                    entry[f"{name}@odata.type"] = "#Int32"
                entry[name] = value
            view[set_id] = entry
        return view or None

    def _selection(
        self, call: GraphCall, allowed: list[str], resource: str, default: list[str]
    ) -> list[str]:
        raw = call.query.get("$select")
        if raw is None:
            return default
        canonical = {name.lower(): name for name in allowed}
        selected = []
        for name in (n.strip() for n in raw.split(",") if n.strip()):
            if name.lower() not in canonical:
                raise _bad_request(
                    f"Could not find a property named '{name}' on type "
                    f"'microsoft.graph.{resource}'."
                )
            selected.append(canonical[name.lower()])
        return list(dict.fromkeys(selected))

    def _project(
        self, record: dict[str, Any], allowed: list[str], call: GraphCall, resource: str
    ) -> dict[str, Any]:
        default = USER_DEFAULT if resource == "user" else allowed
        return {
            name: record.get(name) for name in self._selection(call, allowed, resource, default)
        }

    def _user_view(self, principal: Principal, user: EntraUser, call: GraphCall) -> dict[str, Any]:
        selected = self._selection(call, USER_PROPERTIES, "user", USER_DEFAULT)
        record = self._user_record(user)
        view = {name: record.get(name) for name in selected if name != "customSecurityAttributes"}
        if "customSecurityAttributes" in selected:
            view["customSecurityAttributes"] = self._csa_view(principal, user)
        return view

    def _get_user(
        self, principal: Principal, call: GraphCall, user: EntraUser, *, is_self: bool
    ) -> GraphReply:
        self._require(principal, READ_SELF if is_self or user is principal.user else READ_USERS)
        body = {"@odata.context": f"{self.base_url}/$metadata#users/$entity"} | self._user_view(
            principal, user, call
        )
        return GraphReply(200, body)

    def _list_users(self, principal: Principal, call: GraphCall) -> GraphReply:
        self._require(principal, READ_USERS)
        return self._page(
            call,
            list(self.state.users.values()),
            self._user_record,
            USER_FILTERS,
            "User",
            lambda user: self._user_view(principal, user, call),
            "users",
            indexed=True,
        )

    # ------------------------------------------------------------------------- paging + filters

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
                raise _bad_request("Invalid skip token.") from None
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
            indexable = parsed.equalities is not None and all(
                name in INDEXED_USER_PROPERTIES for name, _ in parsed.equalities
            )
            if indexed and indexable and parsed.equalities is not None:
                items = self._candidates(parsed.equalities, items)
            items = [item for item in items if parsed.matches(record(item))]
        top_text = query.get("$top", str(DEFAULT_PAGE_SIZE))
        if not top_text.isdigit() or not 1 <= int(top_text) <= MAX_PAGE_SIZE:
            raise _bad_request(
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

    # ---------------------------------------------------------------------------------- groups

    def _group(self, key: str) -> EntraGroup:
        group = self.state.groups.get(key.lower())
        if group is None:
            raise _not_found(key)
        return group

    @staticmethod
    def _group_record(group: EntraGroup) -> dict[str, Any]:
        return {
            "id": group.object_id,
            "displayName": group.display_name,
            "description": None,
            "mail": None,
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
        }

    def _list_groups(self, principal: Principal, call: GraphCall) -> GraphReply:
        self._require(principal, READ_MEMBERS | READ_USERS)
        return self._page(
            call,
            list(self.state.groups.values()),
            self._group_record,
            GROUP_FILTERS,
            "Group",
            lambda group: self._project(self._group_record(group), GROUP_PROPERTIES, call, "group"),
            "groups",
        )

    def _members(self, principal: Principal, call: GraphCall, group: EntraGroup) -> GraphReply:
        self._require(principal, READ_MEMBERS)
        full = principal.granted(READ_USERS)
        users = [self.state.users[i] for i in group.member_ids if i in self.state.users]

        def view(user: EntraUser) -> dict[str, Any]:
            item = self._user_view(principal, user, call)
            if not full:  # limited information for inaccessible member objects
                item = {k: (v if k == "id" else None) for k, v in item.items()}
            return {"@odata.type": "#microsoft.graph.user"} | item

        return self._page(
            call,
            users,
            self._user_record,
            USER_FILTERS,
            "User",
            view,
            "directoryObjects",
            indexed=True,
        )

    # ------------------------------------------------------------ custom security attributes

    def _definitions(self, principal: Principal, parts: list[str]) -> GraphReply:
        self._require(principal, CSA_DEFINITIONS_READ)
        if not principal.in_role(DEFINITION_READ_ROLES):
            raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
        if parts[1] == "attributeSets":
            sets: list[dict[str, Any]] = [
                {
                    "id": s.id,
                    "description": s.description,
                    "maxAttributesPerSet": s.max_attributes_per_set,
                }
                for s in self.state.attribute_sets.values()
            ]
            if len(parts) == 3:
                match = next((s for s in sets if s["id"].lower() == parts[2].lower()), None)
                if match is None:
                    raise _not_found(parts[2])
                return GraphReply(
                    200,
                    {"@odata.context": f"{self.base_url}/$metadata#directory/attributeSets/$entity"}
                    | match,
                )
            return GraphReply(
                200,
                {
                    "@odata.context": f"{self.base_url}/$metadata#directory/attributeSets",
                    "value": sets,
                },
            )
        if parts[1] == "customSecurityAttributeDefinitions":
            views = [_definition_view(d) for d in self.state.definitions.values()]
            if len(parts) == 3:
                match = next((v for v in views if v["id"].lower() == parts[2].lower()), None)
                if match is None:
                    raise _not_found(parts[2])
                return GraphReply(200, match)
            return GraphReply(
                200,
                {
                    "@odata.context": (
                        f"{self.base_url}/$metadata#directory/customSecurityAttributeDefinitions"
                    ),
                    "value": views,
                },
            )
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[1]}'.")

    def _patch_user(self, principal: Principal, call: GraphCall, user: EntraUser) -> GraphReply:
        body = call.body
        if not isinstance(body, dict):
            raise _bad_request("Empty Payload. JSON content expected.")
        unsupported = [key for key in body if key != "customSecurityAttributes"]
        if unsupported:
            raise _bad_request(
                "The sandbox emulates updates of customSecurityAttributes only, not "
                f"'{unsupported[0]}'."
            )
        attributes = body.get("customSecurityAttributes")
        if attributes is None:
            return GraphReply(204)
        self._require(principal, CSA_WRITE)
        if principal.delegated:
            self._require(principal, READ_USERS)
        if not principal.in_role(CSA_WRITE_ROLES):
            raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
        if not isinstance(attributes, dict):
            raise _bad_request("Invalid property 'customSecurityAttributes'.")
        changes = self._validate_csa(attributes)
        merged = {k: dict(v) for k, v in user.custom_security_attributes.items()}
        for set_id, values in changes.items():
            merged.setdefault(set_id, {}).update(values)
        count = sum(
            len(v) if isinstance(v, list) else 1
            for values in merged.values()
            for v in values.values()
            if v is not None and v != []
        )
        if count > CSA_VALUES_PER_OBJECT:
            raise _bad_request(
                f"An object can hold at most {CSA_VALUES_PER_OBJECT} custom security "
                "attribute values."
            )
        user.custom_security_attributes = merged
        return GraphReply(204)

    def _validate_csa(self, attributes: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Check a PATCH's attribute sets and values; return changes keyed by defined set id."""
        changes: dict[str, dict[str, Any]] = {}
        for set_name, values in attributes.items():
            attribute_set = self.state.attribute_sets.get(set_name.lower())
            if attribute_set is None:
                raise _bad_request(f"Invalid property '{set_name}'.")
            if not isinstance(values, dict):
                # Graph answers a set sent as a JSON string with 204 and changes nothing.
                continue
            odata_type = values.get("@odata.type")
            if not isinstance(odata_type, str) or odata_type.lower() not in (
                CSA_TYPE_WRITE,
                CSA_TYPE_READ.lower(),
            ):
                raise _bad_request(
                    f"Invalid property '{set_name}': the @odata.type "
                    "'#Microsoft.DirectoryServices.CustomSecurityAttributeValue' is required."
                )
            change: dict[str, Any] = {}
            for key, value in values.items():
                if key == "@odata.type" or key.endswith("@odata.type"):
                    continue
                definition = self.state.definitions.get((attribute_set.id.lower(), key))
                if definition is None or definition.status != "Available":
                    raise _bad_request(f"Invalid property '{key}'.")
                _check_value(definition, value, values.get(f"{key}@odata.type"))
                change[key] = value
            changes[attribute_set.id] = change
        return changes

    # ----------------------------------------------------------------------------------- batch

    def batch(
        self, principal: Principal, payload: Any, outer_headers: dict[str, str]
    ) -> GraphReply:
        if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
            raise _bad_request("Invalid batch payload format.")
        requests = payload["requests"]
        if len(requests) > MAX_BATCH:
            raise _bad_request("Number of requests inside batch exceeds the limit.")
        by_id: dict[str, dict[str, Any]] = {}
        for item in requests:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("id", "method", "url")
            ):
                raise _bad_request(
                    "Each batch request needs string 'id', 'method' and 'url' properties."
                )
            if item["id"].lower() in by_id:
                raise _bad_request(f"Batch request id '{item['id']}' is duplicated.")
            by_id[item["id"].lower()] = item
        for item in requests:
            for dependency in item.get("dependsOn") or []:
                if (
                    str(dependency).lower() not in by_id
                    or str(dependency).lower() == item["id"].lower()
                ):
                    raise _bad_request(
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


def _check_value(definition: AttributeDefinition, value: Any, annotation: Any) -> None:
    name = definition.name
    if value is None or (definition.is_collection and value == []):
        return
    python_type = {"String": str, "Integer": int, "Boolean": bool}[definition.type]
    values = value if definition.is_collection else [value]
    if definition.is_collection and not isinstance(value, list):
        raise _bad_request(f"Invalid value for property '{name}': a collection is expected.")
    expected_annotation = (
        f"#Collection({definition.type.replace('Integer', 'Int32')})"
        if definition.is_collection
        else ("#Int32" if definition.type == "Integer" else None)
    )
    if expected_annotation is not None and annotation != expected_annotation:
        raise _bad_request(
            f"Invalid value for property '{name}': '{name}@odata.type' must be "
            f"'{expected_annotation}'."
        )
    for single in values:
        if not isinstance(single, python_type) or (python_type is int and isinstance(single, bool)):
            raise _bad_request(
                f"Invalid value for property '{name}': a {definition.type} is expected."
            )
        if isinstance(single, str) and len(single) > CSA_VALUE_MAX_LENGTH:
            raise _bad_request(
                f"Invalid value for property '{name}': the value exceeds the maximum length of "
                f"{CSA_VALUE_MAX_LENGTH} characters."
            )


def _definition_view(definition: AttributeDefinition) -> dict[str, Any]:
    return {
        "id": definition.id,
        "attributeSet": definition.attribute_set,
        "name": definition.name,
        "type": definition.type,
        "isCollection": definition.is_collection,
        "isSearchable": True,
        "status": definition.status,
        "usePreDefinedValuesOnly": False,
        "description": definition.description,
    }


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
            raise _bad_request("The dependsOn references of the batch form a cycle.")
        for key in ready:
            ordered.append(remaining.pop(key))
            done.add(key)
    return ordered


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


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
                    raise GraphService._method_not_allowed()
                reply = service.batch(principal, body, headers)
            else:
                call = GraphCall(request.method, path, dict(request.query_params), headers, body)
                reply = service.dispatch(principal, call)
        except GraphError as error:
            reply = GraphReply(
                error.status, error_body(error.code, error.message, headers), error.headers
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
