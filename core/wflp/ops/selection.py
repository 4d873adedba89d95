"""Global selection: keep the configurations a pure function of all their descriptors chooses.

Per-item operations see one configuration at a time; selectors such as CUR or
farthest-point sampling need every descriptor at once. :class:`GlobalSelector`
(made with :func:`global_selector`) is the core's one form for them. A run has
three passes:

1. **read**: one row of numbers per input configuration, taken by the selector's
   ``read(atoms, parameters)`` (a descriptor vector in ``Atoms.info``, an energy
   per atom ...). The engine runs it like any operation (in worker processes if
   asked); only the rows come back, so memory holds descriptors, never
   configurations. A reader marked :func:`info_vector_reader` (``read_vector``, the
   descriptor of CUR and FPS) is not run at all when every input is a plain
   extended-XYZ file: the rows come from the files' comment lines
   (:mod:`wflp.io.extxyz_rows`, some 10x faster than building the frames), or, where
   that cannot be done with certainty, from the reader as above;
2. **choose**: ``choose(rows, **parameters, rng=...)`` returns the positions of the
   configurations to keep. It must be a pure function of the rows, the parameters
   and the seed, so that serial and parallel runs choose the same;
3. **write**: the chosen configurations, in input order, by the existing
   ``select_by_index`` operation, over the inputs with every configuration not chosen
   replaced by None (:class:`ChosenOnly`), so that only chosen frames are parsed.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..configset import ConfigSet, FileGroup
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
from ..io.extxyz import read_frame_refs
from ..io.extxyz_rows import chosen_frame_refs

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

        matrix = rows_from_comment_lines(inputs, self.read, params, info)
        if matrix is not None:
            log.info("%s: read %d rows of %d values from the comment lines of the %s",
                     self.name, matrix.shape[0], matrix.shape[1], what)
            return matrix
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

INFO_VECTOR_ATTRIBUTE = "__wflp_info_vector__"


def info_vector_reader(param: str = "key") -> Callable[[Reader], Reader]:
    """Decorator for a reader that returns ``np.asarray(atoms.info[params[param]],
    dtype=float)``, and raises for a configuration without that entry.

    A selector with such a reader takes its rows from the comment lines of plain
    extended-XYZ input files (:func:`wflp.io.extxyz_rows.read_info_vectors`) instead of
    building every configuration; whatever that cannot read with certainty is read with
    the reader, as before.
    """

    def mark(read: Reader) -> Reader:
        setattr(read, INFO_VECTOR_ATTRIBUTE, param)
        return read

    return mark


def _plain_extxyz_groups(node: Any) -> Optional[list]:
    """The FileGroups of a ConfigSet tree if it holds nothing else and each is a whole
    extended-XYZ file read without options; else None."""
    from ..configset import FileGroup

    if isinstance(node, FileGroup):
        plain = node.format == "extxyz" and node.index == ":" and not node.read_kwargs
        return [node] if plain else None
    if not isinstance(node, list):
        return None
    groups: list = []
    for child in node:
        found = _plain_extxyz_groups(child)
        if found is None:
            return None
        groups.extend(found)
    return groups


def rows_from_comment_lines(inputs: Any, read: Reader, params: dict, info: Any = None
                            ) -> Optional[np.ndarray]:
    """The rows of *inputs* read from extended-XYZ comment lines, when *read* is an
    :func:`info_vector_reader` and every input is a plain extended-XYZ file whose frames
    all carry the entry in a form read with certainty; None otherwise (read as before,
    which also gives the errors it always gave).

    With several local processes (*info*, an AutoparaInfo), each reads a share of every
    file (see :func:`wflp.io.extxyz_rows.read_info_share`).
    """
    from ..io.extxyz_rows import merge_shares, read_info_share

    param = getattr(read, INFO_VECTOR_ATTRIBUTE, None)
    key = params.get(param) if param is not None else None
    if not isinstance(key, str):
        return None
    groups = _plain_extxyz_groups(inputs.tree)
    if not groups:
        return None
    shares = _local_processes(info)
    tasks = [(str(group.path), key, share, shares) for group in groups
             for share in range(shares)]
    if shares == 1:
        parts = [read_info_share(*task) for task in tasks]
    else:
        from ..configset import OutputSpec

        try:
            done = _READ_SHARES(ConfigSet.from_items(tasks), OutputSpec(), autopara_info=info)
        except WflpError:  # cannot happen (a share answers None instead): read as before
            log.debug("reading rows from comment lines failed", exc_info=True)
            return None
        if done is None:
            return None
        parts = done.to_list()
    blocks: list[np.ndarray] = []
    for i in range(len(groups)):
        block = merge_shares(parts[i * shares:(i + 1) * shares])
        if block is None or (blocks and block.shape[1] != blocks[0].shape[1]):
            return None
        blocks.append(block)
    return blocks[0] if len(blocks) == 1 else np.vstack(blocks)


def _local_processes(info: Any) -> int:
    """How many processes read shares of the files: those of the local pool, else 1 (queued
    jobs or other executors' workers may not see the files as this process does, and
    would gain little on a read this cheap)."""
    from ..engine.executor import executor_name

    if info is None or executor_name(info) != "pool":
        return 1
    return max(1, int(info.num_python_subprocesses or 1))


def _read_share_chunk(tasks: list) -> list:
    from ..io.extxyz_rows import read_info_share

    return [(read_info_share(*task),) for task in tasks]


_READ_SHARES = Operation(_read_share_chunk, "reading rows from comment lines",
                         version=FORM_VERSION, per="chunk")


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
        inputs = ChosenOnly(self.inputs, chosen)
        if select_by_index(inputs, inner, chosen, autopara_info=self.info) is None:
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


class ChosenOnly(ConfigSet):
    """The inputs of the write pass, with every item that is not chosen replaced by None.

    select_by_index drops those anyway; this way the frames of an extended-XYZ file that
    are not chosen are only framed, never parsed (nor sent to a worker). The tree is the
    inputs' own, so the write pass has the same fingerprint, record and chunks as before,
    and the chosen frames arrive as they always did: parsed here, or as FrameRefs that the
    worker parses.
    """

    def __init__(self, inputs: ConfigSet, chosen: Iterable[int]):
        self._root = inputs.tree
        self._chosen = frozenset(int(i) for i in chosen)

    def iter_with_loc(self, lazy_frames: bool = False) -> Iterator[tuple[tuple[int, ...], Any]]:
        """(location, item) as for the inputs, with None for each item not chosen."""
        yield from self._walk(self._root, (), lazy_frames, [0])

    def _walk(self, node: Any, loc: tuple[int, ...], lazy_frames: bool,
              seen: list[int]) -> Iterator[tuple[tuple[int, ...], Any]]:
        """Like the ConfigSet's walk; seen[0] counts the items yielded so far."""
        chosen = self._chosen
        if isinstance(node, FileGroup):
            refs = node.frame_refs()  # None unless wflp's own extxyz reader reads the file
            framed = (chosen_frame_refs(node.path, seen[0], chosen) if refs is not None
                      else None)
            if framed is not None:  # plain frames: framed without keeping their lines
                count, wanted = framed
                seen[0] += count
                for i in range(count):
                    ref = wanted.get(i)
                    yield loc + (i,), (None if ref is None else ref if lazy_frames
                                       else read_frame_refs([ref])[0])
                return
            for i, item in enumerate(refs if refs is not None else node):
                if seen[0] not in chosen:
                    item = None
                elif refs is not None and not lazy_frames:
                    item = read_frame_refs([item])[0]
                seen[0] += 1
                yield loc + (i,), item
        elif isinstance(node, list):
            for i, child in enumerate(node):
                if isinstance(child, (list, FileGroup)):
                    yield from self._walk(child, loc + (i,), lazy_frames, seen)
                else:
                    yield loc + (i,), (child if seen[0] in chosen else None)
                    seen[0] += 1
        else:
            yield loc, (node if seen[0] in chosen else None)
            seen[0] += 1


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


__all__ = ["FORM_VERSION", "ChosenOnly", "GlobalSelector", "as_configset", "blas_threads",
           "check_chosen", "check_configurations", "describe_configurations", "global_selector",
           "info_vector_reader", "rows_from_comment_lines", "stack_rows"]
