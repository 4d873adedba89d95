"""The executor contract: where chunks run, what an executor declares, and how one is chosen.

An executor is a subclass of :class:`Executor`. Its ``map_chunks(tasks, info)`` takes an
iterator of :class:`~wflp.engine.chunks.ChunkTask` and yields one
:class:`~wflp.engine.chunks.ChunkResult` per task, **in any order**: the engine puts
results back in input order (in memory) or writes each chunk where its task says
(to files), so an executor may finish chunks as they come. It runs each chunk with
:func:`wflp.engine.worker.run_chunk`, wherever it likes. It should read the task
iterator lazily (a bounded window ahead of its workers), so that the input is never
read far ahead of the work.

An executor declares what it is through attributes, which the engine reads instead of
testing its class (the base class gives the conservative defaults, all False):

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
``executor_options={...}`` the keyword arguments its factory is called with. The engine
names no executor module: the layers above it register what a name means
(:func:`register_executor` for the built-in "serial", "pool" and "queue", from
:mod:`wflp.exec`; :func:`set_executor_lookup` for every other name, from the plugin
registry). :mod:`wflp._wiring` connects them when wflp is imported.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Optional

from ..errors import ParameterError

if TYPE_CHECKING:
    from .chunks import ChunkResult, ChunkTask
    from .info import AutoparaInfo

CAPABILITIES = ("in_process", "shares_files", "submits_batches")


class Executor(abc.ABC):
    """Base class of executors (see the module docstring)."""

    name: str = "executor"
    in_process: bool = False
    shares_files: bool = False
    submits_batches: bool = False

    @abc.abstractmethod
    def map_chunks(self, tasks: Iterator[ChunkTask],
                   info: AutoparaInfo) -> Iterator[ChunkResult]:
        """Run every task; yield one ChunkResult per task, in any order."""

    def chunk_size(self, info: AutoparaInfo) -> Optional[int]:
        """Inputs per task: a fixed number, or None for adaptive chunks (the default:
        ``AutoparaInfo.num_inputs_per_python_subprocess``)."""
        return info.num_inputs_per_python_subprocess


#: builds an executor from ``executor_options``
ExecutorFactory = Callable[..., Executor]
#: builds the executor a name stands for, for names not registered with the engine
ExecutorLookup = Callable[..., Executor]

_factories: dict[str, ExecutorFactory] = {}
_lookup: Optional[ExecutorLookup] = None


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Make *name* (in ``AutoparaInfo(executor=name)``) build its executor with
    ``factory(**executor_options)``, without the plugin registry (the built-ins)."""
    _factories[name] = factory


def set_executor_lookup(lookup: Optional[ExecutorLookup]) -> None:
    """``lookup(name, **executor_options)`` builds the executor of any name not
    registered with :func:`register_executor` (the plugin registry's executors)."""
    global _lookup
    _lookup = lookup


def registered_executors() -> list[str]:
    """The names registered with :func:`register_executor`."""
    return sorted(_factories)


def capability(executor: Executor, name: str) -> bool:
    """What *executor* declares for capability *name* (one of :data:`CAPABILITIES`)."""
    if name not in CAPABILITIES:
        raise ValueError(f"unknown executor capability {name!r}")
    return {"in_process": executor.in_process, "shares_files": executor.shares_files,
            "submits_batches": executor.submits_batches}[name]


def chunk_size(executor: Executor, info: AutoparaInfo) -> Optional[int]:
    """The executor's fixed task size (see :meth:`Executor.chunk_size`)."""
    return executor.chunk_size(info)


def check_executor(executor: object, where: str) -> Executor:
    """*executor* itself if it is an :class:`Executor`; else a ParameterError that says
    what an executor is."""
    if isinstance(executor, Executor):
        return executor
    raise ParameterError(
        f"{where} must be an executor's name (e.g. 'pool') or an instance of "
        f"wflp.exec.Executor (a subclass that implements map_chunks(tasks, info) and "
        f"declares in_process, shares_files and submits_batches), got "
        f"{type(executor).__name__}")


def executor_name(info: AutoparaInfo) -> str:
    """The name of the executor a run uses: the instance's ``name``, the name given,
    else "queue" with remote_info, "pool" with several processes, "serial" otherwise."""
    chosen = info.executor
    if isinstance(chosen, Executor):
        return str(chosen.name)
    if chosen is None:
        if info.remote_info is not None:
            return "queue"
        return "pool" if (info.num_python_subprocesses or 1) > 1 else "serial"
    return str(chosen)


def resolve_executor(info: AutoparaInfo) -> Executor:
    """The executor instance of a run (see the module docstring)."""
    chosen = info.executor
    if chosen is not None and not isinstance(chosen, str):
        return check_executor(chosen, "AutoparaInfo.executor")
    name = executor_name(info)
    options = dict(info.executor_options or {})
    factory = _factories.get(name)
    if factory is not None:
        built = factory(**options)
    elif _lookup is not None:
        built = _lookup(name, **options)
    else:
        raise ParameterError(
            f"AutoparaInfo.executor={name!r}: no executor of that name is registered "
            f"(registered: {', '.join(registered_executors()) or 'none'}) and no plugin "
            "registry is connected to look it up")
    return check_executor(built, f"the executor {name!r}")


__all__ = ["CAPABILITIES", "Executor", "ExecutorFactory", "ExecutorLookup", "capability",
           "check_executor", "chunk_size", "executor_name", "register_executor",
           "registered_executors", "resolve_executor", "set_executor_lookup"]
