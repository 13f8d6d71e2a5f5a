"""The examples in the package's docstrings run and hold (fusion, analyzer, citations, ...)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rag_server


def _modules_with_examples() -> list[str]:
    found = []
    for module in pkgutil.walk_packages(rag_server.__path__, "rag_server."):
        spec = importlib.util.find_spec(module.name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as source:
                if ">>> " in source.read():
                    found.append(module.name)
    return found


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
