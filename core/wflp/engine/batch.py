"""A queued job's share of an operation: one batch of inputs, run with the local engine.

The driver cuts its inputs into batches of ``num_inputs_per_queued_job`` and
submits one job per batch (wflp.exec.queue). Inside the job, :func:`run_batch`
runs the batch exactly as a local run would: adaptive chunks (starting only at
multiples of the operation's block), in a pool of the job's processes, each chunk
written as a chunk file named for the driver's stage; the driver then adopts
those files after checking their digests, so the output, its record and resume
are those of a local run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Optional

from .chunks import ChunkResult, ChunkSizer, ChunkTask, plan_chunks


class _Batch:
    """The items of a batch, as plan_chunks reads inputs."""

    def __init__(self, task: ChunkTask):
        self.task = task

    def iter_with_loc(self, lazy_frames: bool = False) -> Iterator[tuple]:
        return iter(zip(self.task.locs, self.task.items))


def run_batch(task: ChunkTask, nproc: int) -> dict:
    """Run *task*'s items in this process's folder (the job directory).

    Returns {"chunk_files": [...], "n_outputs", "skipped"} when the driver has a
    stage (chunk files are written into ./chunks/), or {"results": [...]} for an
    in-memory output; with {"error", "error_index"} if an item failed.
    """
    import cloudpickle

    from .executor import resolve_executor
    from .info import AutoparaInfo
    from .stage import ChunkTarget
    from .worker import RunContext

    payload = cloudpickle.loads(task.payload)
    folder = os.path.abspath("chunks")
    if task.target is not None:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    info = AutoparaInfo(num_python_subprocesses=nproc,
                        skip_failed=payload.skip_failed).resolved()
    executor = resolve_executor(info)  # the pool with several processes, else serial
    context = task.context
    if context is not None:  # the driver's folders are not here: the job's own are
        context = dataclasses.replace(context, outputs=(), stage=os.getcwd())
    else:
        context = RunContext(payload.op_name, (), os.getcwd(), "")

    def target_for(group: int, start: int, end: int) -> Optional[ChunkTarget]:
        return ChunkTarget(folder, task.target.token, group, start, end)

    sizer = ChunkSizer(None, nproc, len(task.items))
    tasks = plan_chunks(_Batch(task), lambda loc: task.group, sizer, payload=task.payload,
                        digest=task.digest, block=payload.block,
                        target_for=target_for if task.target is not None else None,
                        ship=nproc > 1, context=context, start_index=task.start)
    done: list[ChunkResult] = []
    for res in executor.map_chunks(tasks, info):
        sizer.observe(len(res.locs), res.seconds)
        if res.error is not None:
            return {"error": res.error, "error_index": res.error_index,
                    "skipped": [s for r in done for s in r.skipped] + list(res.skipped)}
        done.append(res)
    done.sort(key=lambda r: r.start)
    skipped = [s for r in done for s in r.skipped]
    if task.target is None:
        return {"results": [outs for r in done for outs in r.results or ()],
                "skipped": skipped}
    return {"chunk_files": [os.path.basename(f) for r in done for f in r.chunk_files],
            "n_outputs": sum(r.n_outputs for r in done), "skipped": skipped}


__all__ = ["run_batch"]
