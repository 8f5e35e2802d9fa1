"""The directory objects ``dgprov setup-entra`` creates through Graph, and what they do to sign-in.

App registrations, service principals, delegated permission grants, app role assignments and
directory role assignments, as ``shared/reference/setup-entra.md`` maps them. They are the
source of truth for the consent the runtime ``Application`` objects carry: ``refresh`` derives
each app's delegated permissions from its ``AllPrincipals`` grants, its application permissions
from its app role assignments, and a user's roles from the role assignments, so a sign-in after
setup gets what the grants allow. The tenant file's applications and roles are seeded here as
the same objects, so both ways of configuring a tenant read back alike.

Every object created here carries its creation time; it "replicates" ``replication_delay``
seconds later (on the sandbox clock): until then Graph answers 404 for it, leaves it out of
filtered lists, refuses references to it, and it has no effect on sign-ins.
"""

from __future__ import annotations

import base64
import random
import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509

from .entra_directory import (
    GRAPH_APP_ID,
    ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN,
    ROLE_ATTRIBUTE_ASSIGNMENT_READER,
    ROLE_ATTRIBUTE_DEFINITION_ADMIN,
    ROLE_ATTRIBUTE_DEFINITION_READER,
    ROLE_USER_ADMIN,
    Application,
    EntraUser,
    OAuthError,
)

if TYPE_CHECKING:
    from .entra_state import EntraState

EntraSetupMode = Literal["full", "none"]
ENTRA_SETUP_MODES: tuple[EntraSetupMode, ...] = ("full", "none")
DuplicateAnswer = Literal["bad-request", "conflict"]
DUPLICATE_ANSWERS: tuple[DuplicateAnswer, ...] = ("bad-request", "conflict")
ScopedRoleAssigner = Literal["privileged-role-administrator", "attribute-assignment-administrator"]
SCOPED_ROLE_ASSIGNERS: tuple[ScopedRoleAssigner, ...] = (
    "privileged-role-administrator",
    "attribute-assignment-administrator",
)

GRAPH_CLI_APP_ID = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
GRAPH_CLI_NAME = "Microsoft Graph Command Line Tools"
DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"

ROLE_PRIVILEGED_ROLE_ADMIN = "Privileged Role Administrator"
ROLE_CLOUD_APP_ADMIN = "Cloud Application Administrator"
ROLE_APP_ADMIN = "Application Administrator"
ROLE_GLOBAL_ADMIN = "Global Administrator"
ROLE_APP_DEVELOPER = "Application Developer"
ROLE_DIRECTORY_READERS = "Directory Readers"
ROLE_GLOBAL_READER = "Global Reader"
ROLE_DIRECTORY_WRITERS = "Directory Writers"

# Template ids: the first eight from the reference's table (permissions-reference.md), the
# rest from Microsoft's permissions reference; a role name only a tenant file knows gets a
# stable made-up id.
ROLE_TEMPLATES = {
    ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN: "58a13ea3-c632-46ae-9ee0-9c0d43cd7f3d",
    ROLE_ATTRIBUTE_ASSIGNMENT_READER: "ffd52fa5-98dc-465c-991d-fc073eb59f8f",
    ROLE_ATTRIBUTE_DEFINITION_ADMIN: "8424c6f0-a189-499e-bbd0-26c1753c96d4",
    ROLE_ATTRIBUTE_DEFINITION_READER: "1d336d2c-4ae8-42ef-9711-b3604ce3fc2c",
    ROLE_PRIVILEGED_ROLE_ADMIN: "e8611ab8-c189-46e8-94e1-60213ab1f814",
    ROLE_CLOUD_APP_ADMIN: "158c047a-c907-4556-b7ef-446551a6b5f7",
    ROLE_APP_ADMIN: "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    ROLE_GLOBAL_ADMIN: "62e90394-69f5-4237-9190-012177145e10",
    ROLE_USER_ADMIN: "fe930be7-5e62-47db-91af-98c3a49a38b1",
    ROLE_APP_DEVELOPER: "cf1c38e5-3621-4004-a7cb-879624dced7c",
    ROLE_DIRECTORY_READERS: "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
    ROLE_GLOBAL_READER: "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
    ROLE_DIRECTORY_WRITERS: "9360feb5-f418-4baa-8175-e2a00bac4301",
}
ATTRIBUTE_ROLES = {
    ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN,
    ROLE_ATTRIBUTE_ASSIGNMENT_READER,
    ROLE_ATTRIBUTE_DEFINITION_ADMIN,
    ROLE_ATTRIBUTE_DEFINITION_READER,
}

# Microsoft Graph's permissions: (value, delegated scope id, application role id). The ids the
# reference gives (section 3.6) are used; the others are stable made-up ids, which is why a
# client must resolve ids from the Graph service principal, as Microsoft documents.
_KNOWN_GRAPH_IDS: dict[str, tuple[str | None, str | None]] = {
    "User.Read": ("e1fe6dd8-ba31-4d61-89e7-88639da4683d", None),
    "User.Read.All": (
        "a154be20-db9c-4678-8ab7-66f6cc099a59",
        "df021288-bdef-4463-88db-98f22de89214",
    ),
    "CustomSecAttributeAssignment.ReadWrite.All": (
        "ca46335e-8453-47cd-a001-8459884efeae",
        "de89b5e4-5b8f-48eb-8925-29c2b33bd8bd",
    ),
    "CustomSecAttributeAssignment.Read.All": (
        "b46ffa80-fe3d-4822-9a1a-c200932d54d0",
        "3b37c5a4-1226-493d-bec3-5d6c6b866f3f",
    ),
    "CustomSecAttributeDefinition.Read.All": (
        "ce026878-a0ff-4745-a728-d4fedd086c07",
        "b185aa14-d8d2-42c1-a685-0f5596613624",
    ),
    "CustomSecAttributeDefinition.ReadWrite.All": (
        "8b0160d4-5743-482b-bb27-efc0a485ca4a",
        "12338004-21f4-4896-bf5e-b75dfaf1016d",
    ),
}
_OTHER_GRAPH_PERMISSIONS = [
    "User.ReadBasic.All",
    "User.ReadWrite.All",
    "Group.Read.All",
    "GroupMember.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Application.Read.All",
    "Application.ReadWrite.All",
    "AppRegistration.Create",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.Read.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "RoleManagement.Read.Directory",
    "RoleManagement.ReadWrite.Directory",
]
_NAMESPACE = uuid.UUID("6f1d0c3a-2f39-4c55-9a5e-5a2d7c1e0b22")


def made_up_id(*parts: str) -> str:
    """A stable id for something no public source gives an id for."""
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


def role_template_id(name: str) -> str:
    return ROLE_TEMPLATES.get(name) or made_up_id("role", name)


@dataclass
class Registration:
    """An app registration (``/applications``): Graph's properties in ``record``."""

    object_id: str
    app_id: str
    record: dict[str, Any]
    owner_ids: set[str] = field(default_factory=set)
    passwords: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    through_graph: bool = False  # created or changed through Graph: its record drives sign-in
    # A tenant-file app's own credentials, kept when Graph changes the registration.
    seeded_secrets: list[str] = field(default_factory=list)
    seeded_certificates: list[x509.Certificate] = field(default_factory=list)


@dataclass
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    app_role_assignment_required: bool = False
    created_at: datetime | None = None
    # Only Microsoft's own (Graph, the CLI tools) carry their permissions here; an app of the
    # tenant takes them from its registration.
    app_roles: list[dict[str, Any]] = field(default_factory=list)
    scopes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PermissionGrant:
    id: str
    client_id: str
    resource_id: str
    scope: str
    created_at: datetime | None = None
    consent_type: str = "AllPrincipals"


@dataclass
class AppRoleAssignment:
    id: str
    principal_id: str
    principal_type: str
    principal_display_name: str
    resource_id: str
    app_role_id: str
    created_at: datetime | None = None


@dataclass
class RoleAssignment:
    id: str
    role_name: str
    principal_id: str
    directory_scope_id: str
    created_at: datetime | None = None


class SetupDirectory:
    """Registrations, service principals, grants and assignments of one tenant."""

    def __init__(
        self,
        state: EntraState,
        *,
        mode: EntraSetupMode,
        seed: int,
        replication_delay: float = 0.0,
        duplicate_answer: DuplicateAnswer = "bad-request",
        scoped_role_assigner: ScopedRoleAssigner = "privileged-role-administrator",
    ) -> None:
        self.state = state
        self.mode = mode
        self.replication_delay = timedelta(seconds=replication_delay)
        self.duplicate_answer = duplicate_answer
        self.scoped_role_assigner = scoped_role_assigner
        self.rng = random.Random(f"{seed}:setup")
        self.registrations: dict[str, Registration] = {}
        self.service_principals: dict[str, ServicePrincipal] = {}
        self.grants: dict[str, PermissionGrant] = {}
        self.app_role_assignments: dict[str, AppRoleAssignment] = {}
        self.role_assignments: dict[str, RoleAssignment] = {}
        self._pending_until: datetime | None = None

        graph_scopes: list[dict[str, Any]] = []
        graph_roles: list[dict[str, Any]] = []
        for value in [*_KNOWN_GRAPH_IDS, *_OTHER_GRAPH_PERMISSIONS]:
            self._add_graph_permission(graph_scopes, graph_roles, value)
        self.graph_sp = ServicePrincipal(
            self.new_id(),
            GRAPH_APP_ID,
            "Microsoft Graph",
            app_roles=graph_roles,
            scopes=graph_scopes,
        )
        self.service_principals[self.graph_sp.id] = self.graph_sp
        for app in list(state.applications.values()):
            self._seed_application(app)
        for user in state.users.values():
            for role in sorted(user.directory_roles):
                assignment = RoleAssignment(self.new_id(), role, user.object_id, "/")
                self.role_assignments[assignment.id] = assignment
        # Microsoft's first-party public client, known in every tenant; as if the admin had
        # consented when first connecting, it holds every delegated Graph permission.
        cli = Application(
            client_id=GRAPH_CLI_APP_ID,
            display_name=GRAPH_CLI_NAME,
            public_client=True,
            redirect_uris=["http://localhost"],
            client_secret=None,
            delegated_permissions={s["value"] for s in graph_scopes},
            application_permissions=set(),
            service_principal_id=self.new_id(),
        )
        if GRAPH_CLI_APP_ID not in state.applications:
            state.applications[GRAPH_CLI_APP_ID] = cli
            cli_sp = ServicePrincipal(cli.service_principal_id, GRAPH_CLI_APP_ID, GRAPH_CLI_NAME)
            self.service_principals[cli_sp.id] = cli_sp
            self._add_grant(cli_sp.id, self.graph_sp.id, cli.delegated_permissions)

    # ------------------------------------------------------------------------------- helpers

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_opaque_id(self) -> str:
        """Grant and role assignment ids are opaque base64url strings in Graph."""
        raw = bytes(self.rng.getrandbits(8) for _ in range(32))
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def new_secret(self) -> str:
        alphabet = string.ascii_letters + string.digits + "~._-"
        return "".join(self.rng.choices(alphabet, k=40))

    def now(self) -> datetime:
        return self.state.clock.now()

    def created_now(self) -> datetime:
        """The creation time of a new object; remembers to refresh once it has replicated."""
        now = self.now()
        if self.replication_delay:
            until = now + self.replication_delay
            self._pending_until = max(self._pending_until or until, until)
        return now

    def visible(self, created_at: datetime | None) -> bool:
        return created_at is None or self.now() >= created_at + self.replication_delay

    def visible_or_seeded(self, visible_from: datetime | None) -> bool:
        """For objects that carry the time they replicate (attribute sets, definitions)."""
        return visible_from is None or self.now() >= visible_from

    def visible_from(self, created_at: datetime) -> datetime:
        return created_at + self.replication_delay

    def _add_graph_permission(
        self, scopes: list[dict[str, Any]], roles: list[dict[str, Any]], value: str
    ) -> None:
        scope_id, role_id = _KNOWN_GRAPH_IDS.get(value, (None, None))
        if not any(s["value"] == value for s in scopes):
            scopes.append(
                {
                    "id": scope_id or made_up_id("graph-scope", value),
                    "value": value,
                    "type": "Admin",
                    "isEnabled": True,
                    "adminConsentDisplayName": value,
                }
            )
        if value != "User.Read" and not any(r["value"] == value for r in roles):
            roles.append(
                {
                    "id": role_id or made_up_id("graph-role", value),
                    "value": value,
                    "allowedMemberTypes": ["Application"],
                    "isEnabled": True,
                    "displayName": value,
                }
            )

    def _seed_application(self, app: Application) -> None:
        """A tenant-file application as Graph shows it: registration, principal, consent."""
        record: dict[str, Any] = {
            "displayName": app.display_name,
            "signInAudience": "AzureADMyOrg",
            "isFallbackPublicClient": app.public_client,
            "publicClient": {"redirectUris": list(app.redirect_uris) if app.public_client else []},
            "web": {"redirectUris": [] if app.public_client else list(app.redirect_uris)},
            "identifierUris": [app.identifier_uri] if app.identifier_uri else [],
            "api": {
                "requestedAccessTokenVersion": 2 if app.identifier_uri else None,
                "oauth2PermissionScopes": [
                    {
                        "id": made_up_id("scope", app.client_id, name),
                        "value": name,
                        "type": "User",
                        "isEnabled": True,
                    }
                    for name in sorted(app.exposed_scopes)
                ],
                "preAuthorizedApplications": [],
            },
            "appRoles": [
                {
                    "id": made_up_id("role", app.client_id, name),
                    "value": name,
                    "allowedMemberTypes": ["Application"],
                    "isEnabled": True,
                    "displayName": name,
                }
                for name in sorted(app.app_roles)
            ],
            "requiredResourceAccess": [],
        }
        registration = Registration(
            self.new_id(),
            app.client_id,
            record,
            seeded_secrets=[x for x in [app.client_secret, *app.extra_secrets] if x],
            seeded_certificates=list(app.certificates),
        )
        self.registrations[registration.object_id] = registration
        sp = ServicePrincipal(app.service_principal_id, app.client_id, app.display_name)
        self.service_principals[sp.id] = sp
        if app.delegated_permissions:
            for value in app.delegated_permissions:
                self._add_graph_permission(self.graph_sp.scopes, self.graph_sp.app_roles, value)
            self._add_grant(sp.id, self.graph_sp.id, app.delegated_permissions)
        for value in sorted(app.application_permissions):
            self._add_graph_permission(self.graph_sp.scopes, self.graph_sp.app_roles, value)
            role = next(r for r in self.graph_sp.app_roles if r["value"] == value)
            self._add_app_role_assignment(sp, self.graph_sp.id, role["id"])

    def seed_api_consent(self) -> None:
        """Consent between the tenant's own apps, once every app has its principal."""
        for app in self.state.applications.values():
            client = self.sp_for_app(app.client_id)
            if client is None:
                continue
            for resource_id, names in app.api_scopes.items():
                resource = self.sp_for_app(resource_id)
                if resource is not None and names:
                    self._add_grant(client.id, resource.id, names)
            for resource_id, names in app.api_roles.items():
                resource = self.sp_for_app(resource_id)
                if resource is None:
                    continue
                for name in sorted(names):
                    self._add_app_role_assignment(
                        client, resource.id, made_up_id("role", resource_id, name)
                    )

    def _add_grant(self, client_id: str, resource_id: str, scopes: set[str]) -> None:
        grant = PermissionGrant(
            self.new_opaque_id(), client_id, resource_id, " ".join(sorted(scopes))
        )
        self.grants[grant.id] = grant

    def _add_app_role_assignment(
        self, principal: ServicePrincipal, resource_id: str, role_id: str
    ) -> None:
        assignment = AppRoleAssignment(
            self.new_opaque_id(),
            principal.id,
            "ServicePrincipal",
            principal.display_name,
            resource_id,
            role_id,
        )
        self.app_role_assignments[assignment.id] = assignment

    # ------------------------------------------------------------------------------- lookups

    def registration_by_app_id(self, app_id: str) -> Registration | None:
        lowered = app_id.lower()
        return next((r for r in self.registrations.values() if r.app_id == lowered), None)

    def sp_for_app(self, app_id: str) -> ServicePrincipal | None:
        lowered = app_id.lower()
        return next((s for s in self.service_principals.values() if s.app_id == lowered), None)

    def sp_roles(self, sp: ServicePrincipal) -> list[dict[str, Any]]:
        registration = self.registration_by_app_id(sp.app_id)
        if registration is None:
            return sp.app_roles
        roles: list[dict[str, Any]] = registration.record.get("appRoles") or []
        return roles

    def sp_scopes(self, sp: ServicePrincipal) -> list[dict[str, Any]]:
        registration = self.registration_by_app_id(sp.app_id)
        if registration is None:
            return sp.scopes
        api = registration.record.get("api") or {}
        scopes: list[dict[str, Any]] = api.get("oauth2PermissionScopes") or []
        return scopes

    def principal_name(self, object_id: str) -> tuple[str, str] | None:
        """(type, display name) of a user, group or service principal."""
        lowered = object_id.lower()
        user = self.state.users.get(lowered)
        if user is not None:
            return "User", user.display_name
        group = self.state.groups.get(lowered)
        if group is not None:
            return "Group", group.display_name
        sp = self.service_principals.get(lowered)
        if sp is not None and self.visible(sp.created_at):
            return "ServicePrincipal", sp.display_name
        return None

    # ------------------------------------------------------------------------- consequences

    def settle(self) -> None:
        """Refresh sign-in once objects created with a replication delay have replicated."""
        if self._pending_until is None:
            return
        self.refresh()
        if self.now() >= self._pending_until:
            self._pending_until = None

    def refresh(self) -> None:
        """Derive every app's consent and every user's roles from the visible objects."""
        for registration in self.registrations.values():
            if registration.through_graph:
                self._apply_registration(registration)
        for app in self.state.applications.values():
            self._apply_consent(app, self.sp_for_app(app.client_id))
        for user in self.state.users.values():
            user.directory_roles = set()
            user.scoped_roles = set()
        for assignment in self.role_assignments.values():
            if not self.visible(assignment.created_at):
                continue
            for user in self._users_of(assignment.principal_id):
                if assignment.directory_scope_id == "/":
                    user.directory_roles.add(assignment.role_name)
                else:
                    set_id = assignment.directory_scope_id.removeprefix("/attributeSets/")
                    user.scoped_roles.add((assignment.role_name, set_id.lower()))

    def _users_of(self, principal_id: str) -> list[EntraUser]:
        user = self.state.users.get(principal_id)
        if user is not None:
            return [user]
        group = self.state.groups.get(principal_id)
        if group is not None:
            return [self.state.users[m] for m in group.member_ids if m in self.state.users]
        return []

    def _apply_registration(self, registration: Registration) -> None:
        record = registration.record
        app = self.state.applications.get(registration.app_id)
        if app is None:
            app = Application(
                client_id=registration.app_id,
                display_name=record.get("displayName", ""),
                public_client=False,
                redirect_uris=[],
                client_secret=None,
                delegated_permissions=set(),
                application_permissions=set(),
                service_principal_id="",
                registered_through_graph=True,
            )
            self.state.applications[app.client_id] = app
        if registration.created_at is not None:
            app.visible_from = self.visible_from(registration.created_at)
        app.display_name = record.get("displayName", app.display_name)
        app.public_client = bool(record.get("isFallbackPublicClient"))
        app.redirect_uris = list(
            (record.get("publicClient") or {}).get("redirectUris") or []
        ) + list((record.get("web") or {}).get("redirectUris") or [])
        secrets = registration.seeded_secrets + [p["secretText"] for p in registration.passwords]
        app.client_secret = secrets[0] if secrets else None
        app.extra_secrets = secrets[1:]
        app.certificates = registration.seeded_certificates + [
            x509.load_der_x509_certificate(base64.b64decode(k["key"]))
            for k in record.get("keyCredentials") or []
        ]
        uris = record.get("identifierUris") or []
        app.identifier_uri = uris[0] if uris else None
        api = record.get("api") or {}
        app.access_token_version = 2 if api.get("requestedAccessTokenVersion") == 2 else 1
        app.exposed_scopes = {
            s["value"] for s in api.get("oauth2PermissionScopes") or [] if s.get("isEnabled", True)
        }
        app.app_roles = {
            r["value"]
            for r in record.get("appRoles") or []
            if r.get("isEnabled", True) and "Application" in r.get("allowedMemberTypes", [])
        }

    def _apply_consent(self, app: Application, sp: ServicePrincipal | None) -> None:
        """Grants and app role assignments need the client's service principal; the
        pre-authorisation of a web API (``preAuthorizedApplications``) names the client's appId."""
        sp_id = sp.id if sp is not None else None
        if sp_id is not None:
            app.service_principal_id = app.service_principal_id or sp_id
        delegated: set[str] = set()
        api_scopes: dict[str, set[str]] = {}
        for grant in self.grants.values():
            if grant.client_id != sp_id or not self.visible(grant.created_at):
                continue
            resource = self.service_principals.get(grant.resource_id)
            if resource is None:
                continue
            names = set(grant.scope.split())
            if resource is self.graph_sp:
                delegated |= names
            else:
                api_scopes.setdefault(resource.app_id, set()).update(names)
        for registration in self.registrations.values():
            api = registration.record.get("api") or {}
            for entry in api.get("preAuthorizedApplications") or []:
                if str(entry.get("appId", "")).lower() != app.client_id:
                    continue
                ids = set(entry.get("permissionIds") or [])
                names = {
                    s["value"] for s in api.get("oauth2PermissionScopes") or [] if s["id"] in ids
                }
                api_scopes.setdefault(registration.app_id, set()).update(names)
        application: set[str] = set()
        api_roles: dict[str, set[str]] = {}
        for assignment in self.app_role_assignments.values():
            if assignment.principal_id != sp_id or not self.visible(assignment.created_at):
                continue
            resource = self.service_principals.get(assignment.resource_id)
            if resource is None:
                continue
            values = {
                r["value"] for r in self.sp_roles(resource) if r["id"] == assignment.app_role_id
            }
            if resource is self.graph_sp:
                application |= values
            else:
                api_roles.setdefault(resource.app_id, set()).update(values)
        app.delegated_permissions = delegated
        app.application_permissions = application
        app.api_scopes = api_scopes
        app.api_roles = api_roles

    def check_assignment(
        self, resource: Application, app: Application, user: EntraUser | None
    ) -> None:
        """ "Assignment required" on a web API: only assigned users (directly or through a
        group) and apps get tokens for it; Global Administrators sign in regardless."""
        sp = self.sp_for_app(resource.client_id)
        if sp is None or not sp.app_role_assignment_required:
            return
        if user is not None:
            if ROLE_GLOBAL_ADMIN in user.directory_roles:
                return
            principals = {user.object_id} | {
                g.object_id for g in self.state.groups.values() if user.object_id in g.member_ids
            }
        else:
            client = self.sp_for_app(app.client_id)
            principals = {client.id} if client else set()
        assigned = any(
            a.resource_id == sp.id and a.principal_id in principals and self.visible(a.created_at)
            for a in self.app_role_assignments.values()
        )
        if assigned:
            return
        if user is not None:
            raise OAuthError(
                "invalid_grant",
                f"The signed in user '{user.user_principal_name}' is not assigned to a role for "
                f"the application '{resource.client_id}'({resource.display_name}).",
                50105,
            )
        raise OAuthError(
            "invalid_client",
            f"Application '{app.client_id}'({app.display_name}) is not assigned to a role for "
            f"the application '{resource.client_id}'({resource.display_name}).",
            501051,
        )
