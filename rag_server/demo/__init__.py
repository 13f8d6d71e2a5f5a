"""The demo knowledge base shipped with the package: support documents for the imaginary product Lumen."""

from __future__ import annotations

from pathlib import Path

DEMO_DOMAIN = "demo"


def corpus_dir() -> Path:
    """The folder of the demo's Markdown documents."""
    return Path(__file__).resolve().parent / "corpus"
