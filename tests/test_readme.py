"""The README (and docs/) stay true: the commands they show exist with the options they use, the settings
tables match `Settings`, the README stays short and its links resolve.

Only help screens are shown here, in-process (through a subprocess each took about 2 s of imports, over a
minute for the README and docs on two cores); the commands themselves run in `.ci/run` and the other tests.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import pytest
from pydantic import AliasChoices
from typer.testing import CliRunner

from rag_server.cli import app
from rag_server.config import Settings
from tests.conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
SETTINGS_DOC = DOCS / "settings.md"
MAX_README_BYTES = 12_000

# Wide enough that rich does not cut long option names short ("--without-defa…").
HELP_ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
SEPARATORS = {"&&", "||", "|", ";"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
SUBCOMMAND = re.compile(r"^│ ([a-z][\w-]*)\s{2,}", re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
ENV_NAME = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def _documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _bash_blocks(text: str) -> list[str]:
    return [body for language, body in FENCE.findall(text) if language in {"bash", "sh", "shell"}]


def _rag_server_commands(block: str) -> list[list[str]]:
    """The argument lists of every `rag-server ...` command in a shell block (comments and `&&` chains
    understood; continuation lines joined)."""
    commands: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        segment: list[str] = []
        for token in [*shlex.split(line, comments=True), ";"]:
            if token in SEPARATORS:
                if segment[:1] == ["rag-server"]:
                    commands.append(segment[1:])
                segment = []
            else:
                segment.append(token)
    return commands


def _commands_panel(help_text: str) -> list[str]:
    """The subcommands a help screen lists (none for a leaf command)."""
    start = help_text.find("─ Commands ─")
    if start < 0:
        return []
    panel = help_text[start : help_text.find("╰", start)]
    return SUBCOMMAND.findall(panel)


def _help_screens(paths: Iterable[tuple[str, ...]], cache: dict[tuple[str, ...], str]) -> None:
    """`rag-server PATH --help` for every path not yet in `cache`."""
    runner = CliRunner()
    for path in set(paths) - cache.keys():
        done = runner.invoke(app, [*path, "--help"], env=HELP_ENV, prog_name="rag-server")
        cache[path] = done.output if done.exit_code == 0 else f"EXIT {done.exit_code}: {done.output.strip()}"


def _check_commands(commands: list[tuple[str, list[str]]]) -> list[str]:
    """Walk each command down the command tree, level by level, then check its options against the help
    screen of the command it names. Returns the problems found."""
    problems: list[str] = []
    cache: dict[tuple[str, ...], str] = {}
    walking = [(source, (), args) for source, args in commands]
    while walking:
        _help_screens((path for _, path, _ in walking), cache)
        still: list[tuple[str, tuple[str, ...], list[str]]] = []
        for source, path, args in walking:
            shown = " ".join(["rag-server", *path, *args])
            screen = cache[path]
            if screen.startswith("EXIT"):
                problems.append(
                    f"{source}: `{shown}`: `rag-server {' '.join(path)}` is no command ({screen})"
                )
                continue
            subcommands = _commands_panel(screen)
            if subcommands:
                if not args or args[0] not in subcommands:
                    problems.append(f"{source}: `{shown}`: expected one of {subcommands} after {path}")
                else:
                    still.append((source, (*path, args[0]), args[1:]))
                continue
            known = set(OPTION.findall(screen))
            for token in args:
                name = token.split("=", 1)[0]
                if name.startswith("-") and name != "-" and name not in known:
                    problems.append(f"{source}: `{shown}`: no option {name} (known: {sorted(known)})")
        walking = still
    return problems


def test_commands_name_real_commands_and_options() -> None:
    commands = [
        (document.relative_to(REPO).as_posix(), args)
        for document in _documents()
        for block in _bash_blocks(document.read_text())
        for args in _rag_server_commands(block)
    ]
    in_readme = [args for source, args in commands if source == "README.md"]
    # The parser found the README's tour (a broken parser must not pass by checking nothing).
    assert len(in_readme) >= 15, in_readme
    assert ["serve", "--demo"] in in_readme
    problems = _check_commands(commands)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_wrong_option_and_a_wrong_command() -> None:
    problems = _check_commands(
        [("t", ["search", "x", "--domain", "d", "--top-k", "3"]), ("t", ["tables", "lst", "--domain", "d"])]
    )
    assert len(problems) == 2, problems
    assert "no option --top-k" in problems[0]
    assert "expected one of" in problems[1] and "list" in problems[1]


def test_shell_blocks_are_parsed_as_a_shell_would() -> None:
    block = (
        "python3 -m venv .venv && . .venv/bin/activate && rag-server serve --demo\n"
        'rag-server search "a # b" --k 5   # a comment --nope\n'
        "rag-server eval sql \\\n    --dataset d --gold\n"
        "curl -s localhost:8000/healthz\n"
    )
    assert _rag_server_commands(block) == [
        ["serve", "--demo"],
        ["search", "a # b", "--k", "5"],
        ["eval", "sql", "--dataset", "d", "--gold"],
    ]


def _variables() -> set[str]:
    """The environment variable of every setting, as the user spells it."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names.add(str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"{prefix}{name}".upper())
    return names


def _table_variables(markdown: str) -> set[str]:
    """Variables named in the first column of the Markdown tables in `markdown`."""
    names: set[str] = set()
    for line in markdown.splitlines():
        if line.startswith("|"):
            names.update(ENV_NAME.findall(line.split("|")[1]))
    return names


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end >= 0 else None]


def test_settings_tables_match_settings() -> None:
    variables = _variables()
    in_readme = _table_variables(_section(README.read_text(), "## Settings"))
    in_docs = _table_variables(SETTINGS_DOC.read_text())
    assert len(in_readme) >= 10, in_readme
    assert not in_readme - variables, f"README lists unknown settings: {sorted(in_readme - variables)}"
    assert not in_docs - variables, f"docs/settings.md lists unknown settings: {sorted(in_docs - variables)}"
    undocumented = variables - in_readme - in_docs
    assert not undocumented, f"settings in neither README.md nor docs/settings.md: {sorted(undocumented)}"


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < MAX_README_BYTES, f"README.md is {size} bytes; move details into docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {_slug(title) for title in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("document", _documents(), ids=lambda path: path.relative_to(REPO).as_posix())
def test_relative_links_resolve(document: Path) -> None:
    text = FENCE.sub("", document.read_text())
    links = LINK.findall(text)
    if document == README:
        assert any(link.startswith("docs/") for link in links), "the README links to docs/"
    problems = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        if not path.exists():
            problems.append(f"{link}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            problems.append(f"{link}: no heading #{anchor} in {path.name}")
    assert not problems, "\n".join(problems)


def test_the_readme_shows_what_serve_demo_suggests() -> None:
    """The startup hint of `serve --demo` and the README's first block ask the same questions, the same way."""
    from rag_server.demo import try_commands

    shown = "\n".join(_bash_blocks(README.read_text()))
    for command in try_commands(8000):
        assert command in shown, f"README lacks the startup hint's command: {command}"


def test_install_commands_take_the_cpu_torch_everywhere_the_same_way() -> None:
    """The README's two commands, CI and the image install torch from PyTorch's CPU index (an ordinary machine
    otherwise pulls the CUDA build), with the same command; CI runs the README's test command."""
    torch = "pip install --retries 1 --index-url https://download.pytorch.org/whl/cpu torch==2.13.0"
    blocks = _bash_blocks(README.read_text())
    installs = [line for block in blocks for line in block.splitlines() if "pip install" in line]
    assert len(installs) >= 2 and all(torch in line for line in installs)
    test_command = next(line for line in installs if "[test]" in line)
    ci = (REPO / ".ci" / "run").read_text()
    assert f"{torch} && pip install -e '.[test]'" in ci and "pip install -e '.[test]'" in test_command
    dockerfile = (REPO / "Dockerfile").read_text()
    assert torch in dockerfile and "pip install -e" not in dockerfile  # the image installs the built wheel
