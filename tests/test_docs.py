"""Every command and every option is documented, and the docs point only at files that exist.

Administrators learn dgprov from the README and docs/; an option that appears only in
``--help`` is one nobody finds, and a link to a moved file is a dead end.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
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


SHELL_BLOCK = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)


def shell_examples() -> list[tuple[str, str]]:
    """Every ```sh block of the docs, named by file and line."""
    found = []
    for path in DOCS:
        text = path.read_text("utf-8")
        for block in SHELL_BLOCK.finditer(text):
            line = text.count("\n", 0, block.start()) + 1
            found.append((f"{path.relative_to(REPO)}:{line}", block.group(1)))
    return found


def dgprov_calls(script: str) -> list[list[str]]:
    """The words of each ``dgprov …`` command line (continuations joined, comments dropped)."""
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)  # VAR=value prefixes
        for start, word in enumerate(words):
            if word.rsplit("/", 1)[-1] == "dgprov":
                calls.append(words[start + 1 :])
                break
    return calls


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to parse the examples")
def test_shell_examples_parse_and_name_real_options() -> None:
    """An administrator pastes these: each must be valid shell, and each ``dgprov`` line must
    name a real command and only options that command has."""
    examples = shell_examples()
    problems = []
    for where, script in examples:
        parsed = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        if parsed.returncode != 0:
            problems.append(f"{where}: {parsed.stderr.strip()}")
        for words in dgprov_calls(script):
            if not words or words[0].startswith("-"):
                continue
            command = commands().get(words[0])
            if command is None:
                problems.append(f"{where}: no command dgprov {words[0]}")
                continue
            known = set(long_options(command)) | {"--help"}
            problems += [
                f"{where}: dgprov {words[0]} has no option {word.split('=')[0]}"
                for word in words[1:]
                if word.startswith("--") and word.split("=")[0] not in known
            ]
    assert len(examples) >= 5
    assert problems == []


def test_the_example_check_sees_a_bad_option() -> None:
    """Guard against a check that could never fail: a made-up option is found."""
    words = dgprov_calls("X=1 dgprov sync --url u \\\n    --no-such-option  # comment\n")
    assert words == [["sync", "--url", "u", "--no-such-option"]]
    assert "--no-such-option" not in long_options(commands()["sync"])
