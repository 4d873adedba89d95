"""Executors: where chunks run. The built-ins live here (serial and pool in local.py, queue
in queue.py); the contract and how one is chosen are the engine's
(:mod:`wflp.engine.executor`)."""

from __future__ import annotations

from typing import Any

from ..engine.executor import (
    BUILTIN_EXECUTORS,
    CAPABILITIES,
    Executor,
    capability,
    executor_name,
    resolve_executor,
)


def get_executor(info: Any) -> Any:
    """The executor instance of a run (see wflp.engine.executor.resolve_executor)."""
    return resolve_executor(info)


__all__ = ["BUILTIN_EXECUTORS", "CAPABILITIES", "Executor", "capability", "executor_name",
           "get_executor", "resolve_executor"]
