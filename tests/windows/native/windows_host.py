"""Where these tests run: Wine models some things differently from Windows, and says so."""

from __future__ import annotations

import ctypes


def running_under_wine() -> bool:
    """Wine's ntdll exports ``wine_get_version``; Windows' does not."""
    ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined,unused-ignore]
    return hasattr(ntdll, "wine_get_version")
