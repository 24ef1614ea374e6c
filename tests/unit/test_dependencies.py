"""Dependencies declared for what they do under others (pyproject.toml says why)."""

from __future__ import annotations

import importlib.machinery
from typing import Any

import pytest
from httpcore import _synchronization


async def test_httpcores_library_check_searches_no_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore asks which async library runs at every lock and event it makes, by importing
    sniffio: with sniffio installed the import is a lookup in `sys.modules`; without it every
    ask is a failed import that searches each path again (several per webhook request)."""
    searched: list[str] = []
    find_spec = importlib.machinery.PathFinder.find_spec

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        searched.append(name)
        return find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec", counting)
    for _ in range(10):
        assert _synchronization.current_async_library() == "asyncio"
    assert searched == []
