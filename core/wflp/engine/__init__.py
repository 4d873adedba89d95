"""The engine: operations over ConfigSets, cut into chunks, run by executors, resumable.

- :mod:`.operation`: ``Operation`` and the ``@operation`` decorator;
- :mod:`.info`: ``AutoparaInfo``;
- :mod:`.chunks`: chunk tasks, results, sizing and planning;
- :mod:`.worker`: ``run_chunk`` (what runs a chunk anywhere), per-item random
  streams and the per-item time limit, pool-worker set-up;
- :mod:`.stage`: the only code that names, checks, adopts and assembles chunk files;
- :mod:`.run`: the short driver that connects them with the output store.
"""

from .chunks import ChunkResult, ChunkTask
from .info import AutoparaInfo
from .operation import Operation, operation
from .worker import RunContext, current_run, item_rng, item_time_limit, run_chunk

__all__ = ["AutoparaInfo", "ChunkResult", "ChunkTask", "Operation", "RunContext", "current_run",
           "item_rng", "item_time_limit", "operation", "run_chunk"]
