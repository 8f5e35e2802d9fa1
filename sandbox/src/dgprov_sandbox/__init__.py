"""Local emulators of Defguard core, its enrollment proxy, Entra ID sign-in and Microsoft Graph.

Nothing in this package imports product code, and product code never imports it except the
``sandbox`` and ``demo`` commands that start it: tests that pass against an emulator sharing
the product's assumptions would prove nothing.
"""

from .server import Sandbox, SandboxError, SandboxOptions
from .tenant import TenantError, example_tenant, load_tenant, synthetic_tenant, validate_tenant

__all__ = [
    "Sandbox",
    "SandboxError",
    "SandboxOptions",
    "TenantError",
    "example_tenant",
    "load_tenant",
    "synthetic_tenant",
    "validate_tenant",
]
