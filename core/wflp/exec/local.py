"""The built-in executors: serial (this process) and pool (reusable worker processes)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, Optional

from ..engine.chunks import ChunkResult, ChunkTask
from ..engine.worker import WorkerSlots, init_worker, run_chunk
from ..errors import OperationError
from .base import Executor

log = logging.getLogger("wflp")


class SerialExecutor(Executor):
    """Runs chunks one after another in this process."""

    name = "serial"
    in_process = True
    shares_files = True

    def map_chunks(self, tasks: Iterator[ChunkTask], info: Any) -> Iterator[ChunkResult]:
        """Run each chunk here, one after another, in order."""
        for task in tasks:
            yield run_chunk(task)


class WorkerPool:
    """The one worker pool of this process, created lazily and reused by every operation.

    A concurrent.futures process pool, because it reports a worker that died (killed,
    out of memory, segfault) instead of waiting forever for its result. Shared memory
    (WorkerSlots) tells which chunk each worker runs, so that a death names its chunk.
    """

    def __init__(self) -> None:
        self._pool: Any = None
        self._key: Optional[tuple] = None
        self._slots: Optional[WorkerSlots] = None
        self.method: Optional[str] = None
        self.pid: Optional[int] = None

    def get(self, nproc: int, threads: int) -> Any:
        """The pool of *nproc* workers with *threads* threads each: the running one if it
        matches (and this process made it), else a new one."""
        key = (nproc, threads)
        if self._pool is not None and self._key == key and self.pid == os.getpid() \
                and not getattr(self._pool, "_broken", False):
            return self._pool
        self.shutdown()
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.method = os.environ.get("WFLP_MP_START_METHOD") or (
            "fork" if sys.platform.startswith("linux") else "spawn")
        context = mp.get_context(self.method)
        self._slots = WorkerSlots(context, nproc)
        self._pool = ProcessPoolExecutor(nproc, mp_context=context, initializer=init_worker,
                                         initargs=(threads, self._slots.array, os.getpid()))
        self._key = key
        self.pid = os.getpid()
        log.debug("started a pool of %d worker processes (%s)", nproc, self.method)
        return self._pool

    def worker_pids(self) -> set[int]:
        """The process ids of the pool's workers."""
        return set(self._processes())

    def _processes(self) -> dict:
        return dict(getattr(self._pool, "_processes", None) or {})

    def death_report(self) -> str:
        """Which worker died, how, and which chunk it was running."""
        import time

        procs = self._processes()
        deadline = time.monotonic() + 2.0
        while True:  # a worker's pipes close a moment before its exit status can be read
            dead = [(pid, p.exitcode) for pid, p in procs.items() if p.exitcode is not None]
            if dead or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        first = [d for d in dead if d[1] != -signal.SIGTERM] or dead
        if not first:
            return ("a worker process died (killed, out of memory, or a crash in compiled "
                    "code)")
        pid, code = first[0]
        how = _exit_text(code)
        slots = self._slots
        if slots is not None and not slots.registered(pid):
            if self.method != "fork":
                return (f"a worker process could not start ({how}); with the "
                        f"'{self.method}' start method every worker imports your main "
                        "script again, so its entry point must be protected by `if __name__ "
                        "== '__main__':` (see the guide)")
            return f"a worker process died while starting ({how})"
        start = slots.chunk_of(pid) if slots is not None else None
        where = (f"while running the chunk starting at item {start}" if start is not None
                 else "between chunks")
        return f"worker process {pid} died {where} ({how})"

    def kill(self) -> None:
        """Stop the workers at once (they may be stuck) and forget the pool."""
        if self._pool is None:
            return
        if self.pid == os.getpid():
            for pid in self._processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self._key = None

    def shutdown(self) -> None:
        """Stop the workers and forget the pool (only in the process that made it)."""
        if self._pool is not None:
            if self.pid == os.getpid():
                for proc in self._processes().values():
                    proc.terminate()
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._key = None


def _exit_text(code: Optional[int]) -> str:
    if code is None:
        return "unknown cause"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (kill -9, or the out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{extra}"
    return f"exited with status {code}"


worker_pool = WorkerPool()


def shutdown_pool() -> None:
    """Stop the reusable worker pool (it is started again when next needed)."""
    worker_pool.shutdown()


import atexit  # noqa: E402

atexit.register(shutdown_pool)


class PoolExecutor(Executor):
    """Runs chunks in the process's reusable pool of worker processes."""

    name = "pool"
    shares_files = True  # input frames go to workers as FrameRefs; workers write chunk files

    def map_chunks(self, tasks: Iterator[ChunkTask], info: Any) -> Iterator[ChunkResult]:
        """Run the chunks in the worker pool, yielding each as it finishes; at most two
        per worker are in flight, so the input is not read far ahead. A worker that dies is
        an OperationError naming its chunk; finished chunks are kept for a rerun."""
        from concurrent.futures.process import BrokenProcessPool

        nproc = info.num_python_subprocesses or 1
        pool = worker_pool.get(nproc, info.threads_per_worker)
        window = 2 * nproc  # bounded: the input is never read far ahead of the workers
        pending: set = set()
        finished = False
        try:
            for task in tasks:
                pending.add(pool.submit(run_chunk, task))
                while len(pending) >= window:  # a slow chunk does not hold up the others
                    done, pending = _wait_first(pending)
                    for future in done:
                        yield future.result()
            while pending:
                done, pending = _wait_first(pending)
                for future in done:
                    yield future.result()
            finished = True
        except BrokenProcessPool:
            report = worker_pool.death_report()
            worker_pool.kill()
            raise OperationError(
                f"{report}; chunks finished before are kept, so rerun to resume; if it "
                "recurs, run that item serially to see why") from None
        except KeyboardInterrupt:
            worker_pool.kill()  # workers ignore Ctrl-C and may be stuck: stop them now
            raise
        finally:
            if not finished and pending and worker_pool._pool is pool:
                _finish_running(pending)


#: how long the driver blocks at a time while it waits for workers (see _wait_first)
SIGNAL_CHECK_S = 0.2


def _wait_first(pending: set) -> tuple[set, set]:
    """concurrent.futures.wait(FIRST_COMPLETED), in short waits: a Ctrl-C that the
    kernel delivers to one of the pool's helper threads only sets Python's flag, and a
    main thread blocked in one long lock wait would not see it until a chunk finished,
    which a stuck worker may never do. Between short waits Python runs the handler."""
    from concurrent.futures import FIRST_COMPLETED, wait

    while True:
        done, left = wait(pending, timeout=SIGNAL_CHECK_S, return_when=FIRST_COMPLETED)
        if done:
            return done, left


def _finish_running(pending: set) -> None:
    """After an error: cancel chunks not started, let running ones finish (their chunk
    files are kept for a rerun) so that nothing writes after the run has ended."""
    running = [f for f in pending if not f.cancel()]
    if not running:
        return
    log.info("waiting for %d chunk(s) already running to finish (Ctrl-C stops them)",
             len(running))
    try:
        while running:  # short waits, so that Ctrl-C is seen (see _wait_first)
            _done, left = _wait_first(set(running))
            running = list(left)
    except KeyboardInterrupt:
        worker_pool.kill()
        raise


__all__ = ["PoolExecutor", "SerialExecutor", "WorkerPool", "shutdown_pool", "worker_pool"]
