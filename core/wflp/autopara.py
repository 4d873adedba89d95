"""The parallel engine: any per-item or per-chunk function becomes a chunked operation.

``@operation`` turns ``f(item, ...) -> Atoms | None | list`` (or, with
``per="chunk"``, ``f(items, ...) -> list``) into
``op(inputs, outputs, *args, autopara_info=None, **kwargs) -> ConfigSet``.

Inputs are cut into chunks of consecutive items. An executor runs the chunks
(in process, in the reusable worker pool, or elsewhere through a plugin) and
hands results back in input order. For a file-backed output every finished
chunk is written at once to a private stage directory beside the output, so
that an interrupted run resumes with only the missing chunks; the final files
are assembled from the chunks and renamed into place only when complete,
together with their record (see records.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import logging
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import cloudpickle
import numpy as np
from ase import Atoms

from . import records
from .configset import (
    EXTXYZ_FORMATS,
    ConfigSet,
    FrameRef,
    OutputSpec,
    count_extxyz_frames,
    iter_extxyz,
    read_frame_refs,
)
from .errors import (
    NotPicklableError,
    OperationError,
    OutputError,
    ParameterError,
    WflpError,
)
from .extxyz import frame_texts

log = logging.getLogger("wflp")

ENV_NUM_PROCESSES = "WFLP_NUM_PYTHON_SUBPROCESSES"
ENV_PROGRESS = "WFLP_PROGRESS"
CHUNK_SECONDS = 2.0      # target work per adaptive chunk
FIRST_CHUNK = 2          # adaptive chunks start this small, until timings arrive
MAX_CHUNK = 1000
STAGE_SUFFIX = ".wflp-partial"
# a finished chunk: c-<output group>-<first item>-<end item>-<sha256 prefix of its bytes>.xyz
_CHUNK_RE = re.compile(r"^c-(\d{6})-(\d{12})-(\d{12})-([0-9a-f]{16})\.xyz$")


# -- configuration ------------------------------------------------------------------------

@dataclasses.dataclass
class AutoparaInfo:
    """How an operation is parallelized; none of it changes the results.

    num_python_subprocesses: worker processes (default: $WFLP_NUM_PYTHON_SUBPROCESSES,
        else 1, i.e. serial in this process).
    num_inputs_per_python_subprocess: items per chunk. Default: adaptive, chunks
        of about CHUNK_SECONDS of work each (measured as results arrive), never more
        than a quarter of a process's share of what remains, so the processes finish
        together. A chunk is also the unit of resume.
    skip_failed: an item whose function raises is logged and dropped instead of
        stopping the operation.
    initializer: (callable, args) or a callable, run once in each process that
        runs chunks of this operation, before its first chunk.
    threads_per_worker: BLAS/OpenMP threads in each worker process (default 1).
    progress: show a tqdm bar (default: when stderr is a terminal and
        $WFLP_PROGRESS is not 0).
    executor: name of a registered executor (default: "serial" or "pool").
    remote_info: where to run as queued jobs; consumed by remote executors.
    """

    num_python_subprocesses: Optional[int] = None
    num_inputs_per_python_subprocess: Optional[int] = None
    skip_failed: bool = False
    initializer: Any = None
    threads_per_worker: int = 1
    progress: Optional[bool] = None
    executor: Optional[str] = None
    remote_info: Any = None

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
        return dataclasses.replace(self, num_python_subprocesses=nproc)

    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        if os.environ.get(ENV_PROGRESS, "").strip() in ("0", "false", "no", "off"):
            return False
        return sys.stderr.isatty()


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"AutoparaInfo.{name} must be a whole number >= 1, got {value!r}")


class ChunkSizer:
    """Chooses chunk sizes: fixed if the user set one, else guided by measured item time."""

    def __init__(self, info: AutoparaInfo, n_items: int | None):
        self.fixed = info.num_inputs_per_python_subprocess
        self.nproc = info.num_python_subprocesses or 1
        self.n_items = n_items
        self.items_timed = 0
        self.seconds = 0.0

    def observe(self, n_items: int, seconds: float) -> None:
        self.items_timed += n_items
        self.seconds += seconds

    def size(self, next_index: int) -> int:
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


# -- chunks and what runs them --------------------------------------------------------------

@dataclasses.dataclass
class ChunkTask:
    """One chunk of consecutive items and everything needed to run it anywhere."""

    payload: bytes            # cloudpickle of _Payload
    digest: str               # identifies the payload, so processes unpickle it once
    start: int                # global index of the first item
    locs: list
    items: list
    group: int                # output group (file) the chunk belongs to
    stage_file: Optional[str] = None   # write results to <stage_file>-<digest>.xyz, not back
    cwd: Optional[str] = None          # the caller's directory: workers run there too


@dataclasses.dataclass
class ChunkResult:
    start: int
    locs: list
    results: Optional[list]   # per item: list of outputs; None when written to stage_file
    n_outputs: int
    error: Optional[str] = None         # traceback text of an item that failed
    error_index: Optional[int] = None
    seconds: float = 0.0                # time spent running the chunk


@dataclasses.dataclass
class _Payload:
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


_payload_cache: dict[str, _Payload] = {}
_initialized: set[str] = set()


def _load_payload(task: ChunkTask) -> _Payload:
    payload = _payload_cache.get(task.digest)
    if payload is None:
        payload = cloudpickle.loads(task.payload)
        if len(_payload_cache) > 16:
            _payload_cache.clear()
        _payload_cache[task.digest] = payload
    init = payload.initializer
    if init is not None:
        key = records.sha256_bytes(cloudpickle.dumps(init))
        if key not in _initialized:
            func, args = (init, ()) if callable(init) else (init[0], tuple(init[1]))
            func(*args)
            _initialized.add(key)
    return payload


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of item *index*: independent of chunking and process count."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))


def _as_outputs(result: Any) -> list:
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def _private_copy(item: Any) -> Any:
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


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Run one chunk; in the worker pool this is the function each worker executes."""
    if task.cwd is not None and task.cwd != os.getcwd():
        os.chdir(task.cwd)  # a reused worker follows its caller, as a serial run would
    payload = _load_payload(task)
    t0 = time.perf_counter()
    # frames read here from FrameRefs are fresh: only the others need a private copy
    items = [x if isinstance(r, FrameRef) else _private_copy(x)
             for r, x in zip(task.items, read_frame_refs(task.items))]
    n = len(items)
    rngs = ([item_rng(payload.seed, task.start + i) for i in range(n)]
            if payload.wants_rng and payload.seed is not None else None)
    kwargs = dict(payload.kwargs)
    results: list[list] = []
    if payload.per == "chunk":
        if payload.wants_rng:
            kwargs["rng"] = rngs
        if payload.wants_index:
            kwargs["index"] = list(range(task.start, task.start + n))
        try:
            out = payload.func(items, *payload.args, **kwargs)
            out = list(out)
            if len(out) != n:
                raise OperationError(
                    f"operation {payload.op_name!r}: its chunk function returned {len(out)} "
                    f"results for {n} items; a per-chunk function must return one entry "
                    "(Atoms, None or a list) per item"
                )
            results = [_as_outputs(r) for r in out]
        except Exception:
            return ChunkResult(task.start, task.locs, None, 0,
                               error=traceback.format_exc(), error_index=task.start)
    else:
        for i, item in enumerate(items):
            if payload.wants_rng:
                kwargs["rng"] = rngs[i] if rngs is not None else None
            if payload.wants_index:
                kwargs["index"] = task.start + i
            try:
                results.append(_as_outputs(payload.func(item, *payload.args, **kwargs)))
            except Exception:
                if payload.skip_failed:
                    log.warning("operation %r: item %d failed and is skipped "
                                "(skip_failed=True):\n%s", payload.op_name, task.start + i,
                                traceback.format_exc())
                    results.append([])
                else:
                    return ChunkResult(task.start, task.locs, None, 0,
                                       error=traceback.format_exc(),
                                       error_index=task.start + i)
    n_out = sum(len(r) for r in results)
    if task.stage_file is None:
        return ChunkResult(task.start, task.locs, results, n_out,
                           seconds=time.perf_counter() - t0)
    _write_chunk_file(task.stage_file, results, payload.op_name)
    return ChunkResult(task.start, task.locs, None, n_out, seconds=time.perf_counter() - t0)


def _write_chunk_file(stem: str, results: list[list], op_name: str) -> None:
    """Write a chunk's frames to ``<stem>-<digest>.xyz``, named only once complete.

    The name carries a digest of the bytes, so a later run trusts the file only if its
    content is intact; that check replaces an fsync per chunk, which cost more than the
    rest of the bookkeeping (a kill -9 loses nothing that was written; an OS crash may,
    and the digest catches it).
    """
    frames = [at for outs in results for at in outs]
    for at in frames:
        if not isinstance(at, Atoms):
            raise OutputError(
                f"operation {op_name!r} returned a {type(at).__name__}, which cannot "
                "be written to a file; use an in-memory OutputSpec() or return Atoms"
            )
    directory, name = os.path.split(stem)
    tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    with open(tmp, "wb") as fd:
        for text in frame_texts(frames):  # ASE's bytes, at a third of ASE's cost
            data = text.encode()
            digest.update(data)
            fd.write(data)
    os.replace(tmp, f"{stem}-{digest.hexdigest()[:16]}.xyz")


# -- executors ------------------------------------------------------------------------------

class SerialExecutor:
    """Runs chunks one after another in this process."""

    name = "serial"

    def map_chunks(self, tasks: Iterator[ChunkTask], info: AutoparaInfo) -> Iterator[ChunkResult]:
        for task in tasks:
            yield run_chunk(task)


def _worker_init(threads: int) -> None:
    """Pin numerical libraries in a worker to *threads* threads each."""
    value = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = value
    try:  # libraries already loaded before the fork need to be told directly
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


class _Pool:
    """The one worker pool of this process, created lazily and reused by every operation.

    A concurrent.futures process pool, because it reports a worker that died (killed,
    out of memory, segfault) instead of waiting forever for its result.
    """

    def __init__(self):
        self._pool = None
        self._key: tuple | None = None
        self.pid: int | None = None

    def get(self, nproc: int, threads: int):
        key = (nproc, threads)
        if self._pool is not None and self._key == key and self.pid == os.getpid():
            return self._pool
        self.shutdown()
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        method = os.environ.get("WFLP_MP_START_METHOD") or (
            "fork" if sys.platform.startswith("linux") else "spawn")
        self._pool = ProcessPoolExecutor(nproc, mp_context=mp.get_context(method),
                                         initializer=_worker_init, initargs=(threads,))
        self._key = key
        self.pid = os.getpid()
        log.debug("started a pool of %d worker processes (%s)", nproc, method)
        return self._pool

    def worker_pids(self) -> set[int]:
        procs = getattr(self._pool, "_processes", None) or {}
        return set(procs)

    def shutdown(self) -> None:
        if self._pool is not None:
            if self.pid == os.getpid():
                for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                    proc.terminate()
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._key = None


worker_pool = _Pool()


def shutdown_pool() -> None:
    """Stop the reusable worker pool (it is started again when next needed)."""
    worker_pool.shutdown()


import atexit  # noqa: E402

atexit.register(shutdown_pool)


class PoolExecutor:
    """Runs chunks in the process's reusable pool of worker processes, results in order."""

    name = "pool"
    workers_read_local_files = True  # input frames go to workers as FrameRefs

    def map_chunks(self, tasks: Iterator[ChunkTask], info: AutoparaInfo) -> Iterator[ChunkResult]:
        from collections import deque
        from concurrent.futures.process import BrokenProcessPool

        nproc = info.num_python_subprocesses or 1
        pool = worker_pool.get(nproc, info.threads_per_worker)
        window = 2 * nproc  # bounded: the input is never read far ahead of the workers
        pending: deque = deque()
        try:
            for task in tasks:
                pending.append((task.start, pool.submit(run_chunk, task)))
                while len(pending) >= window:
                    yield pending.popleft()[1].result()
            while pending:
                yield pending.popleft()[1].result()
        except BrokenProcessPool:
            start = pending[0][0] if pending else "?"
            worker_pool.shutdown()
            raise OperationError(
                f"a worker process died while running the chunk starting at item {start} "
                "(killed, out of memory, or a crash in compiled code); chunks finished before "
                "are kept, so rerun to resume; if it recurs, run that item serially to see why"
            ) from None
        # on any other exception, chunks already running finish and persist (for resume)


def get_executor(info: AutoparaInfo):
    """The executor for this run: named in info, else serial or pool by process count."""
    name = info.executor
    if name is None:
        if info.remote_info is not None:
            raise ParameterError(
                "AutoparaInfo.remote_info is set but no executor was named; set "
                "AutoparaInfo.executor to a remote executor (see `wflp list-plugins --kind "
                "executors`)"
            )
        name = "pool" if (info.num_python_subprocesses or 1) > 1 else "serial"
    from .plugins import get_executor as lookup  # builtins ("serial", "pool") and plugins

    return lookup(name)


# -- operations -----------------------------------------------------------------------------

class Operation:
    """A function made into a chunked, parallel, resumable operation over a ConfigSet.

    Call it as ``op(inputs, outputs, *args, autopara_info=None, seed=None, **kwargs)``.
    """

    def __init__(self, func: Callable, name: str, version: str = "1", per: str = "item",
                 summary: str | None = None, check: Callable | None = None):
        if per not in ("item", "chunk"):
            raise ParameterError(f"operation per= must be 'item' or 'chunk', got {per!r}")
        self.func = func
        self.name = name
        self.version = str(version)
        self.per = per
        self.check = check
        self.summary = summary or (inspect.getdoc(func) or "").split("\n")[0]
        self._signature = inspect.signature(func)
        self.wants_rng = "rng" in self._signature.parameters
        self.wants_index = "index" in self._signature.parameters
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<wflp operation {self.name!r} v{self.version} ({self.per})>"

    def __reduce__(self):
        # pickled by reference to the module attribute when possible (cloudpickle does the rest)
        return (_rebuild_operation, (self.func, self.name, self.version, self.per, self.summary,
                                     self.check))

    # the parameters that define the result
    def bind_parameters(self, args: tuple, kwargs: dict) -> dict:
        params = list(self._signature.parameters.values())
        if not params:
            raise ParameterError(f"operation {self.name!r}: its function takes no item argument")
        reserved = [k for k in ("rng", "index") if k in kwargs]
        if reserved:
            raise ParameterError(
                f"operation {self.name!r}: {reserved[0]!r} is supplied by wflp for each item; "
                "do not pass it (use seed= for reproducible randomness)"
            )
        filled = {k: None for k in ("rng", "index") if k in self._signature.parameters}
        try:
            bound = self._signature.bind(None, *args, **kwargs, **filled)
        except TypeError as err:
            raise ParameterError(
                f"operation {self.name!r}: {err}; its parameters are "
                f"{self.name}(inputs, outputs{_sig_tail(self._signature)})"
            ) from None
        bound.apply_defaults()
        out = dict(bound.arguments)
        out.pop(params[0].name)
        out.pop("rng", None)
        out.pop("index", None)
        return out

    def __call__(self, inputs: Any, outputs: OutputSpec, *args: Any,
                 autopara_info: AutoparaInfo | None = None, seed: int | None = None,
                 **kwargs: Any) -> ConfigSet:
        if not isinstance(inputs, ConfigSet):
            inputs = ConfigSet(inputs)
        if not isinstance(outputs, OutputSpec):
            raise ParameterError(
                f"operation {self.name!r}: outputs must be an OutputSpec (OutputSpec() for "
                f"memory, OutputSpec('out.xyz') for a file), got {type(outputs).__name__}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ParameterError(f"operation {self.name!r}: seed must be an int >= 0, got {seed!r}")
        info = (autopara_info or AutoparaInfo()).resolved()
        outputs.check_fits(inputs)
        params = self.bind_parameters(args, kwargs)
        if self.check is not None:
            self.check(params, seed)  # raises ParameterError before anything runs
        if self.wants_rng:
            params["seed"] = seed
        run = _Run(self, inputs, outputs, args, kwargs, seed, info, params)
        return run.execute()


def _rebuild_operation(func, name, version, per, summary, check=None):
    return Operation(func, name, version, per, summary, check)


def _sig_tail(sig: inspect.Signature) -> str:
    parts = [str(p) for p in list(sig.parameters.values())[1:] if p.name not in ("rng", "index")]
    return (", " + ", ".join(parts)) if parts else ""


def operation(name: str | None = None, *, version: str = "1", per: str = "item",
              summary: str | None = None,
              check: Callable[[dict, Optional[int]], Any] | None = None,
              ) -> Callable[[Callable], Operation]:
    """Decorator: make a per-item (or per-chunk) function into an Operation.

    >>> @operation("scale_cell", version="1")
    ... def scale_cell(atoms, factor):
    ...     atoms.set_cell(atoms.cell * factor, scale_atoms=True)
    ...     return atoms

    Bump *version* whenever a change to the function changes its results: stored
    outputs made by the old version are then not reused. *check*, if given, is
    called as check(parameters, seed) in the caller before any item runs, so a bad
    value raises its own ParameterError at once instead of failing in every item.
    """

    def wrap(func: Callable) -> Operation:
        return Operation(func, name or func.__name__, version=version, per=per, summary=summary,
                         check=check)

    return wrap


# -- one run of an operation ----------------------------------------------------------------

class _Run:
    def __init__(self, op: Operation, inputs: ConfigSet, outputs: OutputSpec, args, kwargs,
                 seed, info: AutoparaInfo, params: dict):
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
        self.args = args
        self.kwargs = kwargs
        self.seed = seed
        self.info = info
        self.params = params
        self.executor = get_executor(info)
        self.n_known = inputs.known_length()
        if self.n_known is None and info.num_inputs_per_python_subprocess is None \
                and (info.num_python_subprocesses or 1) > 1:
            # knowing the length lets the last chunks shrink so the processes finish together
            self.n_known = inputs.cheap_length()
        self.sizer = ChunkSizer(info, self.n_known)

    # payload ---------------------------------------------------------------------------
    def _payload(self) -> tuple[bytes, str]:
        payload = _Payload(self.op.func, self.op.per, tuple(self.args), dict(self.kwargs),
                           self.seed, self.op.wants_rng, self.op.wants_index,
                           self.info.skip_failed,
                           self.info.initializer, self.op.name)
        try:
            data = cloudpickle.dumps(payload)
        except Exception as err:
            if isinstance(self.executor, SerialExecutor):
                data = b""
            else:
                raise NotPicklableError(
                    f"operation {self.op.name!r}: its function or arguments cannot be sent to "
                    f"worker processes ({type(err).__name__}: {err}). Pass unpicklable "
                    "objects in constructor form instead, e.g. calculator=(TBLite, [], "
                    "{'method': 'GFN2-xTB'}), which builds the object once in each worker; or "
                    "run with num_python_subprocesses=1"
                ) from err
        if not data:
            # serial and unpicklable: run from the in-process cache only
            digest = f"local-{id(payload)}-{time.monotonic_ns()}"
            _payload_cache[digest] = payload
            return b"", digest
        return data, records.sha256_bytes(data)

    # chunking --------------------------------------------------------------------------
    def _tasks(self, payload: bytes, digest: str, stage: Path | None, done: list,
               counter: dict) -> Iterator[ChunkTask]:
        sizer = self.sizer
        size = sizer.size(0)
        cwd = os.getcwd()
        done_iter = iter(sorted(done))
        next_done = next(done_iter, None)
        per_file = len(self.outputs.files) > 1
        buf_items: list = []
        buf_locs: list = []
        buf_start = 0
        buf_group = 0

        def flush():
            end = buf_start + len(buf_items)
            stage_file = (str(stage / f"c-{buf_group:06d}-{buf_start:012d}-{end:012d}")
                          if stage is not None else None)
            return ChunkTask(payload, digest, buf_start, list(buf_locs), list(buf_items),
                             buf_group, stage_file, cwd)

        index = -1
        # executors whose workers see this machine's files parse input frames themselves
        lazy = bool(getattr(self.executor, "workers_read_local_files", False)) \
            and (self.info.num_python_subprocesses or 1) > 1
        # a live calculator may not pickle: items sent elsewhere carry only its results
        shipped = not isinstance(self.executor, SerialExecutor)
        for index, (loc, item) in enumerate(self.inputs.iter_with_loc(lazy_frames=lazy)):
            if shipped and isinstance(item, Atoms) and item.calc is not None:
                item = _private_copy(item)
            group = self.outputs.output_index(loc) if per_file else 0
            while next_done is not None and index >= next_done[1]:
                next_done = next(done_iter, None)
            skip = next_done is not None and next_done[0] <= index < next_done[1]
            if buf_items and (skip or group != buf_group or len(buf_items) >= size):
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
        counter["n_items"] = index + 1

    # execution -------------------------------------------------------------------------
    def execute(self) -> ConfigSet:
        if self.outputs.is_in_memory:
            return self._execute_memory()
        return self._execute_files()

    def _progress(self, total: int | None):
        if not self.info.show_progress():
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=self.op.name, unit="item")

    def _drive(self, tasks: Iterator[ChunkTask], on_result: Callable[[ChunkResult], None]) -> None:
        bar = self._progress(self.n_known)
        try:
            for res in self.executor.map_chunks(tasks, self.info):
                self.sizer.observe(len(res.locs), res.seconds)
                if res.error is not None:
                    last = res.error.strip().splitlines()[-1]
                    err = OperationError(
                        f"operation {self.op.name!r} failed on item {res.error_index}: {last}; "
                        "chunks finished before it are kept (rerun to resume), or pass "
                        "AutoparaInfo(skip_failed=True) to drop failing items"
                    )
                    err.worker_traceback = res.error
                    if hasattr(err, "add_note"):
                        err.add_note("Traceback in the process that ran the item:\n" + res.error)
                    raise err
                on_result(res)
                if bar is not None:
                    bar.update(len(res.locs))
        finally:
            if bar is not None:
                bar.close()

    def _execute_memory(self) -> ConfigSet:
        from .configset import MemoryCollector

        payload, digest = self._payload()
        collector = MemoryCollector(self.inputs)
        counter = {"skipped": 0, "n_items": 0}

        def on_result(res: ChunkResult) -> None:
            for loc, outs in zip(res.locs, res.results):
                collector.add(loc, outs)

        self._drive(self._tasks(payload, digest, None, [], counter), on_result)
        return collector.result_set()

    # file-backed: records, stage directory, resume, assembly ----------------------------
    def _stage_dir(self) -> Path:
        first = self.outputs.files[0].absolute()
        return first.with_name(f".{first.name}{STAGE_SUFFIX}")

    def _new_record(self) -> dict:
        from . import __version__

        inputs_sha, count = records.fingerprint_configset(self.inputs)
        params = records.canonical(self.params)
        provider = records.provider_of(self.op.func.__module__)
        code = None
        if provider.get("distribution") is None:
            code = records.describe_callable(self.op.func).get("source_sha256")
        return {
            "record_format": records.RECORD_FORMAT,
            "operation": self.op.name,
            "operation_version": self.op.version,
            "function": f"{self.op.func.__module__}.{self.op.func.__qualname__}",
            "provider": provider,
            "code_sha256": code,
            "wflp_version": __version__,
            "parameters": params,
            "parameters_sha256": records.parameters_digest(params),
            "inputs": {"files": [str(f) for f in self.inputs.files], "count": count},
            "inputs_sha256": inputs_sha,
            "output_format": self.outputs.format,
        }

    def _existing_outputs_match(self, record: dict) -> bool:
        """True if complete outputs made by this same computation exist; raise if stale."""
        files = self.outputs.files
        present = [f for f in files if f.exists()]
        if not present:
            return False
        overwrite = self.outputs.overwrite
        stored = [records.read_record(records.record_path(f)) for f in present]
        if any(s is None for s in stored):
            if overwrite:
                return False
            missing = [str(f) for f, s in zip(present, stored) if s is None]
            raise OutputError(
                f"output file(s) {missing} already exist but have no wflp record, so wflp "
                "cannot tell what made them; move them away, or pass overwrite=True "
                "(OutputSpec(..., overwrite=True)) to replace them"
            )
        if len(present) != len(files):
            if overwrite:
                return False
            raise OutputError(
                f"only some of the outputs exist ({[str(f) for f in present]} of "
                f"{[str(f) for f in files]}); remove them or pass overwrite=True"
            )
        for f, old in zip(present, stored):
            diff = records.differences(old, record)
            if diff:
                if overwrite:
                    log.info("replacing %s (overwrite=True): %s", f, sorted(diff))
                    return False
                raise records.mismatch_error("the existing output", diff, files)
            expected = {o["file"]: o["sha256"] for o in old.get("outputs", [])}
            if expected.get(f.name) != records.sha256_file(f):
                if overwrite:
                    return False
                raise OutputError(
                    f"the output {str(f)!r} was modified after wflp wrote it (its content no "
                    "longer matches its record); delete it (and its .record.json) or pass "
                    "overwrite=True to recompute"
                )
        return True

    def _prepare_stage(self, record: dict) -> tuple[Path, list]:
        stage = self._stage_dir()
        meta_path = stage / "record.json"
        if stage.exists():
            old = records.read_record(meta_path) if meta_path.exists() else None
            diff = records.differences(old, record) if old is not None else {}
            if diff and not self.outputs.overwrite:
                raise records.mismatch_error(
                    f"the partial output (stage directory {str(stage)!r}) of", diff,
                    self.outputs.files)
            if diff or old is None:  # another computation's chunks, or no record to trust
                shutil.rmtree(stage)
        if not stage.exists():
            stage.parent.mkdir(parents=True, exist_ok=True)
            stage.mkdir(mode=0o700)
            records.write_json_atomic(meta_path, record)
        os.chmod(stage, 0o700)
        done = []
        for entry in os.listdir(stage):
            m = _CHUNK_RE.match(entry)
            if m and records.sha256_file(stage / entry)[:16] == m.group(4):
                done.append((int(m.group(2)), int(m.group(3))))
            elif m:
                log.warning("%s: chunk file %s is damaged (its content does not match the "
                            "digest in its name); computing it again", self.op.name,
                            stage / entry)
                os.unlink(stage / entry)
            elif entry.startswith(".") and ".tmp-" in entry:
                os.unlink(stage / entry)  # a chunk cut off by an interruption
        if done:
            log.info("%s: resuming, %d finished chunks kept in %s", self.op.name, len(done), stage)
        return stage, done

    def _execute_files(self) -> ConfigSet:
        record = self._new_record()
        # a stage directory means an earlier run was interrupted, possibly while assembling
        # the final files: resume it rather than trusting what is under the final names
        if not self._stage_dir().exists() and self._existing_outputs_match(record):
            log.info("%s: reusing %s (its record matches)", self.op.name,
                     ", ".join(map(str, self.outputs.files)))
            return self.outputs.result_set()
        stage, done = self._prepare_stage(record)
        payload, digest = self._payload()
        counter = {"skipped": 0, "n_items": 0}
        started = records.now_iso()
        self._drive(self._tasks(payload, digest, stage, done, counter), lambda res: None)
        outputs = self._assemble(stage, counter["n_items"])
        record.update(started=started, finished=records.now_iso(), **records.host_info())
        record["outputs"] = outputs
        for f in self.outputs.files:
            records.write_json_atomic(records.record_path(f), record)
        shutil.rmtree(stage)
        return self.outputs.result_set()

    def _assemble(self, stage: Path, n_items: int) -> list[dict]:
        chunks = []
        for entry in os.listdir(stage):
            m = _CHUNK_RE.match(entry)
            if m:
                chunks.append((int(m.group(2)), int(m.group(3)), int(m.group(1)), stage / entry))
        chunks.sort()
        pos = 0
        for start, end, _g, _path in chunks:
            if start != pos:
                raise OutputError(
                    f"stage directory {str(stage)!r} is inconsistent (items {pos}..{start} "
                    "missing or overlapping); delete it and rerun"
                )
            pos = end
        if pos != n_items:
            raise OutputError(
                f"stage directory {str(stage)!r} covers {pos} of {n_items} items; the inputs "
                "changed during the run? delete it and rerun"
            )
        out = []
        for g, target in enumerate(self.outputs.files):
            parts = [p for (_s, _e, grp, p) in chunks if grp == g]
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                count = _concatenate(parts, tmp, self.outputs.format, self.outputs.write_kwargs)
                os.replace(tmp, target)
            except BaseException:
                if tmp.exists():
                    tmp.unlink()
                raise
            out.append({"file": target.name, "sha256": records.sha256_file(target),
                        "configs": count})
        return out


def _concatenate(parts: list[Path], target: Path, format: str, write_kwargs: dict) -> int:
    """Join chunk files into *target*; byte-for-byte for extxyz."""
    count = 0
    if format in EXTXYZ_FORMATS and not write_kwargs:
        with open(target, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        for p in parts:
            with open(p, "rb") as src:
                count += count_extxyz_frames(src)
        return count
    import ase.io

    def frames():
        nonlocal count
        for p in parts:
            for at in iter_extxyz(p):
                count += 1
                yield at

    try:
        ase.io.write(target, frames(), format=format, **write_kwargs)
    except WflpError:
        raise
    except Exception as err:
        raise OutputError(f"cannot write {str(target)!r} as {format}: {err}") from err
    return count


__all__ = ["AutoparaInfo", "Operation", "operation", "ChunkTask", "ChunkResult",
           "SerialExecutor", "PoolExecutor", "run_chunk", "item_rng", "shutdown_pool"]
