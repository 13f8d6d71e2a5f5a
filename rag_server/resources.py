"""The data files shipped inside the package (migrations, demo corpus and tables, router training rows).

They are found through `importlib.resources`, so an installed wheel reads its own copy and an editable install
the source tree; nothing is looked up relative to a checkout. The migrations are authored in the top-level
`sql/` folder: `rag_server/migrations` is a link to it, which the wheel build turns into a copy.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from rag_server.errors import RagError


def package_path(*parts: str) -> Path:
    """The file-system path of a file or folder shipped in the `rag_server` package, e.g. ("demo", "corpus").

    Raises:
        RagError: the package is not installed as plain files (a zip import), so the path cannot be read
            as a folder.
    """
    resource = files("rag_server").joinpath(*parts)
    if not isinstance(resource, Path):
        raise RagError(
            f"rag_server is not installed as plain files, cannot read {resource}: reinstall it unzipped"
        )
    return resource
