"""The sandbox and the product must not share code, or tests against the sandbox prove nothing."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "dgprov"
SANDBOX = PACKAGE / "sandbox"
# Only these product modules may start the sandbox.
ALLOWED_TO_START_SANDBOX = {"commands/sandbox.py", "commands/demo.py"}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, relative imports resolved."""
    module_parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if module_parts[-1] == "__init__":
        module_parts.pop()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                is_package = path.name == "__init__.py"
                base = module_parts[: len(module_parts) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def test_sandbox_imports_no_product_code() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name
            for name in imported_modules(path)
            if (name == "dgprov" or name.startswith("dgprov."))
            and not name.startswith("dgprov.sandbox")
        )
        for path in SANDBOX.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_product_does_not_import_the_sandbox() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("sandbox/") or relative in ALLOWED_TO_START_SANDBOX:
            continue
        found = sorted(n for n in imported_modules(path) if n.startswith("dgprov.sandbox"))
        if found:
            offenders[relative] = found
    assert offenders == {}


def test_the_checker_sees_relative_imports() -> None:
    """Guard against a checker that could never fail."""
    names = imported_modules(PACKAGE / "commands" / "sandbox.py")
    assert "dgprov.sandbox" in names
    assert "dgprov.sandbox.server" in imported_modules(SANDBOX / "__init__.py")
