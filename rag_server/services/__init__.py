"""Use cases that the CLI and the HTTP API both run: each takes the pool and the settings, returns a summary,
and knows nothing of typer or FastAPI."""
