"""The directory of the emulated Entra ID tenant: users, groups, applications and roles.

The lowest of the layers that ``EntraState`` stacks (directory, then token minting, then the
OAuth grants). It holds the objects seeded from the tenant file (users with their directory roles
and custom security attributes, groups, app registrations with their consented permissions,
attribute sets and definitions) and answers lookups and consent checks. It knows nothing about
HTTP; ``OAuthError`` is rendered by ``authority_app`` in Entra's JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509

from .clock import SandboxClock

if TYPE_CHECKING:
    from .entra_setup import SetupDirectory

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}

ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN = "Attribute Assignment Administrator"
ROLE_ATTRIBUTE_ASSIGNMENT_READER = "Attribute Assignment Reader"
ROLE_ATTRIBUTE_DEFINITION_ADMIN = "Attribute Definition Administrator"
ROLE_ATTRIBUTE_DEFINITION_READER = "Attribute Definition Reader"
ROLE_USER_ADMIN = "User Administrator"


class OAuthError(Exception):
    """An error of the token or device-code endpoint, in Entra's JSON shape."""

    def __init__(self, error: str, description: str, code: int, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = f"AADSTS{code}: {description}"
        self.code = code
        self.status = status


@dataclass
class EntraUser:
    object_id: str
    user_principal_name: str
    display_name: str
    given_name: str
    surname: str
    mail: str | None
    other_mails: list[str]
    proxy_addresses: list[str]
    account_enabled: bool
    mobile_phone: str | None
    directory_roles: set[str]
    # attribute set id (as defined) -> attribute name -> value
    custom_security_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_type: str = "Member"  # Graph's userType: Member, or Guest for an invited outsider
    # Roles assigned at an attribute set's scope through Graph: (role name, lower-cased set id).
    scoped_roles: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class EntraGroup:
    object_id: str
    display_name: str
    member_ids: list[str]


@dataclass
class Application:
    client_id: str
    display_name: str
    public_client: bool
    redirect_uris: list[str]
    client_secret: str | None
    delegated_permissions: set[str]
    application_permissions: set[str]
    service_principal_id: str
    certificates: list[x509.Certificate] = field(default_factory=list)
    # As a web API ("Expose an API"): its App ID URI, delegated scopes and app roles.
    identifier_uri: str | None = None
    exposed_scopes: set[str] = field(default_factory=set)
    app_roles: set[str] = field(default_factory=set)
    # As a client of other web APIs: resource client id -> consented scopes / granted roles.
    api_scopes: dict[str, set[str]] = field(default_factory=dict)
    api_roles: dict[str, set[str]] = field(default_factory=dict)
    # Apps registered through Graph (entra_setup): unknown to sign-in until replicated, more
    # client secrets, and a device code that needs isFallbackPublicClient (AADSTS7000218).
    visible_from: datetime | None = None
    extra_secrets: list[str] = field(default_factory=list)
    registered_through_graph: bool = False
    # As a web API: api.requestedAccessTokenVersion (null and 1 mean v1.0 tokens).
    access_token_version: int = 2


@dataclass
class AttributeDefinition:
    attribute_set: str
    name: str
    type: str
    is_collection: bool
    status: str
    description: str
    use_predefined_values_only: bool = False
    is_searchable: bool = True
    visible_from: datetime | None = None  # created through Graph: replicated from then on

    @property
    def id(self) -> str:
        return f"{self.attribute_set}_{self.name}"


@dataclass
class AttributeSet:
    id: str
    description: str
    max_attributes_per_set: int | None
    visible_from: datetime | None = None  # created through Graph: replicated from then on


def graph_scope(scope: str) -> str | None:
    """The Graph permission a requested scope names, or None for another resource."""
    for prefix in (f"{GRAPH_AUDIENCE}/", f"{GRAPH_APP_ID}/"):
        if scope.lower().startswith(prefix.lower()):
            return scope[len(prefix) :]
    return None if "/" in scope or scope.startswith("api:") else scope


def _unknown_api_scope(scope: str) -> OAuthError:
    return OAuthError(
        "invalid_scope",
        f"The provided value for scope {scope} is not valid; the resource exposes no such "
        "scope, and the sandbox serves only Microsoft Graph and the tenant's own web APIs.",
        70011,
    )


class EntraDirectory:
    """Lookups of directory objects and the consent each application holds.

    The fields below are seeded by ``EntraState.__init__`` from the tenant; each field is
    declared on the lowest layer that reads it.
    """

    tenant_id: str
    domain: str
    users: dict[str, EntraUser]
    groups: dict[str, EntraGroup]
    applications: dict[str, Application]
    attribute_sets: dict[str, AttributeSet]
    definitions: dict[tuple[str, str], AttributeDefinition]
    setup: SetupDirectory
    clock: SandboxClock

    # ------------------------------------------------------------------------------- directory

    def find_user(self, key: str) -> EntraUser | None:
        """A user by object id or UPN (case-insensitive), as ``/users/{id | userPrincipalName}``."""
        lowered = key.lower()
        if lowered in self.users:
            return self.users[lowered]
        return next(
            (u for u in self.users.values() if u.user_principal_name.lower() == lowered), None
        )

    def admin_user(self) -> EntraUser | None:
        """The sample admin: the first user holding User Administrator and Attribute Assignment
        Administrator."""
        wanted = {ROLE_USER_ADMIN, ROLE_ATTRIBUTE_ASSIGNMENT_ADMIN}
        admin = next((u for u in self.users.values() if wanted <= u.directory_roles), None)
        if admin is None and self.setup.mode == "none":
            # Before setup-entra the admin holds no attribute role yet: the User Administrator.
            admin = next(
                (u for u in self.users.values() if ROLE_USER_ADMIN in u.directory_roles), None
            )
        return admin

    # ------------------------------------------------------------------------------------ scopes

    def application(self, client_id: str) -> Application:
        self.setup.settle()
        app = self.applications.get(client_id.lower())
        if app is not None and app.visible_from is not None and self.clock.now() < app.visible_from:
            app = None  # registered seconds ago through Graph and not yet replicated
        if app is None:
            raise OAuthError(
                "unauthorized_client",
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.domain}'.",
                700016,
            )
        return app

    def api_scope(self, scope: str) -> tuple[Application, str] | None:
        """The tenant's web API and scope name a scope string names (``{App ID URI}/{name}`` or
        ``{client id}/{name}``), or None for Graph and reserved scopes."""
        prefix, _, name = scope.rpartition("/")
        if not prefix or not name:
            return None
        lowered = prefix.lower()
        for app in self.applications.values():
            if app.identifier_uri is not None and lowered in (
                app.identifier_uri.lower(),
                app.client_id,
            ):
                return app, name
        return None

    def _api_scopes(self, app: Application, resource: Application, name: str) -> list[str]:
        """Full scope strings granted to ``app`` on a web API of the tenant."""
        consented = app.api_scopes.get(resource.client_id, set())
        if name == ".default":
            return [f"{resource.identifier_uri}/{n}" for n in sorted(consented)]
        if name not in resource.exposed_scopes:
            raise _unknown_api_scope(f"{resource.identifier_uri}/{name}")
        if name not in consented:
            raise OAuthError(
                "invalid_grant",
                f"The user or administrator has not consented to use the application with "
                f"ID '{app.client_id}' named '{app.display_name}'. Send an interactive "
                f"authorization request for this user and resource. Missing: {name} of "
                f"{resource.identifier_uri}.",
                65001,
            )
        return [f"{resource.identifier_uri}/{name}"]

    def delegated_scopes(self, app: Application, scope_text: str) -> list[str]:
        """Validate requested scopes; return the permissions granted, reserved ones kept.

        Graph permissions come back as bare names (``User.Read``), a web API's as full scope
        strings (``api://{client id}/Provision``); one request names one resource, as in Entra.
        """
        granted: list[str] = []
        resources: set[str] = set()
        requested = [s for s in scope_text.split() if s not in RESERVED_SCOPES]
        if len(requested) > 1 and any(graph_scope(s) == ".default" for s in requested):
            # Learn Q&A 886876 (audit G6): /.default cannot be mixed with named scopes.
            raise OAuthError(
                "invalid_scope",
                "The provided value for the input parameter 'scope' is not valid. The scope "
                f"{scope_text} is not valid. .default scope can't be combined with "
                "resource-specific scopes.",
                70011,
            )
        for scope in scope_text.split():
            if scope in RESERVED_SCOPES:
                granted.append(scope)
                continue
            api = self.api_scope(scope)
            if api is not None:
                resources.add(api[0].client_id)
                granted.extend(self._api_scopes(app, *api))
                continue
            permission = graph_scope(scope)
            if permission is None:
                raise _unknown_api_scope(scope)
            resources.add(GRAPH_APP_ID)
            if permission == ".default":
                granted.extend(sorted(app.delegated_permissions))
                continue
            if permission not in app.delegated_permissions:
                raise OAuthError(
                    "invalid_grant",
                    f"The user or administrator has not consented to use the application with "
                    f"ID '{app.client_id}' named '{app.display_name}'. Send an interactive "
                    f"authorization request for this user and resource. Missing: {permission}.",
                    65001,
                )
            granted.append(permission)
        if len(resources) > 1:
            # Entra issues a token for one resource at a time (AADSTS28000).
            raise OAuthError(
                "invalid_scope",
                f"Provided value for the input parameter scope '{scope_text}' is not valid "
                "because it contains more than one resource. Scope is not valid.",
                28000,
            )
        return list(dict.fromkeys(granted))
