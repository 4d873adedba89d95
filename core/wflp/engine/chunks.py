"""Chunks: runs of consecutive items, the unit of work, of parallelism and of resume.

:func:`plan_chunks` cuts the inputs into :class:`ChunkTask` objects: never across
an output group (file), never into a chunk that a stage already holds, sized by
a :class:`ChunkSizer`, and starting only at multiples of the operation's block
size, so that state an operation keeps between the items of one block (a
calculator's neighbour list) is the same whichever process runs it.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Iterator
from typing import Any, Optional

from ase import Atoms

CHUNK_SECONDS = 2.0      # target work per adaptive chunk
FIRST_CHUNK = 2          # adaptive chunks start this small, until timings arrive
MAX_CHUNK = 1000


@dataclasses.dataclass
class ChunkTask:
    """One chunk of consecutive items and everything needed to run it anywhere."""

    payload: bytes            # cloudpickle of the operation's Payload (b"": in-process only)
    digest: str               # identifies the payload, so processes unpickle it once
    start: int                # global index of the first item
    locs: list
    items: list
    group: int                # output group (file) the chunk belongs to
    target: Any = None        # a stage ChunkTarget: write the results there, not back
    cwd: Optional[str] = None  # the caller's directory: workers run there too
    context: Any = None       # the RunContext of the run (see worker.current_run)

    # A task that travels to another process carries its items as one pickle of their
    # own: the receiving process unpickles them once into objects that are already its
    # private copies (no Atoms.copy per item, which cost a worker some 10 % of a 1-ms
    # calculation), and can unpickle pristine copies again if a per-chunk function that
    # changed them failed (see fresh_items).
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        blob = state.pop("_items_blob", None)
        state.pop("_handed_out", None)
        state["items"] = blob if blob is not None else pickle.dumps(
            self.items, protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __setstate__(self, state: dict) -> None:
        blob = state.pop("items")
        self.__dict__.update(state)
        self.items = pickle.loads(blob)
        self._items_blob = blob
        self._handed_out = False

    def fresh_items(self) -> Optional[list]:
        """Items this process may change freely, if it received them pickled: the
        unpickled ones the first time, pristine ones unpickled again after that. None
        for a task made in this process (its items are the caller's: copy them)."""
        blob = self.__dict__.get("_items_blob")
        if blob is None:
            return None
        if not self._handed_out:
            self._handed_out = True
            return self.items
        return pickle.loads(blob)

    @property
    def end(self) -> int:
        """One past the position of the chunk's last item."""
        return self.start + len(self.items)


@dataclasses.dataclass
class ChunkResult:
    """What running a chunk gave: results (or the chunk file they were written to)."""

    start: int
    locs: list
    results: Optional[list]   # per item: list of outputs; None when written to a chunk file
    n_outputs: int
    error: Optional[str] = None         # traceback text of an item that failed
    error_index: Optional[int] = None
    seconds: float = 0.0                # time spent running the chunk
    chunk_files: list = dataclasses.field(default_factory=list)  # written, or to adopt
    skipped: list = dataclasses.field(default_factory=list)  # [(index, reason)] skip_failed
    group: int = 0                      # output group of the chunk

    @property
    def end(self) -> int:
        """One past the position of the chunk's last item."""
        return self.start + len(self.locs)


class ChunkSizer:
    """Chooses chunk sizes: fixed if the user set one, else guided by measured item time."""

    def __init__(self, fixed: Optional[int], nproc: int, n_items: Optional[int]):
        self.fixed = fixed
        self.nproc = nproc
        self.n_items = n_items
        self.items_timed = 0
        self.seconds = 0.0

    def observe(self, n_items: int, seconds: float) -> None:
        """Count *n_items* finished in *seconds*, which guide the next sizes."""
        self.items_timed += n_items
        self.seconds += seconds

    def size(self, next_index: int) -> int:
        """The size of the chunk starting at *next_index*: the fixed size if set, else
        about CHUNK_SECONDS of measured work, smaller near the end so the processes finish
        together."""
        if self.fixed:
            return self.fixed
        limit = MAX_CHUNK
        if self.n_items is not None and self.nproc > 1:
            # shrink towards the end so the processes finish together
            remaining = max(1, self.n_items - next_index)
            limit = min(limit, -(-remaining // (4 * self.nproc)))
        if self.items_timed == 0:
            return max(1, min(limit, FIRST_CHUNK))
        per_item = self.seconds / self.items_timed
        wanted = int(CHUNK_SECONDS / per_item) if per_item > 0 else MAX_CHUNK
        return max(1, min(limit, wanted))


def plan_chunks(inputs: Any, group_of: Any, sizer: ChunkSizer, *, payload: bytes, digest: str,
                block: int = 1, done: list | None = None, target_for: Any = None,
                lazy_frames: bool = False, ship: bool = False, context: Any = None,
                counter: dict | None = None, start_index: int = 0) -> Iterator[ChunkTask]:
    """Cut *inputs* into chunk tasks.

    group_of(loc) -> output group of an item (None: one group). done: sorted,
    non-overlapping (start, end) ranges that are finished already and skipped.
    target_for(group, start, end) -> where a worker writes the chunk (None: results
    come back). lazy_frames: extxyz frames travel as FrameRefs, parsed by the worker.
    ship: items leave this process, so live calculators are replaced by their results.
    counter gets "n_items" (all items seen) and "skipped" (items already done).
    start_index: the global index of the first input (a queued job runs a slice).
    """
    from .worker import private_copy

    counter = counter if counter is not None else {}
    counter.setdefault("skipped", 0)
    done_iter = iter(done or [])
    next_done = next(done_iter, None)
    cwd = os.getcwd()
    buf_items: list = []
    buf_locs: list = []
    buf_start = 0
    buf_group = 0
    size = sizer.size(start_index)

    def flush() -> ChunkTask:
        end = buf_start + len(buf_items)
        target = target_for(buf_group, buf_start, end) if target_for is not None else None
        return ChunkTask(payload, digest, buf_start, list(buf_locs), list(buf_items), buf_group,
                         target, cwd, context)

    index = start_index - 1
    for index, (loc, item) in enumerate(inputs.iter_with_loc(lazy_frames=lazy_frames),
                                        start=start_index):
        if ship and isinstance(item, Atoms) and item.calc is not None:
            item = private_copy(item)
        group = group_of(loc) if group_of is not None else 0
        while next_done is not None and index >= next_done[1]:
            next_done = next(done_iter, None)
        skip = next_done is not None and next_done[0] <= index < next_done[1]
        full = len(buf_items) >= size and index % block == 0
        if buf_items and (skip or group != buf_group or full):
            yield flush()
            buf_items, buf_locs = [], []
        if skip:
            counter["skipped"] += 1
            continue
        if not buf_items:
            buf_start, buf_group = index, group
            size = sizer.size(index)
        buf_items.append(item)
        buf_locs.append(loc)
    if buf_items:
        yield flush()
    counter["n_items"] = index + 1 - start_index


__all__ = ["CHUNK_SECONDS", "ChunkResult", "ChunkSizer", "ChunkTask", "plan_chunks"]
