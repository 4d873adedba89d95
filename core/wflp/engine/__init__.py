"""The engine: operations over ConfigSets, cut into chunks, run by executors, resumable.

- :mod:`.operation`: ``Operation`` and the ``@operation`` decorator;
- :mod:`.info`: ``AutoparaInfo``;
- :mod:`.executor`: the executor contract and how one is chosen;
- :mod:`.chunks`: chunk tasks, results, sizing and planning;
- :mod:`.worker`: ``run_chunk`` (what runs a chunk anywhere), per-item random
  streams and the per-item time limit, pool-worker set-up;
- :mod:`.stage`: the only code that names, checks, adopts and assembles chunk files;
- :mod:`.run`: the short driver that connects them with the output store.

The names of chunks and worker (which need numpy and ASE) are imported on first use,
so that ``import wflp`` can register with the engine (wflp._wiring) and stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .info import AutoparaInfo
from .operation import Operation, operation

if TYPE_CHECKING:
    from .chunks import ChunkResult, ChunkTask
    from .worker import RunContext, current_run, item_rng, item_time_limit, run_chunk

_LAZY = {"ChunkResult": ".chunks", "ChunkTask": ".chunks", "RunContext": ".worker",
         "current_run": ".worker", "item_rng": ".worker", "item_time_limit": ".worker",
         "run_chunk": ".worker"}

__all__ = ["AutoparaInfo", "ChunkResult", "ChunkTask", "Operation", "RunContext", "current_run",
           "item_rng", "item_time_limit", "operation", "run_chunk"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wflp.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
