"""AutoparaInfo: how an operation is parallelized (none of it changes the results)."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any, Optional, Protocol, runtime_checkable

from ..errors import ParameterError


@runtime_checkable
class RemoteSettings(Protocol):
    """What the engine needs of ``AutoparaInfo.remote_info`` (a ``wflp.RemoteInfo``, from
    the remote layer above): a checked copy of itself, or a ParameterError."""

    def checked(self) -> Any:
        """A checked copy of the settings; ParameterError if one is wrong."""

ENV_NUM_PROCESSES = "WFLP_NUM_PYTHON_SUBPROCESSES"
ENV_PROGRESS = "WFLP_PROGRESS"
ENV_REUSE = "WFLP_REUSE"
REUSE_MODES = ("identity", "strict")


@dataclasses.dataclass
class AutoparaInfo:
    """How an operation is parallelized; none of it changes the results.

    num_python_subprocesses: worker processes (default: $WFLP_NUM_PYTHON_SUBPROCESSES,
        else 1, i.e. serial in this process).
    num_inputs_per_python_subprocess: items per chunk. Default: adaptive, chunks
        of about 2 s of work each (measured as results arrive), never more than a
        quarter of a process's share of what remains, so the processes finish
        together. A chunk is also the unit of resume. Operations that keep state
        between items (calculate with a calculator that is reset every N
        configurations) round chunks up to whole blocks of N.
    skip_failed: an item whose function raises is logged and dropped instead of
        stopping the operation.
    item_time_limit: seconds an item may run; an item that runs longer is
        interrupted and counts as failed, like any other failing item (calculate
        marks the configuration with <prefix>calc_failed). It interrupts Python
        code and calls that return to Python (sleeps, most I/O); a call into
        compiled code that never returns to the interpreter is interrupted when it
        does.
    initializer: (callable, args) or a callable, run once in each process that
        runs chunks of this operation, before its first chunk.
    threads_per_worker: BLAS/OpenMP threads in each worker process (default 1).
    progress: show a tqdm bar (default: when stderr is a terminal and
        $WFLP_PROGRESS is not 0).
    executor: "serial", "pool", "queue", the name of an executor a plugin registers
        (e.g. "dask"), or an executor instance (see wflp.engine.executor); default:
        "queue" with remote_info, else "serial" or "pool" by num_python_subprocesses.
    executor_options: keyword arguments the named executor is built with (e.g.
        {"address": "tcp://..."} for Dask).
    remote_info: a wflp.RemoteInfo: run as queued jobs of a fixed number of inputs
        on a configured system; num_python_subprocesses is then the pool inside each
        job (default: the job's num_cores).
    reuse: when an existing output is reused: "identity" (default, or $WFLP_REUSE)
        when what decides its result matches, whatever versions of ASE, wflp and
        plugins made it; "strict" only when those versions match too. An
        OutputSpec(reuse=...) takes precedence.
    """

    num_python_subprocesses: Optional[int] = None
    num_inputs_per_python_subprocess: Optional[int] = None
    skip_failed: bool = False
    item_time_limit: Optional[float] = None
    initializer: Any = None
    threads_per_worker: int = 1
    progress: Optional[bool] = None
    executor: Any = None
    executor_options: Optional[dict] = None
    remote_info: Any = None
    reuse: Optional[str] = None

    def resolved(self) -> AutoparaInfo:
        """A copy with defaults filled in and values checked."""
        nproc = self.num_python_subprocesses
        if nproc is None:
            env = os.environ.get(ENV_NUM_PROCESSES, "").strip()
            if env:
                try:
                    nproc = int(env)
                except ValueError:
                    raise ParameterError(
                        f"${ENV_NUM_PROCESSES}={env!r} is not a whole number; set it to "
                        "the number of worker processes (e.g. 4) or unset it"
                    ) from None
            else:
                nproc = 1
        _check_positive("num_python_subprocesses", nproc)
        if self.num_inputs_per_python_subprocess is not None:
            _check_positive("num_inputs_per_python_subprocess",
                            self.num_inputs_per_python_subprocess)
        _check_positive("threads_per_worker", self.threads_per_worker)
        limit = self.item_time_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or not math.isfinite(limit) or limit <= 0):
            raise ParameterError(f"AutoparaInfo.item_time_limit must be a number of seconds "
                                 f"> 0 (or None for no limit), got {limit!r}")
        if not isinstance(self.skip_failed, bool):
            raise ParameterError(f"AutoparaInfo.skip_failed must be True or False, got "
                                 f"{self.skip_failed!r}")
        if self.executor is not None and not isinstance(self.executor, str):
            from .executor import check_executor

            check_executor(self.executor, "AutoparaInfo.executor")
        if self.executor_options is not None and not isinstance(self.executor_options, dict):
            raise ParameterError(f"AutoparaInfo.executor_options must be a dict of keyword "
                                 f"arguments, got {type(self.executor_options).__name__}")
        if self.remote_info is not None:
            if not isinstance(self.remote_info, RemoteSettings):
                raise ParameterError(f"AutoparaInfo.remote_info must be a wflp.RemoteInfo, got "
                                     f"{type(self.remote_info).__name__}")
            self.remote_info.checked()
        reuse = self.reuse
        if reuse is None:
            reuse = os.environ.get(ENV_REUSE, "").strip() or "identity"
            if reuse not in REUSE_MODES:
                raise ParameterError(f"${ENV_REUSE}={reuse!r}: set it to 'identity' or "
                                     "'strict', or unset it")
        elif reuse not in REUSE_MODES:
            raise ParameterError(f"AutoparaInfo.reuse must be 'identity' or 'strict', got "
                                 f"{reuse!r}")
        return dataclasses.replace(self, num_python_subprocesses=int(nproc), reuse=reuse)

    def show_progress(self) -> bool:
        """Whether to show a progress bar: ``progress`` if set, else not when $WFLP_PROGRESS
        says off, else only on a terminal."""
        if self.progress is not None:
            return self.progress
        if os.environ.get(ENV_PROGRESS, "").strip() in ("0", "false", "no", "off"):
            return False
        return sys.stderr.isatty()


def _check_positive(name: str, value: Any) -> None:
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"AutoparaInfo.{name} must be a whole number >= 1, got {value!r}")


def reuse_mode(outputs: Any, info: Optional[AutoparaInfo]) -> str:
    """The reuse mode of a run: the OutputSpec's (an OutputModel has none), else the
    (resolved) AutoparaInfo's."""
    mode = getattr(outputs, "reuse", None)
    if mode is None:
        mode = (info or AutoparaInfo()).resolved().reuse
    return mode or "identity"


__all__ = ["ENV_NUM_PROCESSES", "ENV_PROGRESS", "ENV_REUSE", "AutoparaInfo", "reuse_mode"]
