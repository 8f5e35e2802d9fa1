"""Custom security attributes on Graph: reading them on users, writing them, their definitions.

The strict corners of ``shared/reference/graph-msal.md``: values appear only on ``$select`` and
are ``null`` without read rights (scope *and* directory role), a PATCH is validated against the
attribute definitions (type, annotation, length, values per object), and the attribute sets and
definitions need their own permission.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from .entra_directory import AttributeDefinition, EntraUser
from .entra_state import EntraState
from .entra_tokens import Principal
from .graph_filters import DEFINITION_FILTERS, filter_records
from .graph_messages import GraphCall, GraphError, GraphReply, bad_request, not_found
from .graph_paging import GraphPaging
from .graph_permissions import (
    CSA_DEFINITIONS_READ,
    CSA_READ,
    CSA_READ_ROLES,
    CSA_WRITE,
    CSA_WRITE_ROLES,
    DEFINITION_READ_ROLES,
    INSUFFICIENT,
    READ_USERS,
    require,
)

EmptyPatchRule = Literal["checked", "unchecked", "rejected"]
EMPTY_PATCH_RULES: tuple[EmptyPatchRule, ...] = ("checked", "unchecked", "rejected")
CsaReadRole = Literal["reader", "administrator"]
CSA_READ_ROLE_CHOICES: tuple[CsaReadRole, ...] = ("reader", "administrator")

CSA_TYPE_WRITE = "#microsoft.directoryservices.customsecurityattributevalue"
CSA_TYPE_READ = "#microsoft.graph.customSecurityAttributeValue"
CSA_VALUE_MAX_LENGTH = 64
CSA_VALUES_PER_OBJECT = 50


class GraphAttributes(GraphPaging):
    """``customSecurityAttributes`` of users and ``/directory/...`` attribute definitions."""

    state: EntraState
    empty_patch_rule: EmptyPatchRule
    csa_read_role: CsaReadRole

    def _csa_view(self, principal: Principal, user: EntraUser) -> dict[str, Any] | None:
        """Custom security attributes as Graph returns them: null when unset *or* unreadable.

        Which directory role a delegated reader needs is unsettled (decision G2): ``reader``
        (default) follows the role definitions, where Attribute Assignment Reader reads
        assignments; ``administrator`` follows user-get.md (12/2024), which names Attribute
        Assignment Administrator as the least privileged role.
        """
        roles = CSA_READ_ROLES if self.csa_read_role == "reader" else CSA_WRITE_ROLES
        if not (principal.granted(CSA_READ) and principal.in_role_anywhere(roles)):
            return None
        view: dict[str, Any] = {}
        for set_id, values in user.custom_security_attributes.items():
            if not principal.in_role(roles, set_id):
                continue  # a role scoped to another attribute set reads nothing here
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

    def _definitions(self, principal: Principal, call: GraphCall, parts: list[str]) -> GraphReply:
        require(principal, CSA_DEFINITIONS_READ)
        if not principal.in_role_anywhere(DEFINITION_READ_ROLES):
            raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
        now = self.state.clock.now()

        def readable(set_id: str, visible_from: Any) -> bool:
            replicated = visible_from is None or now >= visible_from
            return replicated and principal.in_role(DEFINITION_READ_ROLES, set_id)

        if parts[1] == "attributeSets":
            sets: list[dict[str, Any]] = [
                {
                    "id": s.id,
                    "description": s.description,
                    "maxAttributesPerSet": s.max_attributes_per_set,
                }
                for s in self.state.attribute_sets.values()
                if readable(s.id, s.visible_from)
            ]
            if len(parts) == 3:
                match = next((s for s in sets if s["id"].lower() == parts[2].lower()), None)
                if match is None:
                    raise not_found(parts[2])
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
            views = [
                _definition_view(d)
                for d in self.state.definitions.values()
                if readable(d.attribute_set, d.visible_from)
            ]
            if len(parts) == 2 and "$filter" in call.query:
                views = filter_records(views, call.query["$filter"], DEFINITION_FILTERS)
            if len(parts) == 3:
                match = next((v for v in views if v["id"].lower() == parts[2].lower()), None)
                if match is None:
                    raise not_found(parts[2])
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
            raise bad_request("Empty Payload. JSON content expected.")
        unsupported = [key for key in body if key != "customSecurityAttributes"]
        if unsupported:
            raise bad_request(
                "The sandbox emulates updates of customSecurityAttributes only, not "
                f"'{unsupported[0]}'."
            )
        attributes = body.get("customSecurityAttributes")
        if attributes is None:
            return GraphReply(204)
        if _names_no_attribute(attributes) and self.empty_patch_rule != "checked":
            # Decision G1: undocumented; "checked" falls through to the permission checks.
            if self.empty_patch_rule == "rejected":
                raise bad_request(
                    "The sandbox refuses a customSecurityAttributes update that assigns no "
                    "attribute (--empty-attribute-patch rejected)."
                )
            self._validate_csa(attributes)
            return GraphReply(204)
        require(principal, CSA_WRITE)
        if principal.delegated:
            require(principal, READ_USERS)
        if not principal.in_role_anywhere(CSA_WRITE_ROLES):
            raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
        if not isinstance(attributes, dict):
            raise bad_request("Invalid property 'customSecurityAttributes'.")
        changes = self._validate_csa(attributes)
        if not all(principal.in_role(CSA_WRITE_ROLES, set_id) for set_id in changes):
            raise GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)
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
            raise bad_request(
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
            if attribute_set is not None and not _replicated(self, attribute_set.visible_from):
                attribute_set = None
            if attribute_set is None:
                raise bad_request(f"Invalid property '{set_name}'.")
            if not isinstance(values, dict):
                # Graph answers a set sent as a JSON string with 204 and changes nothing.
                continue
            odata_type = values.get("@odata.type")
            if not isinstance(odata_type, str) or odata_type.lower() not in (
                CSA_TYPE_WRITE,
                CSA_TYPE_READ.lower(),
            ):
                raise bad_request(
                    f"Invalid property '{set_name}': the @odata.type "
                    "'#Microsoft.DirectoryServices.CustomSecurityAttributeValue' is required."
                )
            change: dict[str, Any] = {}
            for key, value in values.items():
                if key == "@odata.type" or key.endswith("@odata.type"):
                    continue
                definition = self.state.definitions.get((attribute_set.id.lower(), key))
                if (
                    definition is None
                    or definition.status != "Available"
                    or not _replicated(self, definition.visible_from)
                ):
                    raise bad_request(f"Invalid property '{key}'.")
                _check_value(definition, value, values.get(f"{key}@odata.type"))
                change[key] = value
            changes[attribute_set.id] = change
        return changes


def _replicated(layer: GraphAttributes, visible_from: datetime | None) -> bool:
    return visible_from is None or layer.state.clock.now() >= visible_from


def _names_no_attribute(attributes: Any) -> bool:
    """A PATCH whose sets carry nothing but ``@odata.type`` annotations (or no set at all)."""
    if not isinstance(attributes, dict):
        return False
    return all(
        isinstance(values, dict) and all(key.endswith("@odata.type") for key in values)
        for values in attributes.values()
    )


def _check_value(definition: AttributeDefinition, value: Any, annotation: Any) -> None:
    name = definition.name
    if value is None or (definition.is_collection and value == []):
        return
    python_type = {"String": str, "Integer": int, "Boolean": bool}[definition.type]
    values = value if definition.is_collection else [value]
    if definition.is_collection and not isinstance(value, list):
        raise bad_request(f"Invalid value for property '{name}': a collection is expected.")
    expected_annotation = (
        f"#Collection({definition.type.replace('Integer', 'Int32')})"
        if definition.is_collection
        else ("#Int32" if definition.type == "Integer" else None)
    )
    if expected_annotation is not None and annotation != expected_annotation:
        raise bad_request(
            f"Invalid value for property '{name}': '{name}@odata.type' must be "
            f"'{expected_annotation}'."
        )
    for single in values:
        if not isinstance(single, python_type) or (python_type is int and isinstance(single, bool)):
            raise bad_request(
                f"Invalid value for property '{name}': a {definition.type} is expected."
            )
        if single == "" and definition.type == "String":
            # msgraph-sdk-powershell#1938: Graph refuses an empty String value (it is not a way
            # to remove an assignment).
            raise bad_request("Non empty string value expected for attribute.")
        if isinstance(single, str) and len(single) > CSA_VALUE_MAX_LENGTH:
            raise bad_request(
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
        "isSearchable": definition.is_searchable,
        "status": definition.status,
        "usePreDefinedValuesOnly": definition.use_predefined_values_only,
        "description": definition.description,
    }
