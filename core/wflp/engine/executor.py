"""The executor protocol: where chunks run, what an executor declares, and how one is chosen.

An executor's ``map_chunks(tasks, autopara_info)`` takes an iterator of
:class:`~wflp.engine.chunks.ChunkTask` and yields one
:class:`~wflp.engine.chunks.ChunkResult` per task, **in any order**: the engine puts
results back in input order (in memory) or writes each chunk where its task says
(to files), so an executor may finish chunks as they come. It runs each chunk with
:func:`wflp.engine.worker.run_chunk`, wherever it likes. It should read the task
iterator lazily (a bounded window ahead of its workers), so that the input is never
read far ahead of the work.

An executor declares what it is through class attributes, which the engine reads
instead of testing its class (executors that do not subclass :class:`Executor` get
the conservative defaults):

``in_process``
    Runs chunks in this very process: the payload need not be picklable, and items
    are not shipped anywhere.
``shares_files``
    Its workers see this machine's files: they parse input frames themselves and
    write chunk files straight into the stage. Otherwise results come back in the
    ChunkResult (or, for queued jobs, as chunk files the stage adopts).
``submits_batches``
    It runs each task as a separate batch elsewhere (a queued job), which adopts its
    chunk files into the stage.

And it decides its chunking: :meth:`Executor.chunk_size` returns a fixed number of
inputs per task, or None for the engine's adaptive chunks (about 2 s of work each).

Choosing one: ``AutoparaInfo(executor=...)`` takes a name or an instance, and
``executor_options={...}`` the keyword arguments its class is built with. The
built-in names ("serial", "pool", "queue") resolve here, without the plugin
registry; any other name is looked up among the executors plugins register.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Optional

CAPABILITIES = ("in_process", "shares_files", "submits_batches")

# the built-in executors, as import paths (nothing is imported before it is used)
BUILTIN_EXECUTORS = {
    "serial": "wflp.exec.local:SerialExecutor",
    "pool": "wflp.exec.local:PoolExecutor",
    "queue": "wflp.exec.queue:QueueExecutor",
}


class Executor:
    """Base class of executors (see the module docstring)."""

    name = "executor"
    in_process = False
    shares_files = False
    submits_batches = False

    def map_chunks(self, tasks: Iterator[Any], info: Any) -> Iterator[Any]:
        """Run every task; yield one ChunkResult per task, in any order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement map_chunks")

    def chunk_size(self, info: Any) -> Optional[int]:
        """Inputs per task: a fixed number, or None for adaptive chunks (the default:
        ``AutoparaInfo.num_inputs_per_python_subprocess``)."""
        return info.num_inputs_per_python_subprocess


def capability(executor: Any, name: str) -> bool:
    """What *executor* declares for capability *name* (False if it does not say)."""
    if name not in CAPABILITIES:
        raise ValueError(f"unknown executor capability {name!r}")
    return bool(getattr(executor, name, False))


def chunk_size(executor: Any, info: Any) -> Optional[int]:
    """The executor's fixed task size (see :meth:`Executor.chunk_size`)."""
    method = getattr(executor, "chunk_size", None)
    if callable(method):
        return method(info)
    return info.num_inputs_per_python_subprocess


def executor_name(info: Any) -> str:
    """The name of the executor a run uses: the instance's ``name``, the name given,
    else "queue" with remote_info, "pool" with several processes, "serial" otherwise."""
    chosen = info.executor
    if chosen is not None and not isinstance(chosen, str):
        return str(getattr(chosen, "name", type(chosen).__name__))
    if chosen is None:
        if info.remote_info is not None:
            return "queue"
        chosen = "pool" if (info.num_python_subprocesses or 1) > 1 else "serial"
    return chosen


def resolve_executor(info: Any) -> Any:
    """The executor instance of a run (see the module docstring)."""
    chosen = info.executor
    if chosen is not None and not isinstance(chosen, str):
        return chosen
    name = executor_name(info)
    options = dict(info.executor_options or {})
    target = BUILTIN_EXECUTORS.get(name)
    if target is not None:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)(**options)
    # a plugin's executor: the registry is the only place that knows it (the one call
    # from the engine upwards, made only for names that are not built in)
    from ..plugins import get_executor

    return get_executor(name, **options)


__all__ = ["BUILTIN_EXECUTORS", "CAPABILITIES", "Executor", "capability", "chunk_size",
           "executor_name", "resolve_executor"]
