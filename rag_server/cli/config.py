"""`rag-server config`: the effective settings, secrets masked."""

from __future__ import annotations

import typer

from rag_server.cli._common import print_json, reports_errors, settings


@reports_errors
def show_config(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings (environment, .env, defaults); secrets are masked."""
    shown = settings().masked()
    if as_json:
        print_json(shown)
        return
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        typer.echo(f"{name:<{width}}  {value}")
