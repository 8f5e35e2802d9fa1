"""dgprov: zero-touch provisioning of Defguard VPN clients from Entra ID and Active Directory.

This module stays import-free on purpose: the sandbox package lives under ``dgprov`` and must be
importable without pulling in any product code.
"""

__version__ = "0.1.0"
