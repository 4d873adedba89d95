"""The executor contract: where chunks run, and what an executor declares about itself.

An executor's ``map_chunks(tasks, autopara_info)`` takes an iterator of
:class:`~wflp.engine.chunks.ChunkTask` and yields one
:class:`~wflp.engine.chunks.ChunkResult` per task, in any order (the engine
puts results back in input order). It runs each chunk with
:func:`wflp.engine.worker.run_chunk`, wherever it likes.

An executor declares what it is through class attributes, which the engine
reads instead of testing its class (plugins that do not subclass
:class:`Executor` get the conservative defaults):

``in_process``
    Runs chunks in this very process: the payload need not be picklable, and items
    are not shipped anywhere.
``shares_files``
    Its workers see this machine's files: they parse input frames themselves and
    write chunk files straight into the stage. Otherwise results come back in the
    ChunkResult (or, for queued jobs, as chunk files the stage adopts).
``submits_batches``
    It submits queued jobs, each taking a fixed number of inputs
    (``RemoteInfo.num_inputs_per_queued_job``), instead of adaptive chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CAPABILITIES = ("in_process", "shares_files", "submits_batches")


class Executor:
    """Base class of executors (see the module docstring)."""

    name = "executor"
    in_process = False
    shares_files = False
    submits_batches = False

    def map_chunks(self, tasks: Iterator[Any], info: Any) -> Iterator[Any]:
        raise NotImplementedError


def capability(executor: Any, name: str) -> bool:
    """What *executor* declares for capability *name* (False if it does not say)."""
    if name not in CAPABILITIES:
        raise ValueError(f"unknown executor capability {name!r}")
    return bool(getattr(executor, name, False))


__all__ = ["CAPABILITIES", "Executor", "capability"]
