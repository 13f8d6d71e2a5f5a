"""The demo knowledge base shipped with the package: support documents for the imaginary product Lumen."""

from __future__ import annotations

from pathlib import Path

from rag_server.resources import package_path

DEMO_DOMAIN = "demo"
# Money is exact in the demo tables (CSV inference would make it double precision).
DEMO_TYPES = {
    "orders": {"amount": "numeric(12,2)"},
    "refunds": {"amount": "numeric(12,2)"},
    "tickets": {"first_response_hours": "numeric(8,2)"},
}


# What `serve --demo` suggests asking first (the README shows the same questions).
TRY_QUESTIONS = (
    "What does ERR-4013 mean?",
    "How many customers are on the Business plan?",
    "What is the CEO's favourite colour?",
)


def try_commands(port: int = 8000) -> list[str]:
    """The curl commands that ask TRY_QUESTIONS, as a user would paste them."""
    head = f"curl -s localhost:{port}/v1/ask -H 'content-type: application/json' -d"
    return [
        f'{head} \'{{"question": "{q.replace(chr(39), chr(39) + chr(34) + chr(39) + chr(34) + chr(39))}"}}\''
        for q in TRY_QUESTIONS
    ]


def corpus_dir() -> Path:
    """The folder of the demo's Markdown documents."""
    return package_path("demo", "corpus")


def tables_dir() -> Path:
    """The folder of the demo's tables (CSV) and their catalog.json."""
    return package_path("demo", "tables")


def table_files() -> list[Path]:
    return sorted(tables_dir().glob("*.csv"))


def routing_data() -> Path:
    """Labeled questions about the demo (docs and tables) that train its router."""
    return package_path("demo", "routing.jsonl")
