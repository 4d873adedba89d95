"""Executors: where chunks run. The built-ins live here (serial and pool in local.py, queue
in queue.py), listed in :data:`BUILTIN_EXECUTORS`; the contract and how one is chosen are
the engine's (:mod:`wflp.engine.executor`), which knows these only as registered names."""

from __future__ import annotations

from typing import Any

from ..engine.executor import (
    CAPABILITIES,
    Executor,
    capability,
    executor_name,
    resolve_executor,
)
from ..engine.info import AutoparaInfo


def serial_executor(**options: Any) -> Executor:
    """Chunks one after another in this process."""
    from .local import SerialExecutor

    return SerialExecutor(**options)


def pool_executor(**options: Any) -> Executor:
    """Chunks in this process's reusable pool of worker processes."""
    from .local import PoolExecutor

    return PoolExecutor(**options)


def queue_executor(**options: Any) -> Executor:
    """Batches of inputs as queued jobs on a configured system."""
    from .queue import QueueExecutor

    return QueueExecutor(**options)


#: the built-in executors by name; the modules are imported when one is first built
BUILTIN_EXECUTORS = {"serial": serial_executor, "pool": pool_executor,
                     "queue": queue_executor}


def get_executor(info: AutoparaInfo) -> Executor:
    """The executor instance of a run (see wflp.engine.executor.resolve_executor)."""
    return resolve_executor(info)


__all__ = ["BUILTIN_EXECUTORS", "CAPABILITIES", "Executor", "capability", "executor_name",
           "get_executor", "pool_executor", "queue_executor", "resolve_executor",
           "serial_executor"]
