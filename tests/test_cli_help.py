"""`rag-server --version` and the help screens, as a user sees them (a subprocess)."""

from __future__ import annotations

from importlib.metadata import version

import rag_server
from tests.conftest import run_cli


def test_version_prints_the_package_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rag-server {rag_server.__version__}\n"
    # The installed metadata carries the same version (pyproject reads it from rag_server.__version__).
    assert version("rag-server") == rag_server.__version__
