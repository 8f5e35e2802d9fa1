"""The Graph resources the sandbox serves: their properties, filters and ``$select`` rules.

Records are what Graph would hold for a directory object (``user_record``, ``group_record``);
``selection`` and ``project`` apply ``$select`` the strict way Graph does (only the selected
properties, unknown ones refused). The filter rules say which properties ``$filter`` accepts.
"""

from __future__ import annotations

from typing import Any

from .entra_directory import EntraGroup, EntraUser
from .graph_messages import GraphCall, bad_request
from .odata import PropertyRule

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


def user_record(user: EntraUser) -> dict[str, Any]:
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
        "userType": user.user_type,
    }


def group_record(group: EntraGroup) -> dict[str, Any]:
    return {
        "id": group.object_id,
        "displayName": group.display_name,
        "description": None,
        "mail": None,
        "mailEnabled": False,
        "securityEnabled": True,
        "groupTypes": [],
    }


def selection(call: GraphCall, allowed: list[str], resource: str, default: list[str]) -> list[str]:
    raw = call.query.get("$select")
    if raw is None:
        return default
    canonical = {name.lower(): name for name in allowed}
    selected = []
    for name in (n.strip() for n in raw.split(",") if n.strip()):
        if name.lower() not in canonical:
            raise bad_request(
                f"Could not find a property named '{name}' on type 'microsoft.graph.{resource}'."
            )
        selected.append(canonical[name.lower()])
    return list(dict.fromkeys(selected))


def project(
    record: dict[str, Any], allowed: list[str], call: GraphCall, resource: str
) -> dict[str, Any]:
    default = USER_DEFAULT if resource == "user" else allowed
    return {name: record.get(name) for name in selection(call, allowed, resource, default)}
