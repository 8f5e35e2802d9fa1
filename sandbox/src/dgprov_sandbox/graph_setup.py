"""The Graph endpoints ``dgprov setup-entra`` calls, with their permissions, roles, duplicates.

``shared/reference/setup-entra.md`` maps them: attribute sets and definitions (``POST``),
applications (``GET``/``POST``/``PATCH``, the ``uniqueName`` upsert with ``Prefer:
create-if-missing``, ``addPassword``), service principals, ``oauth2PermissionGrants``,
``appRoleAssignedTo``, directory role assignments and ``/me/memberOf`` for the preflight. The
objects live in ``entra_setup.SetupDirectory``; after every write it re-derives what sign-ins
get. Objects not yet replicated (``--entra-replication-delay``) answer 404 on reads by id, are
missing from lists and are refused as references, as the reference's section 8 records.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from .clock import naive_iso
from .entra_directory import (
    ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN,
    ROLE_ATTRIBUTE_ASSIGNMENT_READER,
    ROLE_ATTRIBUTE_DEFINITION_ADMIN,
    ROLE_USER_ADMIN,
    AttributeDefinition,
    AttributeSet,
)
from .entra_setup import (
    ATTRIBUTE_ROLES,
    DEFAULT_ACCESS_ROLE,
    ROLE_APP_ADMIN,
    ROLE_APP_DEVELOPER,
    ROLE_CLOUD_APP_ADMIN,
    ROLE_DIRECTORY_READERS,
    ROLE_DIRECTORY_WRITERS,
    ROLE_GLOBAL_ADMIN,
    ROLE_GLOBAL_READER,
    ROLE_PRIVILEGED_ROLE_ADMIN,
    ROLE_TEMPLATES,
    AppRoleAssignment,
    PermissionGrant,
    Registration,
    RoleAssignment,
    ServicePrincipal,
    SetupDirectory,
    made_up_id,
    role_template_id,
)
from .entra_tokens import Principal
from .graph_filters import (
    APPLICATION_FILTERS,
    GRANT_FILTERS,
    ROLE_ASSIGNMENT_FILTERS,
    SERVICE_PRINCIPAL_FILTERS,
    filter_records,
    select,
)
from .graph_groups import GraphGroups
from .graph_messages import (
    GraphCall,
    GraphError,
    GraphReply,
    bad_request,
    method_not_allowed,
    not_found,
)
from .graph_permissions import INSUFFICIENT, READ_SELF, require
from .odata import PropertyRule

APP_READ = {
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
APP_CREATE = {"AppRegistration.Create", "Application.ReadWrite.All", "Directory.ReadWrite.All"}
APP_WRITE = {"Application.ReadWrite.All", "Directory.ReadWrite.All"}
GROUP_READ = {
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
GRANT_READ = {
    "DelegatedPermissionGrant.Read.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
GRANT_WRITE = {"DelegatedPermissionGrant.ReadWrite.All", "Directory.ReadWrite.All"}
APP_ROLE_WRITE = {"AppRoleAssignment.ReadWrite.All"}
ROLE_READ = {
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
ROLE_WRITE = {"RoleManagement.ReadWrite.Directory"}
DEFINITION_WRITE = {"CustomSecAttributeDefinition.ReadWrite.All"}

APP_ADMIN_ROLES = {ROLE_APP_ADMIN, ROLE_CLOUD_APP_ADMIN, ROLE_GLOBAL_ADMIN}
GRANT_ROLES = {
    ROLE_APP_ADMIN,
    ROLE_APP_DEVELOPER,
    ROLE_CLOUD_APP_ADMIN,
    ROLE_DIRECTORY_WRITERS,
    ROLE_PRIVILEGED_ROLE_ADMIN,
    ROLE_USER_ADMIN,
    ROLE_GLOBAL_ADMIN,
}
PRIVILEGED_ROLES = {ROLE_PRIVILEGED_ROLE_ADMIN, ROLE_GLOBAL_ADMIN}
ROLE_READ_ROLES = {ROLE_DIRECTORY_READERS, ROLE_GLOBAL_READER, *PRIVILEGED_ROLES}
DEFINITION_ADMIN_ROLES = {ROLE_ATTRIBUTE_DEFINITION_ADMIN}

APP_PROPERTIES = {
    "displayName",
    "uniqueName",
    "description",
    "notes",
    "tags",
    "signInAudience",
    "isFallbackPublicClient",
    "publicClient",
    "web",
    "spa",
    "api",
    "identifierUris",
    "appRoles",
    "requiredResourceAccess",
    "keyCredentials",
}
SIGN_IN_AUDIENCES = {
    "AzureADMyOrg",
    "AzureADMultipleOrgs",
    "AzureADandPersonalMicrosoftAccount",
    "PersonalMicrosoftAccount",
}
CONFLICT = (
    "A conflicting object with one or more of the specified property values is present in the "
    "directory."
)
NOT_REPLICATED = "Not a valid reference update."
_ALT_KEY = re.compile(r"^(applications|servicePrincipals)\((appId|uniqueName)='([^']*)'\)$")
_SET_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,31}$")
MAX_ATTRIBUTE_SETS = 500
SECRET_LIFETIME = timedelta(days=730)


def _denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", INSUFFICIENT)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else naive_iso(moment) + "Z"


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _body(call: GraphCall) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise bad_request("Empty Payload. JSON content expected.")
    return call.body


def _collection(base_url: str, name: str, values: list[dict[str, Any]]) -> dict[str, Any]:
    return {"@odata.context": f"{base_url}/$metadata#{name}", "value": values}


class GraphSetup(GraphGroups):
    """Handlers of the setup endpoints; ``_setup_route`` answers None for other paths."""

    @property
    def setup(self) -> SetupDirectory:
        return self.state.setup

    def _listing(
        self,
        call: GraphCall,
        name: str,
        views: list[dict[str, Any]],
        filters: dict[str, PropertyRule] | None = None,
    ) -> GraphReply:
        """A collection answer: the views ``$filter`` keeps (where ``filters`` says which
        properties it may name), each cut down by ``$select``."""
        if filters is not None and "$filter" in call.query:
            views = filter_records(views, call.query["$filter"], filters)
        return GraphReply(200, _collection(self.base_url, name, [select(call, v) for v in views]))

    def _duplicate(self, message: str = CONFLICT) -> GraphError:
        """Decision G5: the answer to a duplicate no Microsoft page documents."""
        if self.setup.duplicate_answer == "conflict":
            return GraphError(409, "Request_MultipleObjectsWithSameKeyValue", message)
        return bad_request(message)

    def _setup_route(
        self, principal: Principal, call: GraphCall, parts: list[str]
    ) -> GraphReply | None:
        self.setup.settle()
        method = call.method
        head = parts[0] if parts else ""
        alt = _ALT_KEY.match(head)
        if alt:
            head = alt.group(1)
        if head == "applications":
            return self._applications(principal, call, parts, alt)
        if head == "servicePrincipals":
            return self._service_principals(principal, call, parts, alt)
        if head == "oauth2PermissionGrants" and len(parts) <= 2:
            return self._grants(principal, call, parts)
        if parts[:3] == ["roleManagement", "directory", "roleAssignments"] and len(parts) <= 4:
            return self._role_assignments(principal, call, parts)
        if parts[:1] == ["directory"] and len(parts) == 2 and method == "POST":
            if parts[1] == "attributeSets":
                return self._create_attribute_set(principal, call)
            if parts[1] == "customSecurityAttributeDefinitions":
                return self._create_definition(principal, call)
            raise method_not_allowed()
        if head == "me" and len(parts) in (2, 3) and parts[1] in ("memberOf", "transitiveMemberOf"):
            if method != "GET":
                raise method_not_allowed()
            return self._member_of(principal, call, parts)
        return None

    # ------------------------------------------------------------------------ attribute sets

    def _create_attribute_set(self, principal: Principal, call: GraphCall) -> GraphReply:
        require(principal, DEFINITION_WRITE)
        if not principal.in_role(DEFINITION_ADMIN_ROLES):
            raise _denied()
        body = _body(call)
        unknown = sorted(set(body) - {"id", "description", "maxAttributesPerSet"})
        if unknown:
            raise bad_request(f"Invalid property '{unknown[0]}'.")
        set_id = body.get("id")
        if not isinstance(set_id, str) or not _SET_ID.match(set_id):
            raise bad_request(
                "Invalid value for property 'id': up to 32 letters or digits, no spaces or "
                "special characters."
            )
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 128):
            raise bad_request("Invalid value for property 'description': up to 128 characters.")
        maximum = body.get("maxAttributesPerSet")
        if maximum is not None and (
            not isinstance(maximum, int) or isinstance(maximum, bool) or not 1 <= maximum <= 500
        ):
            raise bad_request("Invalid value for property 'maxAttributesPerSet': 1 to 500.")
        if set_id.lower() in self.state.attribute_sets:
            raise self._duplicate()
        if len(self.state.attribute_sets) >= MAX_ATTRIBUTE_SETS:
            raise bad_request(f"A tenant can hold at most {MAX_ATTRIBUTE_SETS} attribute sets.")
        created = self.setup.created_now()
        attribute_set = AttributeSet(
            set_id, description or "", maximum, visible_from=self.setup.visible_from(created)
        )
        self.state.attribute_sets[set_id.lower()] = attribute_set
        return GraphReply(
            201,
            {
                "@odata.context": f"{self.base_url}/$metadata#directory/attributeSets/$entity",
                "id": set_id,
                "description": description,
                "maxAttributesPerSet": maximum,
            },
        )

    def _create_definition(self, principal: Principal, call: GraphCall) -> GraphReply:
        require(principal, DEFINITION_WRITE)
        body = _body(call)
        set_name = body.get("attributeSet")
        if not principal.in_role(
            DEFINITION_ADMIN_ROLES, set_name if isinstance(set_name, str) else None
        ):
            raise _denied()
        allowed = {
            "attributeSet",
            "name",
            "description",
            "type",
            "isCollection",
            "isSearchable",
            "status",
            "usePreDefinedValuesOnly",
        }
        unknown = sorted(set(body) - allowed)
        if unknown:
            if unknown[0] == "allowedValues":
                raise bad_request("The sandbox does not emulate predefined values (allowedValues).")
            raise bad_request(f"Invalid property '{unknown[0]}'.")
        for name in ("attributeSet", "name", "type", "status"):
            if not isinstance(body.get(name), str):
                raise bad_request(f"Property '{name}' is required and must be a string.")
        for name in ("isCollection", "isSearchable", "usePreDefinedValuesOnly"):
            if not isinstance(body.get(name), bool):
                raise bad_request(f"Property '{name}' is required and must be a Boolean.")
        if body["type"] not in ("String", "Integer", "Boolean"):
            raise bad_request("Invalid value for property 'type': String, Integer or Boolean.")
        if body["status"] not in ("Available", "Deprecated"):
            raise bad_request("Invalid value for property 'status': Available or Deprecated.")
        if not _ATTRIBUTE_NAME.match(body["name"]):
            raise bad_request(
                "Invalid value for property 'name': up to 32 letters or digits, starting with a "
                "letter."
            )
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 128):
            raise bad_request("Invalid value for property 'description': up to 128 characters.")
        if body["usePreDefinedValuesOnly"]:
            raise bad_request("The sandbox does not emulate predefined values (allowedValues).")
        attribute_set = self.state.attribute_sets.get(body["attributeSet"].lower())
        if attribute_set is None or not self.setup.visible_or_seeded(attribute_set.visible_from):
            raise bad_request(f"Invalid value for property 'attributeSet': {body['attributeSet']}.")
        key = (attribute_set.id.lower(), body["name"])
        if any(k[0] == key[0] and k[1].lower() == key[1].lower() for k in self.state.definitions):
            raise self._duplicate()
        in_set = sum(1 for k in self.state.definitions if k[0] == key[0])
        if attribute_set.max_attributes_per_set is not None and (
            in_set >= attribute_set.max_attributes_per_set
        ):
            raise bad_request(
                f"The attribute set {attribute_set.id} already holds its maximum of "
                f"{attribute_set.max_attributes_per_set} attributes."
            )
        created = self.setup.created_now()
        definition = AttributeDefinition(
            attribute_set=attribute_set.id,
            name=body["name"],
            type=body["type"],
            is_collection=body["isCollection"],
            status=body["status"],
            description=description or "",
            use_predefined_values_only=False,
            is_searchable=body["isSearchable"],
            visible_from=self.setup.visible_from(created),
        )
        self.state.definitions[key] = definition
        context = f"{self.base_url}/$metadata#directory/customSecurityAttributeDefinitions/$entity"
        view = {
            "@odata.context": context,
            "id": definition.id,
            "attributeSet": definition.attribute_set,
            "name": definition.name,
            "description": description,
            "type": definition.type,
            "isCollection": definition.is_collection,
            "isSearchable": definition.is_searchable,
            "status": definition.status,
            "usePreDefinedValuesOnly": False,
        }
        return GraphReply(201, view)

    # --------------------------------------------------------------------------- applications

    def _app_view(self, registration: Registration) -> dict[str, Any]:
        record = registration.record
        view: dict[str, Any] = {
            "id": registration.object_id,
            "appId": registration.app_id,
            "createdDateTime": _iso(registration.created_at),
            "displayName": None,
            "uniqueName": None,
            "signInAudience": "AzureADMyOrg",
            "isFallbackPublicClient": None,
            "identifierUris": [],
            "publicClient": {"redirectUris": []},
            "web": {"redirectUris": []},
            "spa": {"redirectUris": []},
            "api": {
                "requestedAccessTokenVersion": None,
                "oauth2PermissionScopes": [],
                "preAuthorizedApplications": [],
                "knownClientApplications": [],
            },
            "appRoles": [],
            "requiredResourceAccess": [],
        }
        for name, value in record.items():
            if isinstance(value, dict) and isinstance(view.get(name), dict):
                view[name] = view[name] | value
            else:
                view[name] = value
        view["keyCredentials"] = [k | {"key": None} for k in record.get("keyCredentials") or []]
        view["passwordCredentials"] = [
            {k: v for k, v in p.items() if k != "secretText"} | {"secretText": None}
            for p in registration.passwords
        ]
        return view

    def _find_registration(self, alt: re.Match[str] | None, key: str) -> Registration | None:
        if alt is not None:
            prop, value = alt.group(2), alt.group(3).lower()
            for registration in self.setup.registrations.values():
                held = (
                    registration.app_id
                    if prop == "appId"
                    else registration.record.get("uniqueName")
                )
                if isinstance(held, str) and held.lower() == value:
                    return registration
            return None
        return self.setup.registrations.get(key.lower())

    def _may_change(self, principal: Principal, registration: Registration) -> bool:
        if principal.user is None:
            return True
        return principal.user.object_id in registration.owner_ids or principal.in_role(
            APP_ADMIN_ROLES
        )

    def _applications(
        self,
        principal: Principal,
        call: GraphCall,
        parts: list[str],
        alt: re.Match[str] | None,
    ) -> GraphReply:
        method = call.method
        if len(parts) == 1 and alt is None:
            if method == "GET":
                require(principal, APP_READ)
                records = [
                    self._app_view(r)
                    for r in self.setup.registrations.values()
                    if self.setup.visible(r.created_at)
                ]
                return self._listing(call, "applications", records, APPLICATION_FILTERS)
            if method == "POST":
                require(principal, APP_CREATE)
                return self._create_application(principal, _body(call), None)
            raise method_not_allowed()
        key = parts[0] if alt is not None else parts[1]
        rest = parts[1:] if alt is not None else parts[2:]
        registration = self._find_registration(alt, key)
        if rest == ["addPassword"]:
            if method != "POST":
                raise method_not_allowed()
            return self._add_password(principal, call, registration, key)
        if rest:
            raise bad_request(f"Resource not found for the segment '{rest[0]}'.")
        upsert = alt is not None and alt.group(2) == "uniqueName"
        if method == "GET":
            require(principal, APP_READ)
            if registration is None or not self.setup.visible(registration.created_at):
                raise not_found(key)
            view = self._app_view(registration)
            context = f"{self.base_url}/$metadata#applications/$entity"
            return GraphReply(200, {"@odata.context": context} | select(call, view))
        if method != "PATCH":
            raise method_not_allowed()
        body = _body(call)
        if registration is None:
            wants_create = "create-if-missing" in call.headers.get("prefer", "").lower()
            if not (upsert and wants_create):
                raise not_found(key)
            assert alt is not None
            require(principal, APP_CREATE)
            if "uniqueName" in body and body["uniqueName"] != alt.group(3):
                raise bad_request("The uniqueName in the body differs from the one in the URL.")
            return self._create_application(principal, body, alt.group(3))
        # An upsert finds its app by the alternate key even before it has replicated: the key is
        # a uniqueness constraint. A PATCH by id of an unreplicated app answers 404.
        if not upsert and not self.setup.visible(registration.created_at):
            raise not_found(key)
        require(principal, APP_WRITE)
        if not self._may_change(principal, registration):
            raise _denied()
        if upsert:
            assert alt is not None
            body = {k: v for k, v in body.items() if k != "uniqueName" or v != alt.group(3)}
        self._validate_application(body, registration)
        registration.record = self._merged(registration.record, body)
        registration.through_graph = True
        self.setup.refresh()
        return GraphReply(204)

    def _create_application(
        self, principal: Principal, body: dict[str, Any], unique_name: str | None
    ) -> GraphReply:
        if not isinstance(body.get("displayName"), str) or not body["displayName"].strip():
            raise bad_request("Property 'displayName' is required.")
        if unique_name is not None:
            body = body | {"uniqueName": unique_name}
        self._validate_application(body, None)
        record = self._merged({"signInAudience": "AzureADMyOrg"}, body)
        registration = Registration(
            object_id=self.setup.new_id(),
            app_id=self.setup.new_id(),
            record=record,
            owner_ids={principal.user.object_id} if principal.user else set(),
            created_at=self.setup.created_now(),
            through_graph=True,
        )
        self.setup.registrations[registration.object_id] = registration
        self.setup.refresh()
        context = f"{self.base_url}/$metadata#applications/$entity"
        return GraphReply(201, {"@odata.context": context} | self._app_view(registration))

    @staticmethod
    def _merged(record: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Top-level properties are replaced; the properties of ``api``, ``publicClient``,
        ``web`` and ``spa`` are replaced one by one (decision G8)."""
        merged = dict(record)
        for name, value in body.items():
            if isinstance(value, dict) and isinstance(merged.get(name), dict):
                merged[name] = merged[name] | value
            else:
                merged[name] = value
        return merged

    def _validate_application(self, body: dict[str, Any], existing: Registration | None) -> None:
        unknown = sorted(set(body) - APP_PROPERTIES)
        if unknown:
            raise bad_request(
                f"Property '{unknown[0]}' does not exist on type 'microsoft.graph.application' "
                "(or the sandbox does not emulate it)."
            )
        others = [r for r in self.setup.registrations.values() if r is not existing]
        if "uniqueName" in body:
            name = body["uniqueName"]
            held = existing.record.get("uniqueName") if existing else None
            if held is not None and held != name:
                raise bad_request("Property 'uniqueName' is immutable once set.")
            if not isinstance(name, str) or not name:
                raise bad_request("Invalid value for property 'uniqueName'.")
            if any(str(r.record.get("uniqueName", "")).lower() == name.lower() for r in others):
                raise self._duplicate(
                    "Another object with the same value for property uniqueName already exists."
                )
        if "displayName" in body and (
            not isinstance(body["displayName"], str) or len(body["displayName"]) > 256
        ):
            raise bad_request("Invalid value for property 'displayName'.")
        if "signInAudience" in body and body["signInAudience"] not in SIGN_IN_AUDIENCES:
            raise bad_request("Invalid value for property 'signInAudience'.")
        if "isFallbackPublicClient" in body and not isinstance(
            body["isFallbackPublicClient"], bool | None
        ):
            raise bad_request("Invalid value for property 'isFallbackPublicClient'.")
        for name in ("publicClient", "web", "spa"):
            if name in body:
                value = body[name]
                uris = value.get("redirectUris", []) if isinstance(value, dict) else None
                if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
                    raise bad_request(f"Invalid value for property '{name}'.")
        if "identifierUris" in body:
            uris = body["identifierUris"]
            if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
                raise bad_request("Invalid value for property 'identifierUris'.")
            taken = {u.lower() for r in others for u in r.record.get("identifierUris") or []}
            taken |= {
                a.identifier_uri.lower()
                for a in self.state.applications.values()
                if a.identifier_uri and (existing is None or a.client_id != existing.app_id)
            }
            if any(u.lower() in taken for u in uris):
                raise self._duplicate(
                    "Another object with the same value for property identifierUris already exists."
                )
        old_record = existing.record if existing else {}
        if "api" in body:
            api = body["api"]
            if not isinstance(api, dict):
                raise bad_request("Invalid value for property 'api'.")
            if api.get("requestedAccessTokenVersion") not in (None, 1, 2):
                raise bad_request("Invalid value for property 'requestedAccessTokenVersion'.")
            old_api = old_record.get("api") or {}
            scopes = api.get("oauth2PermissionScopes", old_api.get("oauth2PermissionScopes") or [])
            _check_permissions(scopes, old_api.get("oauth2PermissionScopes") or [], "scope")
            scope_ids = {s["id"] for s in scopes}
            for entry in api.get("preAuthorizedApplications") or []:
                if not isinstance(entry, dict) or not _is_uuid(entry.get("appId")):
                    raise bad_request("Invalid value for property 'preAuthorizedApplications'.")
                if not set(entry.get("permissionIds") or []) <= scope_ids:
                    raise bad_request(
                        "Property preAuthorizedApplications references a permission id the "
                        "application does not define."
                    )
        if "appRoles" in body:
            _check_permissions(body["appRoles"], old_record.get("appRoles") or [], "role")
        if "requiredResourceAccess" in body:
            entries = body["requiredResourceAccess"]
            if not isinstance(entries, list) or not all(
                isinstance(e, dict) and _is_uuid(e.get("resourceAppId")) for e in entries
            ):
                raise bad_request("Invalid value for property 'requiredResourceAccess'.")
        if "keyCredentials" in body:
            keys = body["keyCredentials"]
            if not isinstance(keys, list):
                raise bad_request("Invalid value for property 'keyCredentials'.")
            for entry in keys:
                try:
                    x509.load_der_x509_certificate(base64.b64decode(entry["key"], validate=True))
                except (KeyError, TypeError, ValueError, binascii.Error):
                    raise bad_request(
                        "Invalid value for property 'keyCredentials': 'key' must be a base64 "
                        "DER X.509 certificate."
                    ) from None
                if entry.get("type") != "AsymmetricX509Cert" or entry.get("usage") != "Verify":
                    raise bad_request(
                        "Invalid value for property 'keyCredentials': type AsymmetricX509Cert "
                        "and usage Verify."
                    )
                entry.setdefault("keyId", self.setup.new_id())

    def _add_password(
        self,
        principal: Principal,
        call: GraphCall,
        registration: Registration | None,
        key: str,
    ) -> GraphReply:
        require(principal, APP_WRITE)
        if registration is None or not self.setup.visible(registration.created_at):
            raise not_found(key)
        if not self._may_change(principal, registration):
            raise _denied()
        body = call.body if isinstance(call.body, dict) else {}
        spec = body.get("passwordCredential") or {}
        if not isinstance(spec, dict):
            raise bad_request("Invalid value for property 'passwordCredential'.")
        now = self.setup.now()
        end = spec.get("endDateTime")
        if end is not None:
            try:
                ends = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
            except ValueError:
                raise bad_request("Invalid value for property 'endDateTime'.") from None
            if ends <= now:
                raise bad_request("Invalid value for property 'endDateTime': it is in the past.")
            end_text = _iso(ends)
        else:
            end_text = _iso(now + SECRET_LIFETIME)
        secret = self.setup.new_secret()
        credential = {
            "customKeyIdentifier": None,
            "displayName": spec.get("displayName"),
            "endDateTime": end_text,
            "hint": secret[:3],
            "keyId": self.setup.new_id(),
            "secretText": secret,
            "startDateTime": _iso(now),
        }
        registration.passwords.append(credential)
        registration.through_graph = True
        self.setup.refresh()
        context = f"{self.base_url}/$metadata#microsoft.graph.passwordCredential"
        return GraphReply(200, {"@odata.context": context} | credential)

    # ---------------------------------------------------------------------- service principals

    def _sp_view(self, sp: ServicePrincipal) -> dict[str, Any]:
        registration = self.setup.registration_by_app_id(sp.app_id)
        uris = list(registration.record.get("identifierUris") or []) if registration else []
        return {
            "id": sp.id,
            "appId": sp.app_id,
            "displayName": (
                registration.record.get("displayName", sp.display_name)
                if registration
                else sp.display_name
            ),
            "accountEnabled": True,
            "appRoleAssignmentRequired": sp.app_role_assignment_required,
            "servicePrincipalType": "Application",
            "servicePrincipalNames": [sp.app_id, *uris],
            "createdDateTime": _iso(sp.created_at),
            "appRoles": self.setup.sp_roles(sp),
            "oauth2PermissionScopes": self.setup.sp_scopes(sp),
        }

    def _find_sp(self, alt: re.Match[str] | None, key: str) -> ServicePrincipal | None:
        if alt is not None:
            if alt.group(2) != "appId":
                raise bad_request("Service principals have the alternate key appId only.")
            return self.setup.sp_for_app(alt.group(3))
        return self.setup.service_principals.get(key.lower())

    def _may_change_sp(self, principal: Principal, app_id: str) -> bool:
        registration = self.setup.registration_by_app_id(app_id)
        owner = (
            registration is not None
            and principal.user is not None
            and principal.user.object_id in registration.owner_ids
        )
        return owner or principal.in_role(APP_ADMIN_ROLES)

    def _service_principals(
        self,
        principal: Principal,
        call: GraphCall,
        parts: list[str],
        alt: re.Match[str] | None,
    ) -> GraphReply:
        method = call.method
        if len(parts) == 1 and alt is None:
            if method == "GET":
                require(principal, APP_READ)
                records = [
                    self._sp_view(s)
                    for s in self.setup.service_principals.values()
                    if self.setup.visible(s.created_at)
                ]
                return self._listing(call, "servicePrincipals", records, SERVICE_PRINCIPAL_FILTERS)
            if method == "POST":
                body = _body(call)
                return self._create_sp(principal, body, body.get("appId"))
            raise method_not_allowed()
        key = parts[0] if alt is not None else parts[1]
        rest = parts[1:] if alt is not None else parts[2:]
        sp = self._find_sp(alt, key)
        if rest in (["appRoleAssignedTo"], ["appRoleAssignments"]):
            if sp is None or not self.setup.visible(sp.created_at):
                raise not_found(key)
            if method == "GET":
                return self._list_app_role_assignments(principal, call, sp, rest[0])
            if method == "POST" and rest[0] == "appRoleAssignedTo":
                return self._assign_app_role(principal, _body(call), sp)
            raise method_not_allowed()
        if rest:
            raise bad_request(f"Resource not found for the segment '{rest[0]}'.")
        if method == "GET":
            require(principal, APP_READ)
            if sp is None or not self.setup.visible(sp.created_at):
                raise not_found(key)
            context = f"{self.base_url}/$metadata#servicePrincipals/$entity"
            return GraphReply(200, {"@odata.context": context} | select(call, self._sp_view(sp)))
        if method != "PATCH":
            raise method_not_allowed()
        body = _body(call)
        if sp is None:
            wants_create = "create-if-missing" in call.headers.get("prefer", "").lower()
            if alt is None or not wants_create:
                raise not_found(key)
            return self._create_sp(principal, body | {"appId": alt.group(3)}, alt.group(3))
        if alt is None and not self.setup.visible(sp.created_at):
            raise not_found(key)
        require(principal, APP_WRITE)
        if not self._may_change_sp(principal, sp.app_id):
            raise _denied()
        self._update_sp(sp, {k: v for k, v in body.items() if k != "appId"})
        self.setup.refresh()
        return GraphReply(204)

    @staticmethod
    def _update_sp(sp: ServicePrincipal, body: dict[str, Any]) -> None:
        unknown = sorted(set(body) - {"appRoleAssignmentRequired", "tags"})
        if unknown:
            raise bad_request(
                f"Property '{unknown[0]}' does not exist on type "
                "'microsoft.graph.servicePrincipal' (or the sandbox does not emulate it)."
            )
        if "appRoleAssignmentRequired" in body:
            if not isinstance(body["appRoleAssignmentRequired"], bool):
                raise bad_request("Invalid value for property 'appRoleAssignmentRequired'.")
            sp.app_role_assignment_required = body["appRoleAssignmentRequired"]

    def _create_sp(self, principal: Principal, body: dict[str, Any], app_id: Any) -> GraphReply:
        require(principal, APP_WRITE)
        if not isinstance(app_id, str) or not _is_uuid(app_id):
            raise bad_request("Property 'appId' is required and must be a GUID.")
        app_id = app_id.lower()
        if self.setup.sp_for_app(app_id) is not None:
            raise GraphError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                f"The service principal name {app_id} is already in use.",
            )
        registration = self.setup.registration_by_app_id(app_id)
        if registration is None or not self.setup.visible(registration.created_at):
            message = (
                f"The appId '{app_id}' of the service principal does not reference a valid "
                "application object."
            )
            raise GraphError(
                400,
                "Request_BadRequest",
                message,
                details=[
                    {"code": "NoBackingApplicationObject", "message": message, "target": "appId"}
                ],
            )
        if not self._may_change_sp(principal, app_id):
            raise _denied()
        sp = ServicePrincipal(
            self.setup.new_id(),
            app_id,
            registration.record.get("displayName", ""),
            created_at=self.setup.created_now(),
        )
        self._update_sp(sp, {k: v for k, v in body.items() if k != "appId"})
        self.setup.service_principals[sp.id] = sp
        app = self.state.applications.get(app_id)
        if app is not None:
            app.service_principal_id = sp.id
        self.setup.refresh()
        context = f"{self.base_url}/$metadata#servicePrincipals/$entity"
        return GraphReply(201, {"@odata.context": context} | self._sp_view(sp))

    # -------------------------------------------------------------------- app role assignments

    def _assignment_view(self, assignment: AppRoleAssignment) -> dict[str, Any]:
        resource = self.setup.service_principals[assignment.resource_id]
        return {
            "id": assignment.id,
            "appRoleId": assignment.app_role_id,
            "createdDateTime": _iso(assignment.created_at),
            "principalDisplayName": assignment.principal_display_name,
            "principalId": assignment.principal_id,
            "principalType": assignment.principal_type,
            "resourceDisplayName": resource.display_name,
            "resourceId": assignment.resource_id,
        }

    def _list_app_role_assignments(
        self, principal: Principal, call: GraphCall, sp: ServicePrincipal, kind: str
    ) -> GraphReply:
        require(principal, APP_READ | APP_ROLE_WRITE)
        side = "resource_id" if kind == "appRoleAssignedTo" else "principal_id"
        views = [
            self._assignment_view(a)
            for a in self.setup.app_role_assignments.values()
            if getattr(a, side) == sp.id and self.setup.visible(a.created_at)
        ]
        return self._listing(call, f"servicePrincipals('{sp.id}')/{kind}", views)

    def _assign_app_role(
        self, principal: Principal, body: dict[str, Any], resource: ServicePrincipal
    ) -> GraphReply:
        require(principal, APP_ROLE_WRITE)
        require(principal, APP_READ)
        for name in ("principalId", "resourceId", "appRoleId"):
            if not _is_uuid(body.get(name)):
                raise bad_request(f"Property '{name}' is required and must be a GUID.")
        if str(body["resourceId"]).lower() != resource.id:
            raise bad_request("Property 'resourceId' must be the service principal of the URL.")
        found = self.setup.principal_name(str(body["principalId"]))
        if found is None:
            raise bad_request(NOT_REPLICATED)
        principal_type, display_name = found
        if principal_type == "Group":
            require(principal, GROUP_READ)
        if resource is self.setup.graph_sp:
            allowed = principal.in_role(PRIVILEGED_ROLES)
        else:
            allowed = self._may_change_sp(principal, resource.app_id) or principal.in_role(
                PRIVILEGED_ROLES
            )
        if not allowed:
            raise _denied()
        role_id = str(body["appRoleId"]).lower()
        member_type = "Application" if principal_type == "ServicePrincipal" else "User"
        if role_id != DEFAULT_ACCESS_ROLE and not any(
            r["id"] == role_id
            and r.get("isEnabled", True)
            and member_type in r.get("allowedMemberTypes", [])
            for r in self.setup.sp_roles(resource)
        ):
            raise bad_request(
                f"Permission being assigned was not found on application '{resource.app_id}'."
            )
        principal_id = str(body["principalId"]).lower()
        if any(
            a.principal_id == principal_id
            and a.resource_id == resource.id
            and a.app_role_id == role_id
            for a in self.setup.app_role_assignments.values()
        ):
            raise self._duplicate("Permission being assigned already exists on the object.")
        assignment = AppRoleAssignment(
            self.setup.new_opaque_id(),
            principal_id,
            principal_type,
            display_name,
            resource.id,
            role_id,
            created_at=self.setup.created_now(),
        )
        self.setup.app_role_assignments[assignment.id] = assignment
        self.setup.refresh()
        context = (
            f"{self.base_url}/$metadata#servicePrincipals('{resource.id}')"
            "/appRoleAssignedTo/$entity"
        )
        return GraphReply(201, {"@odata.context": context} | self._assignment_view(assignment))

    # ------------------------------------------------------------------ delegated permissions

    @staticmethod
    def _grant_view(grant: PermissionGrant) -> dict[str, Any]:
        return {
            "id": grant.id,
            "clientId": grant.client_id,
            "consentType": grant.consent_type,
            "principalId": None,
            "resourceId": grant.resource_id,
            "scope": grant.scope,
        }

    def _checked_scope(self, value: Any, resource: ServicePrincipal) -> str:
        offered = {s["value"] for s in self.setup.sp_scopes(resource) if s.get("isEnabled", True)}
        names = value.split() if isinstance(value, str) else []
        if not names or not set(names) <= offered:
            raise bad_request(
                "Invalid value specified for property 'scope' of resource 'OAuth2PermissionGrant'."
            )
        return " ".join(dict.fromkeys(names))

    def _grants(self, principal: Principal, call: GraphCall, parts: list[str]) -> GraphReply:
        method = call.method
        setup = self.setup
        if len(parts) == 1:
            if method == "GET":
                require(principal, GRANT_READ)
                records = [
                    self._grant_view(g)
                    for g in setup.grants.values()
                    if setup.visible(g.created_at)
                ]
                return self._listing(call, "oauth2PermissionGrants", records, GRANT_FILTERS)
            if method != "POST":
                raise method_not_allowed()
            require(principal, GRANT_WRITE)
            if not principal.in_role(GRANT_ROLES):
                raise _denied()
            body = _body(call)
            if body.get("consentType") != "AllPrincipals":
                raise bad_request(
                    "The sandbox emulates consentType AllPrincipals only (tenant-wide admin "
                    "consent)."
                )
            if body.get("principalId") is not None:
                raise bad_request("principalId must be null when consentType is AllPrincipals.")
            ends: dict[str, ServicePrincipal] = {}
            for name in ("clientId", "resourceId"):
                sp = setup.service_principals.get(str(body.get(name, "")).lower())
                if sp is None or not setup.visible(sp.created_at):
                    raise bad_request(
                        f"Invalid value specified for property '{name}' of resource "
                        "'OAuth2PermissionGrant'."
                    )
                ends[name] = sp
            scope = self._checked_scope(body.get("scope"), ends["resourceId"])
            if any(
                g.client_id == ends["clientId"].id and g.resource_id == ends["resourceId"].id
                for g in setup.grants.values()
            ):
                raise GraphError(
                    409,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "Permission entry already exists.",
                )
            grant = PermissionGrant(
                setup.new_opaque_id(),
                ends["clientId"].id,
                ends["resourceId"].id,
                scope,
                created_at=setup.created_now(),
            )
            setup.grants[grant.id] = grant
            setup.refresh()
            context = f"{self.base_url}/$metadata#oauth2PermissionGrants/$entity"
            return GraphReply(201, {"@odata.context": context} | self._grant_view(grant))
        found = setup.grants.get(parts[1])
        if found is None or not setup.visible(found.created_at):
            raise not_found(parts[1])
        if method == "GET":
            require(principal, GRANT_READ)
            context = f"{self.base_url}/$metadata#oauth2PermissionGrants/$entity"
            return GraphReply(200, {"@odata.context": context} | self._grant_view(found))
        if method != "PATCH":
            raise method_not_allowed()
        require(principal, GRANT_WRITE)
        if not principal.in_role(GRANT_ROLES):
            raise _denied()
        body = _body(call)
        unknown = sorted(set(body) - {"scope"})
        if unknown:
            raise bad_request(f"Property '{unknown[0]}' cannot be updated.")
        if "scope" in body:
            found.scope = self._checked_scope(
                body["scope"], setup.service_principals[found.resource_id]
            )
        setup.refresh()
        return GraphReply(204)

    # ---------------------------------------------------------------- directory role assignments

    def _role_view(self, assignment: RoleAssignment) -> dict[str, Any]:
        return {
            "id": assignment.id,
            "principalId": assignment.principal_id,
            "roleDefinitionId": role_template_id(assignment.role_name),
            "directoryScopeId": assignment.directory_scope_id,
        }

    def _role_name(self, template_id: Any) -> str | None:
        known = {
            role_template_id(a.role_name): a.role_name for a in self.setup.role_assignments.values()
        }
        known |= {v: k for k, v in ROLE_TEMPLATES.items()}
        return known.get(str(template_id).lower())

    def _role_assignments(
        self, principal: Principal, call: GraphCall, parts: list[str]
    ) -> GraphReply:
        method = call.method
        setup = self.setup
        context = f"{self.base_url}/$metadata#roleManagement/directory/roleAssignments"
        if len(parts) == 4:
            if method != "GET":
                raise method_not_allowed()
            require(principal, ROLE_READ)
            if not principal.in_role(ROLE_READ_ROLES):
                raise _denied()
            found = setup.role_assignments.get(parts[3])
            if found is None or not setup.visible(found.created_at):
                raise not_found(parts[3])
            return GraphReply(
                200, {"@odata.context": f"{context}/$entity"} | self._role_view(found)
            )
        if method == "GET":
            require(principal, ROLE_READ)
            if not principal.in_role(ROLE_READ_ROLES):
                raise _denied()
            records = [
                self._role_view(a)
                for a in setup.role_assignments.values()
                if setup.visible(a.created_at)
            ]
            if "$filter" in call.query:
                records = filter_records(records, call.query["$filter"], ROLE_ASSIGNMENT_FILTERS)
            return GraphReply(200, {"@odata.context": context, "value": records})
        if method != "POST":
            raise method_not_allowed()
        require(principal, ROLE_WRITE)
        body = _body(call)
        role = self._role_name(body.get("roleDefinitionId"))
        if role is None:
            raise bad_request("Invalid value specified for property 'roleDefinitionId'.")
        scope = body.get("directoryScopeId")
        if not isinstance(scope, str):
            raise bad_request("Property 'directoryScopeId' is required.")
        set_id: str | None = None
        if scope != "/":
            prefix, _, name = scope.partition("/attributeSets/")
            attribute_set = self.state.attribute_sets.get(name.lower()) if not prefix else None
            if attribute_set is None or not setup.visible_or_seeded(attribute_set.visible_from):
                raise bad_request("Invalid value specified for property 'directoryScopeId'.")
            if role not in ATTRIBUTE_ROLES:
                raise bad_request(
                    f"The role {role} cannot be assigned at the scope of an attribute set."
                )
            set_id = attribute_set.id
            scope = f"/attributeSets/{set_id}"
        principal_id = str(body.get("principalId", "")).lower()
        if setup.principal_name(principal_id) is None:
            raise bad_request("Invalid value specified for property 'principalId'.")
        allowed = principal.in_role(PRIVILEGED_ROLES)
        if (
            not allowed
            and set_id is not None
            and setup.scoped_role_assigner == "attribute-assignment-administrator"
            and role in (ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN, ROLE_ATTRIBUTE_ASSIGNMENT_READER)
        ):
            # Decision G7: the Entra how-to signs in as Attribute Assignment Administrator.
            allowed = principal.in_role({ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN}, set_id)
        if not allowed:
            raise _denied()
        if any(
            a.role_name == role
            and a.principal_id == principal_id
            and a.directory_scope_id.lower() == scope.lower()
            for a in setup.role_assignments.values()
        ):
            raise self._duplicate()
        assignment = RoleAssignment(
            setup.new_opaque_id(), role, principal_id, scope, created_at=setup.created_now()
        )
        setup.role_assignments[assignment.id] = assignment
        setup.refresh()
        return GraphReply(
            201, {"@odata.context": f"{context}/$entity"} | self._role_view(assignment)
        )

    # ------------------------------------------------------------------------------ preflight

    def _member_of(self, principal: Principal, call: GraphCall, parts: list[str]) -> GraphReply:
        """``/me/memberOf`` and ``/me/transitiveMemberOf``, optionally cast to directoryRole or
        group: the tenant-wide roles (scoped ones are only in the role assignments)."""
        require(principal, READ_SELF)
        user = principal.user
        if user is None:
            raise bad_request("/me request is only valid with delegated authentication flow.")
        cast = parts[2] if len(parts) == 3 else None
        if cast not in (None, "microsoft.graph.directoryRole", "microsoft.graph.group"):
            raise bad_request(f"Unsupported type cast segment '{cast}'.")
        values: list[dict[str, Any]] = []
        if cast != "microsoft.graph.directoryRole":
            values += [
                {
                    "@odata.type": "#microsoft.graph.group",
                    "id": g.object_id,
                    "displayName": g.display_name,
                }
                for g in self.state.groups.values()
                if user.object_id in g.member_ids
            ]
        if cast != "microsoft.graph.group":
            values += [
                {
                    "@odata.type": "#microsoft.graph.directoryRole",
                    "id": made_up_id("directoryRole", self.state.tenant_id, name),
                    "displayName": name,
                    "description": None,
                    "roleTemplateId": role_template_id(name),
                }
                for name in sorted(user.directory_roles)
            ]
        name = "directoryObjects" if cast is None else cast.rpartition(".")[2] + "s"
        return self._listing(call, name, values)


def _check_permissions(entries: Any, previous: list[dict[str, Any]], kind: str) -> None:
    """Scopes and app roles: a client-chosen GUID and a value each; an enabled one can be
    neither removed nor changed (permissionscope.md: disable it first)."""
    if not isinstance(entries, list):
        raise bad_request(f"Invalid value for the {kind}s.")
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not _is_uuid(entry.get("id")):
            raise bad_request(f"Each {kind} needs an id (a GUID).")
        value = entry.get("value")
        if not isinstance(value, str) or not value or " " in value or len(value) > 120:
            raise bad_request(f"Each {kind} needs a value of at most 120 characters, no spaces.")
        if value in seen:
            raise bad_request(f"The {kind} value '{value}' is used twice.")
        seen.add(value)
        entry["id"] = str(entry["id"]).lower()
    new = {e["id"]: e for e in entries}
    for old in previous:
        if not old.get("isEnabled", True):
            continue
        replacement = new.get(old["id"])
        if replacement is None or replacement.get("value") != old.get("value"):
            raise bad_request(
                "Permission (scope or role) cannot be deleted or updated unless disabled first."
            )
