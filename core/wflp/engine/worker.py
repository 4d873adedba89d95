"""What runs a chunk, wherever it runs: in this process, a pool worker or a queued job.

:func:`run_chunk` is the one function every executor calls for a chunk. It
unpickles the operation's payload once per process, runs the operation's
function on each item (or on the whole chunk), applies the per-item time limit,
and writes the results to the stage's chunk file (or hands them back).

Pool workers are prepared by :func:`init_worker`: numerical libraries pinned to
``threads_per_worker`` threads, Ctrl-C left to the driver, and a worker that
outlives its driver (killed with SIGKILL) ends at once (PR_SET_PDEATHSIG on
Linux, a parent watch elsewhere), so it cannot go on computing and writing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Optional

import cloudpickle
import numpy as np
from ase import Atoms

from ..errors import ItemTimeoutError
from ..io.extxyz import FrameRef, read_frame_refs
from .chunks import ChunkResult, ChunkTask

log = logging.getLogger("wflp")


@dataclasses.dataclass
class Payload:
    """What every chunk of one run shares: the function and its arguments."""

    func: Callable
    per: str
    args: tuple
    kwargs: dict
    seed: Optional[int]
    wants_rng: bool
    wants_index: bool
    skip_failed: bool
    initializer: Any
    op_name: str
    item_time_limit: Optional[float] = None
    wants_block: bool = False
    block: int = 1


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where the running operation writes, for code that needs files of its own.

    operation: its name. outputs: the absolute paths of its output files (empty for
    an in-memory output). stage: its stage folder (None in memory). run_id: a token
    unique to this run of the driver (the same in every worker).
    """

    operation: str
    outputs: tuple = ()
    stage: Optional[str] = None
    run_id: str = ""


_context: Optional[RunContext] = None


def current_run() -> Optional[RunContext]:
    """The RunContext of the chunk being run in this process (None outside a chunk).

    File-based calculators and generators use it to put one run directory per item
    beside the output (see wflp.calculators.fileio).
    """
    return _context


_payload_cache: dict[str, Payload] = {}
_initialized: set[str] = set()


def remember_payload(digest: str, payload: Payload) -> None:
    """Make an unpicklable payload available to chunks run in this process."""
    _payload_cache[digest] = payload


def _load_payload(task: ChunkTask) -> Payload:
    payload = _payload_cache.get(task.digest)
    if payload is None:
        payload = cloudpickle.loads(task.payload)
        if len(_payload_cache) > 16:
            _payload_cache.clear()
        _payload_cache[task.digest] = payload
    init = payload.initializer
    if init is not None:
        from ..records import sha256_bytes

        key = sha256_bytes(cloudpickle.dumps(init))
        if key not in _initialized:
            func, args = (init, ()) if callable(init) else (init[0], tuple(init[1]))
            func(*args)
            _initialized.add(key)
    return payload


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of item *index*: independent of chunking and process count."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))


def private_copy(item: Any) -> Any:
    """A copy the operation may change freely, keeping any calculator results.

    ``Atoms.copy()`` drops the calculator, and with it the energy and forces that ASE's
    readers attach to frames as a SinglePointCalculator: kept here as one.
    """
    if not isinstance(item, Atoms):
        return item
    new = item.copy()
    results = getattr(item.calc, "results", None)
    if results:
        from ase.calculators.singlepoint import SinglePointCalculator

        try:
            new.calc = SinglePointCalculator(
                new, **{k: v.copy() if isinstance(v, np.ndarray) else v
                        for k, v in results.items()})
        except Exception as err:  # results an SPC cannot hold (not numbers)
            log.warning("the calculator results %s of an input configuration cannot be "
                        "kept (%s: %s)", sorted(results), type(err).__name__, err)
    return new


def _fresh_items(task: ChunkTask) -> list:
    # frames read here from FrameRefs are fresh, and so are the items of a chunk that
    # came pickled (to a pool or Dask worker; see ChunkTask.fresh_items): only the
    # caller's own objects, in a serial run, need a private copy
    received = task.fresh_items()
    if received is not None:
        return read_frame_refs(received)
    return [x if isinstance(r, FrameRef) else private_copy(x)
            for r, x in zip(task.items, read_frame_refs(task.items))]


# -- the per-item time limit ------------------------------------------------------------------

_time_limit: Optional[float] = None   # of the chunk being run in this process
_armed = False


@contextlib.contextmanager
def item_time_limit(index: Optional[int] = None) -> Iterator[None]:
    """Interrupt the block if it runs longer than the running operation's
    ``AutoparaInfo.item_time_limit``, raising ItemTimeoutError (a failed item).

    The engine applies it to each item of per-item operations; a per-chunk function
    wraps each of its items in it. Without a limit (or outside the main thread, where
    signals cannot be used) it does nothing.
    """
    global _armed
    limit = _time_limit
    if (not limit or _armed or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    active = True

    def expired(signum, frame):
        if active:
            where = f"item {index}" if index is not None else "an item"
            raise ItemTimeoutError(
                f"{where} ran longer than its time limit of {limit:g} s "
                "(AutoparaInfo.item_time_limit) and was interrupted")

    previous = signal.signal(signal.SIGALRM, expired)
    _armed = True
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _armed = False


# -- running a chunk --------------------------------------------------------------------------

def run_chunk(task: ChunkTask) -> ChunkResult:
    """Run one chunk; every executor calls this for each chunk, wherever it runs."""
    global _time_limit, _context
    if task.cwd is not None and task.cwd != os.getcwd():
        os.chdir(task.cwd)  # a reused worker follows its caller, as a serial run would
    _slot_mark(task.start)
    _context = task.context
    try:
        payload = _load_payload(task)
        _time_limit = payload.item_time_limit
        t0 = time.perf_counter()
        items = _fresh_items(task)
        if payload.per == "chunk":
            results, error, error_index, skipped = _run_whole_chunk(payload, task, items)
        else:
            results, error, error_index, skipped = _run_items(payload, task.start, items)
        seconds = time.perf_counter() - t0
    finally:
        _time_limit = None
        _context = None
        _slot_mark(None)
    if error is not None:
        return ChunkResult(task.start, task.locs, None, 0, error=error,
                           error_index=error_index, seconds=seconds, skipped=skipped,
                           group=task.group)
    n_out = sum(len(r) for r in results)
    if task.target is None:
        return ChunkResult(task.start, task.locs, results, n_out, seconds=seconds,
                           skipped=skipped, group=task.group)
    from .stage import write_chunk

    path = write_chunk(task.target, results, payload.op_name)
    return ChunkResult(task.start, task.locs, None, n_out, seconds=seconds, chunk_files=[path],
                       skipped=skipped, group=task.group)


def _as_outputs(result: Any) -> list:
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def _call_kwargs(payload: Payload, rng: Any, index: Any) -> dict:
    kwargs = dict(payload.kwargs)
    if payload.wants_rng:
        kwargs["rng"] = rng
    if payload.wants_index:
        kwargs["index"] = index
    if payload.wants_block:
        kwargs["block"] = payload.block
    return kwargs


#: what running a chunk's items gives: (results, error, error_index, skipped)
_Outcome = tuple[Optional[list], Optional[str], Optional[int], list]


def _one_at_a_time(payload: Payload, start: int, items: list,
                   call: Callable) -> _Outcome:
    """``call(i, item)`` for each item, under the item's time limit: (results, error,
    error_index, skipped). A failure ends the chunk, or with skip_failed is logged and
    gives the item no output."""
    results: list[list] = []
    skipped: list = []
    for i, item in enumerate(items):
        index = start + i
        try:
            with item_time_limit(index):
                results.append(call(i, item))
        except Exception:
            text = traceback.format_exc()
            if not payload.skip_failed:
                return None, text, index, skipped
            _log_skipped(payload, index, text)
            skipped.append((index, _last_line(text)))
            results.append([])
    return results, None, None, skipped


def _run_items(payload: Payload, start: int, items: list) -> _Outcome:
    """Per-item functions: (results, error, error_index, skipped)."""
    seeded = payload.wants_rng and payload.seed is not None

    def call(i: int, item: Any) -> list:
        index = start + i
        kwargs = _call_kwargs(payload, item_rng(payload.seed, index) if seeded else None, index)
        return _as_outputs(payload.func(item, *payload.args, **kwargs))

    return _one_at_a_time(payload, start, items, call)


def _run_whole_chunk(payload: Payload, task: ChunkTask, items: list) -> _Outcome:
    """Per-chunk functions: one call for all items. If it raises, the items are run one
    by one (from fresh copies) to find which failed, and to skip it with skip_failed."""
    n = len(items)
    seeded = payload.wants_rng and payload.seed is not None
    indices = list(range(task.start, task.start + n))
    rngs = [item_rng(payload.seed, i) for i in indices] if seeded else None
    kwargs = _call_kwargs(payload, rngs, indices)
    try:
        out: Optional[list] = list(payload.func(items, *payload.args, **kwargs))
    except Exception:
        out = None  # find the failing item below
    if out is not None:
        if len(out) != n:
            return None, (f"OperationError: operation {payload.op_name!r}: its chunk function "
                          f"returned {len(out)} results for {n} items; a per-chunk function "
                          "must return one entry (Atoms, None or a list) per item"
                          ), task.start, []
        return [_as_outputs(r) for r in out], None, None, []

    def call(i: int, item: Any) -> list:
        kwargs = _call_kwargs(payload, [rngs[i]] if rngs is not None else None,
                              [task.start + i])
        one = list(payload.func([item], *payload.args, **kwargs))
        return _as_outputs(one[0]) if one else []

    return _one_at_a_time(payload, task.start, _fresh_items(task), call)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _log_skipped(payload: Payload, index: int, text: str) -> None:
    # the driver warns with the reason; the whole traceback is here, for --debug
    log.debug("operation %r: item %d failed and is skipped (skip_failed=True):\n%s",
              payload.op_name, index, text)


# -- pool workers -----------------------------------------------------------------------------

_slots: Any = None       # shared array: [pid, chunk start + 1] per worker (see WorkerSlots)
_slot_index: Optional[int] = None


class WorkerSlots:
    """Shared memory in which each pool worker says which chunk it is running, so that
    the driver can name the chunk of a worker that died."""

    def __init__(self, context: Any, n: int):
        self.array = context.Array("q", 2 * n)
        self.n = n

    def chunk_of(self, pid: int) -> Optional[int]:
        """The first item of the chunk worker *pid* was running, None if idle/unknown."""
        for i in range(self.n):
            if self.array[2 * i] == pid:
                value = self.array[2 * i + 1]
                return value - 1 if value else None
        return None

    def registered(self, pid: int) -> bool:
        """Whether the worker *pid* has taken a slot: False for one that died before it
        started."""
        return any(self.array[2 * i] == pid for i in range(self.n))


def _slot_mark(start: Optional[int]) -> None:
    if _slots is not None and _slot_index is not None:
        _slots[2 * _slot_index + 1] = 0 if start is None else start + 1


def init_worker(threads: int, slots: Any, parent: int) -> None:
    """Prepare a pool worker (see the module docstring)."""
    global _slots, _slot_index
    value = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = value
    try:  # libraries already loaded before the fork need to be told directly
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C
    _die_with_parent(parent)
    if slots is not None:
        with slots.get_lock():
            for i in range(len(slots) // 2):
                if slots[2 * i] == 0:
                    slots[2 * i] = os.getpid()
                    _slots, _slot_index = slots, i
                    break


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except Exception:  # pragma: no cover - no prctl: the watch below still works
            pass
    if os.getppid() != parent:  # the driver died before we got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wflp-parent-watch", daemon=True).start()


__all__ = ["ChunkResult", "ChunkTask", "Payload", "RunContext", "WorkerSlots", "current_run",
           "init_worker",
           "item_rng", "item_time_limit", "private_copy", "remember_payload", "run_chunk"]
