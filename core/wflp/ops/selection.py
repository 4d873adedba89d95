"""Global selection: keep the configurations a pure function of all their descriptors chooses.

Per-item operations see one configuration at a time; selectors such as CUR or
farthest-point sampling need every descriptor at once. :class:`GlobalSelector`
(made with :func:`global_selector`) is the core's one form for them. A run has
three passes:

1. **read**: one row of numbers per input configuration, taken by the selector's
   ``read(atoms, parameters)`` (a descriptor vector in ``Atoms.info``, an energy
   per atom ...). The engine runs it like any operation (in worker processes if
   asked); only the rows come back, so memory holds descriptors, never
   configurations;
2. **choose**: ``choose(rows, **parameters, rng=...)`` returns the positions of the
   configurations to keep. It must be a pure function of the rows, the parameters
   and the seed, so that serial and parallel runs choose the same;
3. **write**: the chosen configurations, in input order, by the existing
   ``select_by_index`` operation.

A file output has a record like every operation's, whose identity holds the
selector's name, version and code (``choose`` and ``read``), its parameters (and
seed, when it uses random numbers), the inputs' content fingerprint (and that of
``exclude``, see below), the layout and the format. A rerun whose record matches
returns at once, reading nothing; a different computation is a
``RecordMismatchError`` naming what changed, unless overwriting; the output's lock
is held throughout. Between choosing and completing the output, the chosen
positions wait in a private (0700) work folder ``.<output>.wflp-select/`` beside
it, with the write pass's own stage: a run interrupted after choosing resumes
without reading a descriptor again.

A ``choose`` parameter named ``exclude`` receives configurations chosen before (a
training set: file name(s), a ConfigSet or a list of Atoms); the form reads the
same rows from them and passes those rows (a 2-D array) instead, and the record
describes them by their content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..engine.info import reuse_mode
from ..engine.operation import Operation
from ..errors import (
    InputError,
    OperationError,
    OutputError,
    ParameterError,
    RecordError,
    WflpError,
)

log = logging.getLogger("wflp")

# the form's own version: part of every record it writes, so a change to how it reads,
# excludes or writes counts as a different computation
FORM_VERSION = "1"
WORK_SUFFIX = ".wflp-select"
SELECTION_FILE = "selection.json"

Reader = Callable[[Any, dict], Any]


class GlobalSelector(Operation):
    """An operation that keeps the configurations ``choose`` picks from all their rows.

    Call it like any operation: ``sel(inputs, outputs, *args, autopara_info=None,
    seed=None, **parameters)``; ``sel.indices(inputs, ...)`` returns the chosen
    positions without writing anything. See the module docstring for how it runs.

    choose: ``choose(rows, ...parameters..., rng=None) -> positions``; ``rows`` is a
        float array with one row per input configuration. A parameter named ``rng``
        receives ``numpy.random.default_rng(seed)`` (None without a seed).
    read: ``read(atoms, parameters) -> 1-D numbers``, the row of one configuration
        (``parameters`` are the bound parameters of choose). Raise an error saying
        what is missing: it names the configuration.
    check, describe, version, summary: as for :func:`wflp.operation`.
    """

    def __init__(self, choose: Callable, name: str, *, read: Reader, version: str = "1",
                 summary: str | None = None, check: Callable | None = None,
                 describe: Mapping[str, Callable] | None = None):
        if not callable(read):
            raise ParameterError(f"global selector {name!r}: read must be a function "
                                 f"read(atoms, parameters) -> row, got {read!r}")
        describe = dict(describe or {})
        super().__init__(choose, name, version=version, per="item", summary=summary,
                         check=check, describe=describe)
        self.read = read
        self._read_op = Operation(_read_chunk, f"{name} (reading rows)", version=FORM_VERSION,
                                  per="chunk")
        self.wants_exclude = "exclude" in self.signature.parameters
        if self.wants_exclude:
            self.describe.setdefault("exclude", describe_configurations)

    def __repr__(self) -> str:
        return f"<wflp global selector {self.name!r} v{self.version}>"

    def __reduce__(self):
        return (_rebuild_selector, (self.func, self.name, self.read, self.version, self.summary,
                                    self.check, self.describe))

    # -- entry points -------------------------------------------------------------------------
    def __call__(self, inputs: Any, outputs: Any, *args: Any, autopara_info: Any = None,
                 seed: int | None = None, **kwargs: Any) -> Any:
        from ..configset import OutputSpec
        from .basic import select_by_index

        inputs, info, params = self._prepare(inputs, args, kwargs, seed, autopara_info)
        if not isinstance(outputs, OutputSpec):
            raise ParameterError(
                f"operation {self.name!r}: outputs must be an OutputSpec (OutputSpec() for "
                f"memory, OutputSpec('out.xyz') for a file), got {type(outputs).__name__}")
        outputs.check_fits(inputs)
        try:
            if outputs.is_in_memory:
                chosen = self._choose(inputs, params, seed, info)
                return select_by_index(inputs, OutputSpec(), sorted(chosen), autopara_info=info)
            return _SelectionRun(self, inputs, outputs, params, seed, info).to_files()
        except _Pending:
            return None

    def indices(self, inputs: Any, *args: Any, autopara_info: Any = None,
                seed: int | None = None, **kwargs: Any) -> np.ndarray:
        """The positions (0-based, over all input groups) this selector keeps, in the order
        it chose them; nothing is written."""
        inputs, info, params = self._prepare(inputs, args, kwargs, seed, autopara_info)
        try:
            return np.asarray(self._choose(inputs, params, seed, info), dtype=int)
        except _Pending:
            raise OperationError(f"{self.name}: the rows are being computed by queued jobs "
                                 "that were not waited for; run again once they finished"
                                 ) from None

    # -- the passes -----------------------------------------------------------------------------
    def _prepare(self, inputs: Any, args: tuple, kwargs: dict, seed: Optional[int],
                 autopara_info: Any) -> tuple:
        from ..configset import ConfigSet
        from ..engine import AutoparaInfo

        if not isinstance(inputs, ConfigSet):
            inputs = ConfigSet(inputs)
        # every item must give its row: skipping one would shift the positions chosen
        info = dataclasses.replace((autopara_info or AutoparaInfo()).resolved(),
                                   skip_failed=False)
        params = self.validate(args, kwargs, seed)
        if self.wants_rng:
            params["seed"] = seed  # the chooser's random numbers decide the result
        if self.wants_exclude and params.get("exclude") is not None:
            params["exclude"] = as_configset(params["exclude"], f"{self.name}: exclude")
        return inputs, info, params

    def read_rows(self, inputs: Any, params: dict, info: Any, what: str = "inputs"
                  ) -> np.ndarray:
        """The rows of every configuration of *inputs*, as one float array (pass 1)."""
        from ..configset import OutputSpec

        rows = self._read_op(inputs, OutputSpec(), self.read, _plain(params), self.name,
                             autopara_info=info)
        if rows is None:  # queued jobs not waited for (RemoteInfo): a rerun collects them
            raise _Pending
        matrix = stack_rows(rows, self.name, what)
        log.info("%s: read %d rows of %d values from the %s", self.name, matrix.shape[0],
                 matrix.shape[1], what)
        return matrix

    def _choose(self, inputs: Any, params: dict, seed: Optional[int], info: Any) -> list[int]:
        rows = self.read_rows(inputs, params, info)
        kwargs = {k: v for k, v in params.items() if k != "seed"}
        if self.wants_exclude and kwargs.get("exclude") is not None:
            kwargs["exclude"] = self.read_rows(kwargs["exclude"], params, info,
                                               "configurations to exclude")
            if kwargs["exclude"].shape[1] != rows.shape[1] and len(kwargs["exclude"]):
                raise ParameterError(
                    f"{self.name}: the configurations to exclude have rows of "
                    f"{kwargs['exclude'].shape[1]} values, the inputs {rows.shape[1]}; they "
                    "must be described the same way (same descriptor parameters and species)")
        if self.wants_rng:
            kwargs["rng"] = np.random.default_rng(seed) if seed is not None else None
        with blas_threads(info.threads_per_worker):
            chosen = self.func(rows, **kwargs)
        return check_chosen(chosen, rows.shape[0], self.name)


class _Pending(Exception):
    """A pass was handed to queued jobs that are not waited for; a rerun goes on."""


def _rebuild_selector(func, name, read, version, summary, check, describe):
    return GlobalSelector(func, name, read=read, version=version, summary=summary, check=check,
                          describe=describe)


def global_selector(name: str | None = None, *, read: Reader, version: str = "1",
                    summary: str | None = None,
                    check: Callable[[dict, Optional[int]], Any] | None = None,
                    describe: Mapping[str, Callable] | None = None,
                    ) -> Callable[[Callable], GlobalSelector]:
    """Decorator: make ``choose(rows, ...)`` a :class:`GlobalSelector` reading rows with *read*.

    >>> import numpy as np
    >>> @global_selector("select_highest", read=lambda atoms, p: [atoms.info[p["key"]]])
    ... def select_highest(rows, n_select, key="energy"):
    ...     return list(np.argsort(-rows[:, 0], kind="stable")[:n_select])
    """

    def wrap(func: Callable) -> GlobalSelector:
        return GlobalSelector(func, name or func.__name__, read=read, version=version,
                              summary=summary, check=check, describe=describe)

    return wrap


# -- pass 1: reading rows ---------------------------------------------------------------------

def _read_chunk(items: list, read: Reader, params: dict, selector: str, index: list) -> list:
    out = []
    for item, position in zip(items, index):
        try:
            row = np.asarray(read(item, params), dtype=float)
        except WflpError:
            raise
        except (KeyError, ValueError, TypeError) as err:
            raise ParameterError(f"{selector}: configuration {position}: {err}") from err
        if row.ndim > 1:
            raise ParameterError(
                f"{selector}: configuration {position} gave a row of shape {row.shape}; a "
                "row must be one vector per configuration (average per-atom values first)")
        row = np.atleast_1d(row)
        if not np.all(np.isfinite(row)):
            raise ParameterError(f"{selector}: configuration {position} has values that are "
                                 "not finite (nan or inf) in its row")
        out.append(row)
    return out


def _plain(params: dict) -> dict:
    """Parameters as read() sees them: configurations to exclude are not sent to workers."""
    return {k: (None if k == "exclude" else v) for k, v in params.items()}


def stack_rows(rows: Any, selector: str, what: str = "inputs") -> np.ndarray:
    """One float array from the rows of a read pass (a ConfigSet of 1-D arrays)."""
    items = list(rows)
    if not items:
        return np.zeros((0, 0))
    width = items[0].shape[0]
    matrix = np.empty((len(items), width))
    for i, row in enumerate(items):
        if row.shape[0] != width:
            raise ParameterError(
                f"{selector}: configuration {i} of the {what} has {row.shape[0]} values, "
                f"configuration 0 has {width}: every row must have the same length (compute "
                "all descriptors with the same parameters and species)")
        matrix[i] = row
        items[i] = None  # let the row go as soon as it is copied
    return matrix


def check_chosen(chosen: Any, n_rows: int, selector: str) -> list[int]:
    """The positions a choose function returned, checked: whole numbers, in range, once each."""
    try:
        values = np.asarray(chosen).ravel()
    except Exception:  # noqa: BLE001 - any object that is not a sequence of numbers
        values = None
    if values is None or (values.size and not np.issubdtype(values.dtype, np.integer)):
        raise OperationError(
            f"{selector}: its choose function returned {chosen!r}; it must return positions "
            "(whole numbers) of the rows it keeps")
    out = [int(v) for v in values]
    bad = [v for v in out if v < 0 or v >= n_rows]
    if bad:
        raise OperationError(
            f"{selector}: its choose function returned position {bad[0]}, outside the "
            f"{n_rows} inputs")
    if len(set(out)) != len(out):
        raise OperationError(
            f"{selector}: its choose function returned a position more than once")
    return out


# -- configurations given as a parameter ------------------------------------------------------

def as_configset(value: Any, where: str) -> Any:
    """A ConfigSet from file name(s), a ConfigSet or a list of Atoms; ParameterError else."""
    from ase import Atoms

    from ..configset import ConfigSet

    if isinstance(value, ConfigSet):
        return value
    if isinstance(value, (str, os.PathLike)):
        return ConfigSet(value)
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (str, os.PathLike)) for v in value):
        return ConfigSet(list(value))
    if isinstance(value, (list, tuple)) and all(isinstance(v, Atoms) for v in value):
        return ConfigSet(list(value))
    raise ParameterError(
        f"{where} must be configurations: a file name (or a list of them), a ConfigSet or a "
        f"list of Atoms, got {type(value).__name__}")


def check_configurations(value: Any, where: str) -> None:
    """ParameterError unless *value* is None or configurations (see :func:`as_configset`)."""
    if value is not None:
        as_configset(value, where)


def describe_configurations(value: Any, describer: Any) -> Any:
    """How records describe configurations given as a parameter: by their content."""
    if value is None:
        return None
    from ..records import fingerprint_configset

    cs = as_configset(value, "exclude")
    fp = fingerprint_configset(cs)
    return {"configurations_sha256": fp.hexdigest(), "files": [str(f) for f in cs.files]}


# -- choosing in the caller's process ---------------------------------------------------------

@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Limit BLAS/OpenMP threads while choosing (a busy 2-core machine made an SVD 70x
    slower with 2 threads); without threadpoolctl, nothing is changed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=max(1, int(threads))):
        yield


# -- file outputs -----------------------------------------------------------------------------

class _SelectionRun:
    """One run of a global selector to files: lock, record, reuse, resume, commit."""

    def __init__(self, selector: GlobalSelector, inputs: Any, outputs: Any, params: dict,
                 seed: Optional[int], info: Any):
        self.selector, self.inputs, self.outputs = selector, inputs, outputs
        self.params, self.seed, self.info = params, seed, info
        self.label = selector.name

    def to_files(self) -> Any:
        from .. import __version__
        from ..records import (
            OutputStore,
            fingerprint_configset,
            host_info,
            now_iso,
            read_record,
            record_path,
        )

        outputs, label = self.outputs, self.label
        store = OutputStore(outputs.files, outputs.overwrite, outputs.if_locked, label,
                            reuse=reuse_mode(outputs, self.info))
        with store.lock():
            fingerprint = fingerprint_configset(self.inputs)
            record = self.record(fingerprint)
            work = WorkFolder(outputs.files[0], label)
            state = work.load(record, outputs.overwrite, outputs.files)
            if state is None and store.reusable(record):
                log.info("%s: reusing %s (its record matches)", label,
                         ", ".join(map(str, outputs.files)))
                return outputs.result_set()
            started = now_iso()
            if state is None:
                chosen = self.selector._choose(self.inputs, self.params, self.seed, self.info)
                work.save(record, chosen)
            else:
                chosen = state
                log.info("%s: resuming with the %d configurations chosen before", label,
                         len(chosen))
            written = self.write(sorted(chosen), work)
            changed = fingerprint.changed_files()
            if changed:
                work.remove()
                raise InputError(
                    f"input file(s) {', '.join(repr(str(p)) for p in changed)} changed while "
                    f"{label} was running, so the selection may mix old and new content; "
                    "nothing was written: rerun once the inputs are final")
            produced = {}
            for final, inner in zip(outputs.files, written):
                inner_record = read_record(record_path(inner))
                entry = inner_record.output_entry(inner) if inner_record else None
                if entry is None:  # pragma: no cover - select_by_index always records
                    raise OutputError(f"{label}: the selection written to {inner} has no "
                                      "record; rerun")
                produced[Path(os.path.abspath(final))] = (_beside(inner, final),
                                                          entry["configs"])
            record.run = {"wflp_version": __version__, "started": started,
                          "finished": now_iso(), "selected": len(chosen), **host_info()}
            try:
                store.commit(record, produced)
            except BaseException:
                for tmp, _ in produced.values():
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                raise
            work.remove()
        return outputs.result_set()

    def write(self, chosen: list[int], work: WorkFolder) -> list[Path]:
        """Pass 3: the chosen configurations into the work folder, by select_by_index."""
        from ..configset import OutputSpec
        from .basic import select_by_index

        files = work.output_files(self.outputs.files)
        inner = OutputSpec(files if len(files) > 1 else files[0], format=self.outputs.format,
                           write_kwargs=self.outputs.write_kwargs, overwrite=True)
        if select_by_index(self.inputs, inner, chosen, autopara_info=self.info) is None:
            raise _Pending  # queued jobs not waited for: the work folder keeps the choice
        return files

    def record(self, fingerprint: Any) -> Any:
        """The identity of this selection (see the module docstring) and who provides it."""
        from ..exec import executor_name
        from ..records import Describer, Record, provider_of
        from ..records.describe import log_opaque

        sel, outputs = self.selector, self.outputs
        describer = Describer()
        parameters: dict[str, Any] = {}
        for key, value in self.params.items():
            hook = sel.describe.get(key)
            parameters[key] = (hook(value, describer) if hook is not None
                               else describer.describe(value, f"parameters.{key}"))
        code = describer.callable(sel.func, "operation", declared=True)
        code["read"] = describer.callable(sel.read, "read")
        name = executor_name(self.info)
        providers: dict[str, Any] = {"operation": provider_of(sel.func.__module__),
                                     "executor": {"name": name}}
        log_opaque(sel.name, describer.opaque)
        return Record.of_operation(sel.name, sel.version, code, parameters, self.inputs,
                                   fingerprint, outputs, describer,
                                   engine={"global_selection": FORM_VERSION},
                                   providers=providers)


def _beside(inner: Path, final: Path) -> Path:
    """Move a finished file from the work folder to a temporary name beside *final* (the
    output store puts it in place, and removes such leftovers if a run is killed)."""
    final = Path(os.path.abspath(final))
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        os.replace(inner, tmp)
    except OSError as err:
        if err.errno != errno.EXDEV:
            from ..records import output_error

            raise output_error("move the selection to", final, err) from None
        shutil.copyfile(inner, tmp)  # another file system
    return tmp


class WorkFolder:
    """``.<output>.wflp-select/``: the chosen positions (with the record they were chosen
    for) and the write pass's outputs, until the final outputs are in place."""

    def __init__(self, first_output: Path, label: str):
        first = Path(os.path.abspath(first_output))
        self.folder = first.with_name(f".{first.name}{WORK_SUFFIX}")
        self.label = label

    def load(self, record: Any, overwrite: bool, outputs: list) -> Optional[list[int]]:
        """The positions chosen by an interrupted run of this same computation; None if
        there is none. An interrupted run of another computation is a RecordMismatchError
        (unless overwriting); a folder holding no choice yet is removed."""
        from ..records import Record, mismatch_error, read_json

        if not self.folder.exists() and not self.folder.is_symlink():
            return None
        if not self.folder.is_dir() or self.folder.is_symlink():
            self.remove()
            return None
        try:
            data = read_json(self.folder / SELECTION_FILE)
            old = (Record.from_json(data.get("record"), self.folder.parent,
                                    repr(str(self.folder / SELECTION_FILE)))
                   if isinstance(data, dict) else None)
            chosen = data.get("chosen") if isinstance(data, dict) else None
        except (RecordError, WflpError):
            old, chosen = None, None
        valid = old is not None and isinstance(chosen, list) and all(
            isinstance(v, int) for v in chosen)
        if old is not None and isinstance(chosen, list) and valid \
                and not old.differences(record):
            return list(chosen)
        if old is not None and valid and not overwrite:
            raise mismatch_error(f"the interrupted selection (work folder {str(self.folder)!r})"
                                 " of", old.differences(record), outputs)
        log.info("%s: removing %s, left by an interrupted run of %s", self.label, self.folder,
                 "another computation" if valid else "a selection that had not chosen yet")
        self.remove()
        return None

    def save(self, record: Any, chosen: list[int]) -> None:
        """Keep the positions *chosen* for *record*, so that an interrupted run does not
        choose again."""
        from ..records import output_error, write_json_atomic

        try:
            self.folder.mkdir(mode=0o700, parents=False, exist_ok=True)
            os.chmod(self.folder, 0o700)
            write_json_atomic(self.folder / SELECTION_FILE,
                              {"record": record.to_json(self.folder.parent),
                               "chosen": [int(v) for v in chosen]})
        except OSError as err:
            raise output_error("create the work folder", self.folder, err) from None

    def output_files(self, finals: list) -> list[Path]:
        """Where the write pass puts each output before it is moved into place."""
        return [self.folder / f"{i}-{Path(f).name}" for i, f in enumerate(finals)]

    def remove(self) -> None:
        """Remove the work folder (once the outputs are in place)."""
        if self.folder.is_dir() and not self.folder.is_symlink():
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(self.folder)


__all__ = ["FORM_VERSION", "GlobalSelector", "as_configset", "blas_threads", "check_chosen",
           "check_configurations", "describe_configurations", "global_selector", "stack_rows"]
