"""The command line's surface: `rag-server --version`, the help screens, how `serve` reads RAG_DEMO."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import rag_server
from rag_server.cli import app
from tests.conftest import run_cli


def test_version_prints_the_package_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rag-server {rag_server.__version__}\n"
    # The installed metadata carries the same version (pyproject reads it from rag_server.__version__).
    assert version("rag-server") == rag_server.__version__


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that reach it (typer's own click copy, no types)."""
    found = [path]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            found += _command_paths(sub, (*path, name))
    return found


def test_help_screens_show_no_python_types_for_flags_and_lists() -> None:
    # typer 0.29 printed a type after every flag ("--help <bool>") and a list's Python type ("<list[Path]>").
    root = typer.main.get_command(app)
    paths = _command_paths(root)
    assert ("ingest",) in paths and ("eval", "retrieval") in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert "--help" in result.output and "Show this message and exit." in result.output
        assert "<bool>" not in result.output, (path, result.output)
        assert "<list[" not in result.output, (path, result.output)
    ingest_help = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"}).output
    assert "<path>" in ingest_help  # a list argument shows its element's type


@pytest.mark.parametrize(
    ("env", "args", "demo"),
    [
        (None, [], False),
        ("1", [], True),
        ("0", [], False),
        ("1", ["--no-demo"], False),
        (None, ["--demo"], True),
    ],
)
def test_serve_takes_demo_from_rag_demo_unless_a_flag_says(
    monkeypatch: pytest.MonkeyPatch, env: str | None, args: list[str], demo: bool
) -> None:
    # The Docker image sets RAG_DEMO=1 so that it starts with the demo; a flag overrides the environment.
    if env is None:
        monkeypatch.delenv("RAG_DEMO", raising=False)
    else:
        monkeypatch.setenv("RAG_DEMO", env)
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    assert serve.make_context("serve", list(args)).params["demo"] is demo
