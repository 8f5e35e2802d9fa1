"""Graph's users: ``GET /users``, ``GET /users/{id | userPrincipalName}`` and ``GET /me``.

A user is looked up by object id or UPN; an unknown one is 404 only for callers allowed to read
users (others get 403, as on Graph). ``PATCH`` of a user is in ``graph_attributes``: the sandbox
emulates custom security attribute writes only.
"""

from __future__ import annotations

from typing import Any

from .entra_directory import EntraUser
from .entra_tokens import Principal
from .graph_attributes import GraphAttributes
from .graph_messages import GraphCall, GraphError, GraphReply, bad_request, not_found
from .graph_permissions import INSUFFICIENT, READ_SELF, READ_USERS, require
from .graph_schema import USER_DEFAULT, USER_FILTERS, USER_PROPERTIES, selection, user_record


class GraphUsers(GraphAttributes):
    """Look users up, render them as ``$select`` asks, list them."""

    def _target_user(self, principal: Principal, parts: list[str]) -> EntraUser:
        if parts[0] == "me":
            if principal.user is None:
                raise bad_request("/me request is only valid with delegated authentication flow.")
            return principal.user
        user = self.state.find_user(parts[1])
        if user is None:
            if not principal.granted(READ_USERS):
                raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
            raise not_found(parts[1])
        return user

    def _user_view(self, principal: Principal, user: EntraUser, call: GraphCall) -> dict[str, Any]:
        selected = selection(call, USER_PROPERTIES, "user", USER_DEFAULT)
        record = user_record(user)
        view = {name: record.get(name) for name in selected if name != "customSecurityAttributes"}
        if "customSecurityAttributes" in selected:
            view["customSecurityAttributes"] = self._csa_view(principal, user)
        return view

    def _get_user(
        self, principal: Principal, call: GraphCall, user: EntraUser, *, is_self: bool
    ) -> GraphReply:
        require(principal, READ_SELF if is_self or user is principal.user else READ_USERS)
        body = {"@odata.context": f"{self.base_url}/$metadata#users/$entity"} | self._user_view(
            principal, user, call
        )
        return GraphReply(200, body)

    def _list_users(self, principal: Principal, call: GraphCall) -> GraphReply:
        require(principal, READ_USERS)
        return self._page(
            call,
            list(self.state.users.values()),
            user_record,
            USER_FILTERS,
            "User",
            lambda user: self._user_view(principal, user, call),
            "users",
            indexed=True,
        )
