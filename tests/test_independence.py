"""The sandbox and the product must not share code, or tests against the sandbox prove nothing.

Since the emulators became their own distribution the rule is the package boundary: nothing in
``dgprov_sandbox`` imports ``dgprov``, and ``dgprov`` reaches ``dgprov_sandbox`` only from the two
commands that start it, at run time, never when a module is imported.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRODUCT = REPO / "src" / "dgprov"
SANDBOX = REPO / "sandbox" / "src" / "dgprov_sandbox"
# Only these product modules may start the sandbox, and only from inside a function.
ALLOWED_TO_START_SANDBOX = {"commands/sandbox.py", "commands/demo.py"}


def imported_modules(path: Path, root: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute names of everything ``path`` imports, relative imports resolved."""
    module_parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if module_parts[-1] == "__init__":
        module_parts.pop()
    tree = ast.parse(path.read_text("utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
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


def names_sandbox(path: Path) -> bool:
    """Whether the module names the sandbox package anywhere: an import or a string for one."""
    tree = ast.parse(path.read_text("utf-8"))
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    imported = imported_modules(path, PRODUCT)
    return any(
        str(s).startswith("dgprov_sandbox") for s in strings | imported if isinstance(s, str)
    )


def test_sandbox_imports_no_product_code() -> None:
    offenders = {
        str(path.relative_to(SANDBOX)): sorted(
            name
            for name in imported_modules(path, SANDBOX)
            if name == "dgprov" or name.startswith("dgprov.")
        )
        for path in SANDBOX.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_product_names_the_sandbox_only_in_the_two_commands() -> None:
    offenders = sorted(
        path.relative_to(PRODUCT).as_posix()
        for path in PRODUCT.rglob("*.py")
        if path.relative_to(PRODUCT).as_posix() not in ALLOWED_TO_START_SANDBOX
        and names_sandbox(path)
    )
    assert offenders == []


def test_the_two_commands_load_the_sandbox_lazily() -> None:
    for relative in ALLOWED_TO_START_SANDBOX:
        top = imported_modules(PRODUCT / relative, PRODUCT, top_level_only=True)
        assert not [n for n in top if n.startswith("dgprov_sandbox")], relative


def web_server_modules_after_importing(modules: list[str]) -> list[str]:
    """What of the emulators and web servers a fresh interpreter holds after ``modules``."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
        f"{WEB_SERVER_PACKAGES!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    found: list[str] = ast.literal_eval(result.stdout.strip())
    return found


WEB_SERVER_PACKAGES = ("dgprov_sandbox", "starlette", "uvicorn", "jsonschema", "prometheus_client")
BROKER = PRODUCT / "broker"


def test_importing_the_product_loads_no_sandbox_and_no_web_server() -> None:
    """Every product module but the broker's (``dgprov`` itself, ``cli`` with every command,
    ``commands/broker.py`` included) imported in a fresh interpreter: no emulator, no web
    server."""
    modules = sorted(
        "dgprov." + ".".join(p.relative_to(PRODUCT).with_suffix("").parts)
        for p in PRODUCT.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and BROKER not in p.parents
    )
    assert "dgprov.commands.broker" in modules and "dgprov.cli" in modules
    assert web_server_modules_after_importing(["dgprov", *modules]) == []
    assert len(modules) > 20  # the walk found the product


def test_the_broker_is_loaded_only_by_its_command_and_lazily() -> None:
    """``dgprov.broker`` needs the ``broker`` extra: only ``commands/broker.py`` names it, and
    not at import time; importing it does load the web server (so the check above can fail)."""
    naming = sorted(
        path.relative_to(PRODUCT).as_posix()
        for path in PRODUCT.rglob("*.py")
        if BROKER not in path.parents
        and any(
            n == "dgprov.broker" or n.startswith("dgprov.broker.")
            for n in imported_modules(path, PRODUCT)
        )
    )
    assert naming == []  # the command loads it through importlib, by name
    command = PRODUCT / "commands" / "broker.py"
    assert '"dgprov.broker"' in command.read_text("utf-8")
    top = imported_modules(command, PRODUCT, top_level_only=True)
    assert not [n for n in top if n.split(".")[0] in WEB_SERVER_PACKAGES]
    assert {"starlette", "uvicorn", "prometheus_client"} <= set(
        web_server_modules_after_importing(["dgprov.broker"])
    )


def test_the_product_distribution_depends_on_no_emulator_library() -> None:
    requirements = metadata.requires("dgprov") or []
    runtime = [r for r in requirements if "extra ==" not in r]
    names = {re.split(r"[;<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in runtime}
    assert names.isdisjoint(
        {"starlette", "uvicorn", "jsonschema", "dgprov-sandbox", "prometheus-client"}
    )
    assert {"httpx", "msal"} <= names  # the metadata read is the product's
    broker_extra = [r for r in requirements if 'extra == "broker"' in r]
    assert {re.split(r"[;<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in broker_extra} >= {
        "starlette",
        "uvicorn",
    }


def test_the_checker_sees_relative_imports() -> None:
    """Guard against a checker that could never fail."""
    assert "dgprov_sandbox.server" in imported_modules(SANDBOX / "cli.py", SANDBOX)
    assert "dgprov.errors" in imported_modules(PRODUCT / "commands" / "optional.py", PRODUCT)
    assert names_sandbox(PRODUCT / "commands" / "sandbox.py")
