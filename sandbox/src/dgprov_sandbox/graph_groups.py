"""Graph's groups: ``GET /groups``, ``/groups/{id}`` and their (transitive) members.

Members are users rendered as ``/users`` renders them, except that a caller without a user-read
permission gets only their ``id`` (Graph's limited information for inaccessible objects).
Nested groups are not modelled, so ``transitiveMembers`` equals ``members``.
"""

from __future__ import annotations

from typing import Any

from .entra_directory import EntraGroup, EntraUser
from .entra_tokens import Principal
from .graph_messages import GraphCall, GraphReply, not_found
from .graph_permissions import READ_MEMBERS, READ_USERS, require
from .graph_schema import (
    GROUP_FILTERS,
    GROUP_PROPERTIES,
    USER_FILTERS,
    group_record,
    project,
    user_record,
)
from .graph_users import GraphUsers


class GraphGroups(GraphUsers):
    """Look groups up, list them and their members."""

    def _group(self, key: str) -> EntraGroup:
        group = self.state.groups.get(key.lower())
        if group is None:
            raise not_found(key)
        return group

    def _list_groups(self, principal: Principal, call: GraphCall) -> GraphReply:
        require(principal, READ_MEMBERS | READ_USERS)
        return self._page(
            call,
            list(self.state.groups.values()),
            group_record,
            GROUP_FILTERS,
            "Group",
            lambda group: project(group_record(group), GROUP_PROPERTIES, call, "group"),
            "groups",
        )

    def _members(self, principal: Principal, call: GraphCall, group: EntraGroup) -> GraphReply:
        require(principal, READ_MEMBERS)
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
            user_record,
            USER_FILTERS,
            "User",
            view,
            "directoryObjects",
            indexed=True,
        )
