"""Which Graph permissions and directory roles each operation needs, as Graph checks them.

Delegated callers need a scope from the set, app-only callers an app role from it (see
``Principal.granted``); reading and writing custom security attributes also needs a directory
role of the signed-in user. The table in ``docs/sandbox.md`` documents these sets.
"""

from __future__ import annotations

from .entra_directory import (
    ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN,
    ROLE_ATTRIBUTE_ASSIGNMENT_READER,
    ROLE_ATTRIBUTE_DEFINITION_ADMIN,
    ROLE_ATTRIBUTE_DEFINITION_READER,
)
from .entra_tokens import Principal
from .graph_messages import GraphError

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
INSUFFICIENT = "Insufficient privileges to complete the operation."


def require(principal: Principal, permissions: set[str]) -> None:
    if not principal.granted(permissions):
        raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
