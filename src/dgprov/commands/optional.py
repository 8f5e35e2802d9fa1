"""Commands that need a package the product does not install by default (the emulators, the
broker's web server) load it here, when they run, so every other command starts without it."""

from __future__ import annotations

import importlib
from collections.abc import Collection
from types import ModuleType

from ..errors import UsageError


def load_optional(
    package: str, install_hint: str, dependencies: Collection[str] = ()
) -> ModuleType:
    """``package``, or a usage error (exit 2) saying how to install it when it, or one of the
    ``dependencies`` its extra brings, is missing; anything else missing is a real error and
    keeps its traceback."""
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        ours = missing == package or missing.startswith(f"{package}.")
        if not ours and missing.split(".")[0] not in dependencies:
            raise
        raise UsageError(install_hint) from None
