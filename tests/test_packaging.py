"""The built wheel: it ships every file a command reads, and an install of it migrates and finds its data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What the wheel is built from (tests/, tools/ and the rest of the checkout stay out of it).
SOURCES = ("pyproject.toml", "README.md", "rag_server", "ingest", "evals", "sql")
# Data the commands read at run time, as (source folder, its place in the wheel).
DATA = (
    ("sql", "rag_server/migrations"),
    ("rag_server/demo", "rag_server/demo"),
    ("rag_server/routing/data", "rag_server/routing/data"),
    ("evals/sets/demo", "evals/sets/demo"),
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the working tree (so the build leaves nothing in the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=ignore)
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    out = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("rag_server-*.whl")
    return built


def _source_files(folder: Path) -> list[Path]:
    return [
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def test_wheel_ships_the_code_migrations_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for source, target in DATA:
        for path in _source_files(REPO / source):
            if path.suffix != ".py":
                name = f"{target}/{path.relative_to(REPO / source).as_posix()}"
                if name not in names:
                    missing.append(name)
    for package in ("rag_server", "ingest", "evals"):
        for path in _source_files(REPO / package):
            if path.suffix == ".py" and path.relative_to(REPO).as_posix() not in names:
                missing.append(path.relative_to(REPO).as_posix())
    assert missing == []
    assert "rag_server/migrations/001_init.sql" in names
    # The demo's maintenance scripts are tools of the checkout, not of the installed package.
    assert not [name for name in names if name.startswith("tools/") or "make_tables" in name]


def test_installed_wheel_migrates_and_reads_its_own_data(
    wheel: Path, database_url: str, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = (
        "import json, rag_server\n"
        "from rag_server.db import migrate\n"
        "from rag_server.demo import corpus_dir, routing_data, table_files\n"
        "from rag_server.routing.model import DEFAULT_DATA, TRAINING_CATALOGS\n"
        f"applied = migrate({database_url!r})\n"
        "print(json.dumps({'package': rag_server.__file__, 'applied': [m.name for m in applied],\n"
        "    'paths': [str(p) for p in (corpus_dir(), routing_data(), DEFAULT_DATA, TRAINING_CATALOGS,\n"
        "    *table_files(), *(m.path for m in applied))]}))\n"
    )
    # Run outside the checkout, the installed copy ahead of the editable one.
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["package"]).is_relative_to(site)
    assert found["applied"] == [path.stem.split("_", 1)[1] for path in sorted((REPO / "sql").glob("*.sql"))]
    for path in map(Path, found["paths"]):
        assert path.is_relative_to(site), path
        assert path.exists(), path
