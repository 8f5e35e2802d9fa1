"""What a sandbox run can be told: ports, faults, throttling, and the behaviours no public
source settles, each with the default the sandbox judges most plausible (docs/sandbox.md lists
them under "Options" and "Decisions")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .defguard_directory import UserOrder
from .defguard_model import ServerLine
from .entra_setup import DuplicateAnswer, EntraSetupMode, ScopedRoleAssigner
from .graph_attributes import CsaReadRole, EmptyPatchRule
from .http_common import FaultSettings


@dataclass
class SandboxOptions:
    defguard_version: ServerLine = "2.0"
    host: str = "127.0.0.1"
    port: int = 0
    proxy_port: int = 0
    authority_port: int = 0
    graph_port: int = 0
    faults: FaultSettings = field(default_factory=FaultSettings)
    # The sign-in service's own faults (tests only; none by default): MSAL sign-ins of the
    # fault tests above stay clean, and a test can make the key set's host drop connections.
    authority_faults: FaultSettings = field(default_factory=FaultSettings)
    synthetic_group: bool = False
    throttle: Literal["off", "documented"] = "off"
    time_scale: float = 1.0
    quota_scale: float = 1.0
    auto_approve_as: str | None = None
    device_code_interval: int = 5
    access_token_lifetime: int = 3600
    # "none": the tenant before `dgprov setup-entra` (no attribute set, no dgprov apps).
    entra_setup: EntraSetupMode = "full"
    # Seconds an object created through Graph stays invisible (404, missing from lists).
    entra_replication_delay: float = 0.0
    # Behaviours no public source settles (docs/sandbox.md, "Decisions"):
    user_list_order: UserOrder = "heap"
    empty_attribute_patch: EmptyPatchRule = "checked"
    csa_read_role: CsaReadRole = "reader"
    entra_duplicate_answer: DuplicateAnswer = "bad-request"
    scoped_role_assigner: ScopedRoleAssigner = "privileged-role-administrator"
