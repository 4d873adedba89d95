"""map and selection: small built-in operations that need no external code."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..autopara import operation


@operation("map", version="1")
def map(item: Any, func: Callable, args: tuple = (), kwargs: dict | None = None) -> Any:
    """Apply func(item, *args, **kwargs) to each item; it returns Atoms, None or a list."""
    return func(item, *args, **(kwargs or {}))


@operation("select_by_bool", version="1")
def select_by_bool(item: Any, func: Callable) -> Any:
    """Keep the items for which func(item) is true."""
    return item if func(item) else None


@operation("select_by_index", version="1", per="chunk")
def select_by_index(items: list, indices: Iterable[int], index: list) -> list:
    """Keep the items whose position in the input (0-based, over all groups) is in indices."""
    wanted = set(int(i) for i in indices)
    return [item if i in wanted else None for item, i in zip(items, index)]
