"""The driver: one run of an operation, from its inputs to its outputs.

It only connects the pieces that own each concern: the executor runs chunks
(wflp.exec), plan_chunks cuts the inputs (chunks.py), run_chunk runs them
(worker.py), the output store decides reuse and holds the lock
(records.store), the stage keeps finished chunks and assembles the output
(stage.py), and the record says what made it (records.record).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

import cloudpickle

from ..configset import ConfigSet, MemoryCollector, OutputSpec
from ..errors import InputError, JobsPending, NotPicklableError, OperationError, WflpError
from ..records import (
    Describer,
    OutputStore,
    Record,
    fingerprint_configset,
    host_info,
    now_iso,
    provider_of,
    sha256_bytes,
)
from ..records.describe import log_opaque
from .chunks import ChunkResult, ChunkSizer, ChunkTask, plan_chunks
from .executor import executor_name, resolve_executor
from .info import AutoparaInfo, reuse_mode
from .stage import Stage, write_chunk
from .worker import Payload, RunContext, remember_payload

log = logging.getLogger("wflp")


def run_operation(op: Any, inputs: ConfigSet, outputs: OutputSpec, args: tuple, kwargs: dict,
                  params: dict, seed: Optional[int], info: AutoparaInfo) -> Optional[ConfigSet]:
    """Run an operation whose parameters were validated (Operation.__call__ does that).

    Returns None when queued jobs were submitted without waiting for them
    (RemoteInfo(wait_for_results=False)): a rerun collects them.
    """
    run = _Run(op, inputs, outputs, args, kwargs, params, seed, info)
    try:
        return run.to_memory() if outputs.is_in_memory else run.to_files()
    except JobsPending as pending:
        log.warning("%s: %s", op.name, pending)
        return None


def _committed(store: OutputStore, record: Record) -> bool:
    """True if every output exists with a record of this computation that its bytes match.

    The commit writes the records last, each naming its output's sha256, so outputs that
    pass are complete results of this computation even if a kill stopped the run before
    it removed its stage; anything else (no record, another computation, edited bytes, a
    damaged record) is for the stage to resume."""
    try:
        return store.reusable(record)
    except WflpError:
        return False


class _Run:
    def __init__(self, op: Any, inputs: ConfigSet, outputs: OutputSpec, args: tuple,
                 kwargs: dict, params: dict, seed: Optional[int], info: AutoparaInfo):
        self.op, self.inputs, self.outputs, self.info = op, inputs, outputs, info
        self.args, self.kwargs, self.params, self.seed = args, kwargs, params, seed
        self.executor_name = executor_name(info)
        self.executor = resolve_executor(info)
        self.nproc = info.num_python_subprocesses or 1
        self.block = op.block_size(params)
        self.batches = self.executor.submits_batches
        fixed = self.executor.chunk_size(info)  # the executor decides its chunking
        n_known = inputs.known_length()
        if n_known is None and fixed is None and self.nproc > 1:
            # knowing the length lets the last chunks shrink so the processes finish together
            n_known = inputs.cheap_length()
        self.n_known = n_known
        if fixed and self.block > 1 and fixed % self.block:
            rounded = -(-fixed // self.block) * self.block
            log.warning("%s: tasks of %d inputs are made %d: chunks start only at multiples "
                        "of %d (the calculator is reset that often; see "
                        "wflp.calculators.reset_interval)", op.name, fixed, rounded,
                        self.block)
        self.sizer = ChunkSizer(fixed, self.nproc, n_known)
        self.run_id = secrets.token_hex(6)

    # -- the pieces ---------------------------------------------------------------------------
    def payload(self) -> tuple[bytes, str]:
        payload = Payload(self.op.func, self.op.per, tuple(self.args), dict(self.kwargs),
                          self.seed, self.op.wants_rng, self.op.wants_index,
                          self.info.skip_failed, self.info.initializer, self.op.name,
                          self.info.item_time_limit, self.op.wants_block, self.block)
        try:
            data = cloudpickle.dumps(payload)
        except Exception as err:
            if not self.executor.in_process:
                raise NotPicklableError(
                    f"operation {self.op.name!r}: its function or arguments cannot be sent to "
                    f"worker processes ({type(err).__name__}: {err}). Pass unpicklable "
                    "objects in constructor form instead, e.g. calculator=(TBLite, [], "
                    "{'method': 'GFN2-xTB'}), which builds the object once in each worker; or "
                    "run with num_python_subprocesses=1") from err
            digest = f"local-{id(payload)}-{time.monotonic_ns()}"  # from this process's cache
            remember_payload(digest, payload)
            return b"", digest
        return data, sha256_bytes(data)

    def tasks(self, payload: bytes, digest: str, counter: dict, stage: Optional[Stage] = None,
              done: Optional[list] = None) -> Iterator[ChunkTask]:
        shares = self.executor.shares_files
        context = RunContext(self.op.name, tuple(str(f.absolute()) for f in self.outputs.files),
                             str(stage.folder) if stage is not None else None, self.run_id)
        return plan_chunks(
            self.inputs, self.outputs.output_index if len(self.outputs.files) > 1 else None,
            self.sizer, payload=payload, digest=digest, block=self.block, done=done,
            target_for=stage.target if stage is not None and (shares or self.batches)
            else None,
            lazy_frames=shares and self.nproc > 1,
            ship=not self.executor.in_process, context=context,
            counter=counter)

    def drive(self, tasks: Iterator[ChunkTask], on_result: Callable[[ChunkResult], None],
              to_file: bool) -> None:
        bar = self._progress()
        results = self.executor.map_chunks(tasks, self.info)
        try:
            for res in results:
                self.sizer.observe(len(res.locs), res.seconds)
                for index, reason in res.skipped:
                    log.warning("%s: item %d failed and is skipped (skip_failed=True): %s",
                                self.op.name, index, reason)
                if res.error is not None:
                    raise _item_error(self.op.name, res, to_file)
                on_result(res)
                if bar is not None:
                    bar.update(len(res.locs))
        except KeyboardInterrupt:
            _interrupt(results)
            raise
        finally:
            if bar is not None:
                bar.close()

    def _progress(self) -> Any:
        if not self.info.show_progress():
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=self.n_known, desc=self.op.name, unit="item")

    # -- in memory ----------------------------------------------------------------------------
    def to_memory(self) -> ConfigSet:
        payload, digest = self.payload()
        collector = MemoryCollector(self.inputs)
        waiting: dict[int, ChunkResult] = {}
        next_start = 0

        def on_result(res: ChunkResult) -> None:  # results may arrive in any order
            nonlocal next_start
            waiting[res.start] = res
            while next_start in waiting:
                ready = waiting.pop(next_start)
                for loc, outs in zip(ready.locs, ready.results or ()):
                    collector.add(loc, outs)
                next_start = ready.end

        self.drive(self.tasks(payload, digest, {}), on_result, to_file=False)
        return collector.result_set()

    # -- to files -----------------------------------------------------------------------------
    def to_files(self) -> ConfigSet:
        outputs, label = self.outputs, self.op.name
        store = OutputStore(outputs.files, outputs.overwrite, outputs.if_locked, label,
                            reuse=reuse_mode(outputs, self.info))
        with store.lock():
            fingerprint = fingerprint_configset(self.inputs)
            record = self.record(fingerprint)
            Stage.remove_leftovers(outputs.files[0])
            # a stage means an earlier run was interrupted, possibly while putting the
            # outputs in place: resume it, unless the outputs under the final names are
            # complete and recorded (the kill came after the commit, before the stage went)
            stage_left = Stage.folder_for(outputs.files[0])
            leftover = stage_left.exists()
            if _committed(store, record) if leftover else store.reusable(record):
                log.info("%s: reusing %s (its record matches)", label,
                         ", ".join(map(str, outputs.files)))
                if leftover:
                    log.info("%s: removing the stage %s that an interrupted run left behind",
                             label, stage_left)
                    Stage(stage_left, secrets.token_hex(4), label).remove()
                return outputs.result_set()
            stage = Stage.open(outputs.files[0], record, outputs.files, outputs.overwrite, label)
            done = Stage.done_ranges(stage.finished())
            payload, digest = self.payload()
            counter: dict = {}
            started = now_iso()
            shares = self.executor.shares_files

            def on_result(res: ChunkResult) -> None:
                if res.results is not None:  # came back in memory: write its chunk here
                    write_chunk(stage.target(res.group, res.start, res.end), res.results,
                                label)
                elif res.chunk_files and not shares:
                    for path in res.chunk_files:  # written elsewhere (a queued job)
                        stage.adopt(path)

            try:
                self.drive(self.tasks(payload, digest, counter, stage, done), on_result,
                           to_file=True)
            except KeyboardInterrupt:
                log.warning("%s: interrupted; finished chunks are kept in %s: rerun to "
                            "resume", label, stage.folder)
                raise
            changed = fingerprint.changed_files()
            if changed:
                stage.remove()
                raise InputError(
                    f"input file(s) {', '.join(repr(str(p)) for p in changed)} changed while "
                    f"{label} was running, so the results may mix old and new content; "
                    "nothing was written: rerun once the inputs are final")
            assert outputs.format is not None  # an output to files always has one
            produced = stage.assemble(outputs.files, outputs.format, outputs.write_kwargs,
                                      counter.get("n_items", 0))
            from .. import __version__

            record.run = {"wflp_version": __version__, "started": started,
                          "finished": now_iso(), **host_info()}
            store.commit(record, produced)
            stage.remove()
        return outputs.result_set()

    def record(self, fingerprint: Any) -> Record:
        """What this run computes (its identity) and who provides it."""
        describer = Describer()
        parameters: dict[str, Any] = {}
        providers: dict[str, Any] = {"operation": provider_of(self.op.func.__module__)}
        for key, value in self.params.items():
            hook = self.op.describe.get(key)
            desc = (hook(value, describer) if hook is not None
                    else describer.describe(value, f"parameters.{key}"))
            parameters[key] = desc
        code = describer.callable(self.op.func, "operation", declared=True)
        providers["executor"] = {"name": self.executor_name,
                                 **provider_of(type(self.executor).__module__)}
        log_opaque(self.op.name, describer.opaque)
        return Record.of_operation(self.op.name, self.op.version, code, parameters,
                                   self.inputs, fingerprint, self.outputs, describer,
                                   engine={"block": self.block}, providers=providers)


def _interrupt(results: Any) -> None:
    """Hand a Ctrl-C that arrived here, between two results, to the executor's generator
    as if it had arrived while the executor waited, so that it stops its workers at once.
    Merely closed, the generator would finish its running chunks first, and a stuck one
    never finishes."""
    throw = getattr(results, "throw", None)
    if throw is None:
        return
    try:
        throw(KeyboardInterrupt())
    except (KeyboardInterrupt, StopIteration):
        pass
    except Exception as err:  # noqa: BLE001 - the Ctrl-C goes on whatever the executor says
        log.debug("the executor's answer to the interrupt: %s: %s", type(err).__name__, err)
    with contextlib.suppress(Exception):
        results.close()


def _item_error(name: str, res: ChunkResult, to_file: bool) -> OperationError:
    text = res.error or ""
    last = text.strip().splitlines()[-1] if text.strip() else "?"
    kept = ("chunks finished before it are kept (rerun to resume), or " if to_file else "")
    err = OperationError(
        f"operation {name!r} failed on item {res.error_index}: {last}; {kept}pass "
        "AutoparaInfo(skip_failed=True) to drop failing items")
    err.worker_traceback = res.error
    if hasattr(err, "add_note"):
        err.add_note("Traceback in the process that ran the item:\n" + text)
    return err


__all__ = ["run_operation"]
