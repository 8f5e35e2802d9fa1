"""Every command and every option is documented, and the docs point only at files that exist.

Administrators learn dgprov from the README and docs/; an option that appears only in
``--help`` is one nobody finds, and a link to a moved file is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
from dgprov_sandbox.cli import main as sandbox_main

from dgprov.cli import main

REPO = Path(__file__).resolve().parent.parent
DOCS = [
    REPO / "README.md",
    REPO / "CHANGELOG.md",
    REPO / "sandbox" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
]


def documented_text() -> str:
    return "\n".join(path.read_text("utf-8") for path in DOCS)


def commands() -> dict[str, click.Command]:
    found = dict(main.commands)
    found["sandbox"] = sandbox_main  # `dgprov sandbox` hands its options over to the package
    return found


def long_options(command: click.Command) -> list[str]:
    return sorted(
        name
        for parameter in command.params
        if isinstance(parameter, click.Option)
        for name in parameter.opts + parameter.secondary_opts
        if name.startswith("--") and name != "--help"
    )


def test_every_command_and_option_is_documented() -> None:
    text = documented_text()
    missing = [f"dgprov {name}" for name in commands() if f"dgprov {name}" not in text]
    for name, command in commands().items():
        missing += [
            f"dgprov {name} {option}"
            for option in long_options(command)
            if not re.search(re.escape(option) + r"(?![A-Za-z0-9-])", text)
        ]
    assert missing == []


def test_the_walk_sees_the_options() -> None:
    """Guard against a check that could never fail."""
    assert "--group-name" in long_options(main.commands["generate-tokens"])
    assert "--defguard-version" in long_options(commands()["sandbox"])
    assert len(commands()) >= 5


def test_relative_links_in_the_docs_resolve() -> None:
    dead = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text("utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                dead.append(f"{path.relative_to(REPO)} -> {target}")
    assert dead == []


def test_paths_named_in_backquotes_exist() -> None:
    """`src/...`, `sandbox/...`, `tests/...`, `docs/...` and `bench/...` named in the docs."""
    dead = []
    pattern = r"`((?:src|sandbox|tests|docs|bench|packaging|deploy)/[A-Za-z0-9_./-]+)`"
    for path in DOCS:
        for target in re.findall(pattern, path.read_text("utf-8")):
            if not (REPO / target.rstrip("/")).exists():
                dead.append(f"{path.relative_to(REPO)} -> {target}")
    assert dead == []
