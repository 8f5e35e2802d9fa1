"""The emulated Entra ID tenant: directory objects, custom security attributes and sign-ins.

Like ``defguard_state`` this knows nothing about HTTP. ``EntraState`` holds the directory seeded
here from the tenant file and implements the OAuth grants MSAL uses (device code, authorization
code with PKCE, refresh token, client credentials) as recorded in
``shared/reference/graph-msal.md``. The behaviour lives in layers, each a module of its own:
``entra_directory`` (directory objects and consent), ``entra_tokens`` (JWT minting) and
``entra_grants`` (the OAuth grants); ``entra_setup`` holds what Graph creates (registrations,
service principals, grants, role assignments) and derives the consent sign-ins use from it.
"""

from __future__ import annotations

import random
import uuid

from cryptography import x509

from .clock import SandboxClock
from .entra_directory import Application, AttributeDefinition, AttributeSet, EntraGroup, EntraUser
from .entra_grants import AuthorizationCode, DeviceCode, EntraGrants
from .entra_setup import DuplicateAnswer, EntraSetupMode, ScopedRoleAssigner, SetupDirectory
from .entra_tokens import RefreshGrant
from .keys import JwtSigner
from .tenant import Tenant


class EntraState(EntraGrants):
    """The directory and the sign-in service of one emulated tenant."""

    def __init__(
        self,
        tenant: Tenant,
        *,
        clock: SandboxClock,
        signer: JwtSigner,
        authority_origin: str,
        seed: int = 0,
        device_code_interval: int = 5,
        access_token_lifetime: int = 3600,
        entra_setup: EntraSetupMode = "full",
        replication_delay: float = 0.0,
        duplicate_answer: DuplicateAnswer = "bad-request",
        scoped_role_assigner: ScopedRoleAssigner = "privileged-role-administrator",
    ) -> None:
        entra = tenant.get("entra", {})
        self.tenant_id: str = entra.get("tenant_id", "00000000-0000-4000-8000-0000000000aa")
        self.domain: str = entra.get("domain", "sandbox.example")
        self.clock = clock
        self.signer = signer
        self.authority_origin = authority_origin
        self.device_code_interval = device_code_interval
        self.access_token_lifetime = access_token_lifetime
        self._rng = random.Random(f"{seed}:entra")
        self.auto_approve_upn: str | None = None

        self.users: dict[str, EntraUser] = {}
        usernames: dict[str, str] = {}
        for person in tenant["users"]:
            spec = person.get("entra")
            if not spec:
                continue
            user = EntraUser(
                object_id=spec["object_id"].lower(),
                user_principal_name=spec["user_principal_name"],
                display_name=spec.get("display_name")
                or f"{person['first_name']} {person['last_name']}".strip(),
                given_name=person["first_name"],
                surname=person["last_name"],
                mail=spec.get("mail"),
                other_mails=list(spec.get("other_mails", [])),
                proxy_addresses=list(spec.get("proxy_addresses", [])),
                account_enabled=spec.get("account_enabled", True),
                user_type=spec.get("user_type", "Member"),
                mobile_phone=person.get("phone"),
                directory_roles=set(spec.get("directory_roles", [])),
                custom_security_attributes={
                    k: dict(v) for k, v in spec.get("custom_security_attributes", {}).items()
                },
            )
            self.users[user.object_id] = user
            if person.get("username"):
                usernames[person["username"]] = user.object_id
        self.groups: dict[str, EntraGroup] = {}
        for group in tenant["groups"]:
            if group.get("entra_object_id"):
                members = [usernames[m] for m in group.get("members", []) if m in usernames]
                object_id = group["entra_object_id"].lower()
                self.groups[object_id] = EntraGroup(object_id, group["name"], members)
        self.applications: dict[str, Application] = {}
        for app in entra.get("applications", []):
            client_id = app["client_id"].lower()
            api = app.get("api")
            self.applications[client_id] = Application(
                client_id=client_id,
                display_name=app.get("display_name", "app"),
                public_client=app.get("public_client", True),
                redirect_uris=list(app.get("redirect_uris", ["http://localhost"])),
                client_secret=app.get("client_secret"),
                delegated_permissions=set(app.get("delegated_permissions", [])),
                application_permissions=set(app.get("application_permissions", [])),
                service_principal_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)),
                certificates=[
                    x509.load_pem_x509_certificate(pem.encode())
                    for pem in app.get("certificates", [])
                ],
                identifier_uri=api.get("identifier_uri", f"api://{client_id}") if api else None,
                exposed_scopes=set(api.get("scopes", [])) if api else set(),
                app_roles=set(api.get("app_roles", [])) if api else set(),
                api_scopes={
                    grant["resource"].lower(): set(grant.get("scopes", []))
                    for grant in app.get("api_permissions", [])
                },
                api_roles={
                    grant["resource"].lower(): set(grant.get("roles", []))
                    for grant in app.get("api_permissions", [])
                },
            )
        self.attribute_sets: dict[str, AttributeSet] = {}
        self.definitions: dict[tuple[str, str], AttributeDefinition] = {}
        for spec in entra.get("attribute_sets", []):
            attribute_set = AttributeSet(
                spec["id"], spec.get("description", ""), spec.get("max_attributes_per_set", 25)
            )
            self.attribute_sets[attribute_set.id.lower()] = attribute_set
            for attribute in spec.get("attributes", []):
                definition = AttributeDefinition(
                    attribute_set=attribute_set.id,
                    name=attribute["name"],
                    type=attribute.get("type", "String"),
                    is_collection=attribute.get("is_collection", False),
                    status=attribute.get("status", "Available"),
                    description=attribute.get("description", ""),
                )
                self.definitions[(attribute_set.id.lower(), definition.name)] = definition

        self.setup = SetupDirectory(
            self,
            mode=entra_setup,
            seed=seed,
            replication_delay=replication_delay,
            duplicate_answer=duplicate_answer,
            scoped_role_assigner=scoped_role_assigner,
        )
        self.setup.seed_api_consent()

        self.device_codes: dict[str, DeviceCode] = {}
        self.authorization_codes: dict[str, AuthorizationCode] = {}
        self.refresh_grants: dict[str, RefreshGrant] = {}
