"""Executors: where chunks run (see :mod:`wflp.exec.base` for the contract)."""

from __future__ import annotations

from typing import Any

from .base import CAPABILITIES, Executor, capability


def executor_name(info: Any) -> str:
    """The executor a run uses: named in AutoparaInfo, else "serial" or "pool" by the
    number of processes."""
    name = info.executor
    if name is None:
        if info.remote_info is not None:
            return "queue"
        name = "pool" if (info.num_python_subprocesses or 1) > 1 else "serial"
    return name


def get_executor(info: Any) -> Any:
    """A new instance of the executor for a run. Executors are looked up through the
    plugin registry, which holds the builtins too."""
    from ..plugins import get_executor as lookup

    return lookup(executor_name(info))


__all__ = ["CAPABILITIES", "Executor", "capability", "executor_name", "get_executor"]
