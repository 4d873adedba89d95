"""map and selection: small built-in operations that need no external code."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Optional

from ..engine import operation
from ..errors import ParameterError


def _check_func(op: str, func: Any) -> None:
    if not callable(func):
        raise ParameterError(f"{op}: func must be a function (callable), got {func!r}")


def _check_map(params: dict, seed: Optional[int]) -> None:
    _check_func("map", params["func"])
    if not isinstance(params["args"], (tuple, list)):
        raise ParameterError(f"map: args must be a tuple of extra arguments, got "
                             f"{params['args']!r}")
    if params["kwargs"] is not None and not isinstance(params["kwargs"], dict):
        raise ParameterError(f"map: kwargs must be a dict, got {params['kwargs']!r}")


@operation("map", version="1", check=_check_map)
def map(item: Any, func: Callable, args: tuple = (), kwargs: dict | None = None) -> Any:
    """Apply func(item, *args, **kwargs) to each item; it returns Atoms, None or a list."""
    return func(item, *args, **(kwargs or {}))


@operation("select_by_bool", version="1",
           check=lambda params, seed: _check_func("select_by_bool", params["func"]))
def select_by_bool(item: Any, func: Callable) -> Any:
    """Keep the items for which func(item) is true."""
    return item if func(item) else None


def _check_indices(params: dict, seed: Optional[int]) -> None:
    indices = params["indices"]
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise ParameterError(f"select_by_index: indices must be a list of item positions "
                             f"(whole numbers >= 0), got {indices!r}")
    import numpy as np

    for value in indices:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ParameterError(f"select_by_index: indices must be whole numbers >= 0 "
                                 f"(positions in the input), got {value!r}")


@operation("select_by_index", version="1", per="chunk", check=_check_indices)
def select_by_index(items: list, indices: Iterable[int], index: list) -> list:
    """Keep the items whose position in the input (0-based, over all groups) is in indices."""
    wanted = set(int(i) for i in indices)
    return [item if i in wanted else None for item, i in zip(items, index)]
