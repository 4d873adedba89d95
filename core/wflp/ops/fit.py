"""fit: a fitted model is an output with a record, like a file of configurations.

    model = fit(ConfigSet("train.xyz"), OutputModel("gap_model"), fitter="gap",
                params={"default_sigma": [0.005, 0.1, 0, 0], ...}, seed=1)
    calculate(ConfigSet("test.xyz"), OutputSpec("test_gap.xyz"), calculator=model.calculator)

The training set is written to an extended-XYZ file the fitter reads; the fitter
runs in a fresh, private run directory (a reused one let MACE load a stale
checkpoint); every file of the model (GAP's ``gap.xml`` and its
``gap.xml.sparseX.*`` companions) is moved into the model folder together with
``record.json``, and the folder is put in place only when complete. A rerun with a
matching record reuses the model without running the fitter; a different record is
a RecordMismatchError naming what changed; nothing half-done is ever resumed (an
interrupted fit starts again from a fresh run directory). With
``AutoparaInfo(remote_info=...)`` the fit runs as one queued job with its own
resources.

A fitter (registered with ``FitterSpec``) is ``fit(training, workdir, **params)``:
*training* is the path of the training file, *workdir* the empty run directory, and
``seed`` / ``cores`` are passed when it accepts them. It returns the main model file
(every file it leaves in *workdir* is kept), or a :class:`ModelFiles` naming exactly
the files to keep and extra calculator arguments.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import OutputError, ParameterError, RecordError, WflpError
from ..records.query import MODEL_RECORD  # the model folder's record

log = logging.getLogger("wflp")

TRAINING_FILE = "training.xyz"


class FitError(WflpError):
    """A fitter failed; the message carries the program's last output lines."""


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """What a fitter returns when it should say exactly what the model is.

    main: the file the calculator loads (relative to the run directory).
    files: every file of the model (None: every file left in the run directory).
    calculator_kwargs: further keyword arguments for the model's calculator.
    """

    main: str
    files: Optional[tuple] = None
    calculator_kwargs: dict = dataclasses.field(default_factory=dict)


class ModelFile(os.PathLike):
    """The path of a model's main file, described in records by the content of every
    file of the model (so an evaluation with a refitted model is never reused)."""

    def __init__(self, path: Union[str, os.PathLike], digests: dict):
        self.path = os.fspath(path)
        self.digests = dict(digests)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"ModelFile({self.path!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ModelFile) and (self.path, self.digests) == (
            other.path, other.digests)

    def __hash__(self) -> int:
        return hash(self.path)

    def __wflp_provenance__(self) -> dict:
        return {"model": os.path.basename(self.path), "sha256": self.digests}


@dataclasses.dataclass(frozen=True)
class OutputModel:
    """Where a fitted model goes: a folder holding every file of the model and its record.

    overwrite: replace a model made by a different computation. if_locked: "wait" for
    another run writing the same model, or "fail".
    """

    directory: Union[str, os.PathLike]
    overwrite: bool = False
    if_locked: str = "wait"

    def __post_init__(self):
        if not isinstance(self.directory, (str, os.PathLike)) or not os.fspath(self.directory):
            raise ParameterError(f"OutputModel needs a folder name, got {self.directory!r}")
        if self.if_locked not in ("wait", "fail"):
            raise ParameterError(f"OutputModel if_locked must be 'wait' or 'fail', got "
                                 f"{self.if_locked!r}")

    @property
    def path(self) -> Path:
        """The model folder, as an absolute path."""
        return Path(os.path.abspath(os.fspath(self.directory)))


@dataclasses.dataclass(frozen=True)
class FittedModel:
    """A fitted model in its folder; ``calculator`` is what calculate takes."""

    directory: Path
    fitter: str
    calculator_name: str
    main: str
    files: tuple
    digests: dict
    calculator_kwargs: dict
    model_argument: str

    @property
    def main_file(self) -> Path:
        """The path of the model's main file."""
        return self.directory / self.main

    @property
    def calculator(self) -> tuple:
        """``(name, [], kwargs)`` for ``calculate(..., calculator=model.calculator)``: the
        registered calculator of the fitter, given the model's main file (described in
        records by the content of all model files) under the fitter's keyword."""
        if not self.calculator_name:
            raise ParameterError(f"fitter {self.fitter!r} registers no calculator to evaluate "
                                 "its models")
        kwargs = {self.model_argument: ModelFile(self.main_file, self.digests),
                  **self.calculator_kwargs}
        return (self.calculator_name, [], kwargs)

    @classmethod
    def load(cls, directory: Union[str, os.PathLike]) -> FittedModel:
        """The model a fit wrote into *directory* (read from its record)."""
        from ..records import read_json

        folder = Path(os.path.abspath(os.fspath(directory)))
        data = read_json(folder / MODEL_RECORD)
        if data is None:
            raise OutputError(f"{str(folder)!r} holds no fitted model (no {MODEL_RECORD}); "
                              "give the folder an earlier fit() wrote")
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict):
            raise RecordError(f"{str(folder / MODEL_RECORD)!r} is not a wflp model record")
        return cls(folder, model["fitter"], model.get("calculator", ""), model["main"],
                   tuple(model["files"]), dict(model["digests"]),
                   dict(model.get("calculator_kwargs", {})), model["model_argument"])


# -- the fit --------------------------------------------------------------------------------

def fit(training: Any, output: OutputModel, fitter: str, params: Optional[dict] = None,
        seed: Optional[int] = None, autopara_info: Any = None) -> FittedModel:
    """Fit a model with the registered *fitter* to *training* (any ConfigSet input).

    params: the fitter's own parameters (checked against what it accepts before
    anything runs). seed: passed to fitters that take one, and part of the record.
    autopara_info: with remote_info, the fit runs as one queued job on that system
    (its resources: cores, memory, time); its num_python_subprocesses (or the job's
    num_cores) is given to fitters that take ``cores``.
    """
    from ..configset import ConfigSet
    from ..engine.info import AutoparaInfo, reuse_mode
    from ..plugins import get_fitter, get_plugin_manager
    from ..records import (
        Describer,
        OutputLock,
        Record,
        fingerprint_configset,
        host_info,
        now_iso,
        read_json,
        sha256_file,
    )
    from ..records.describe import log_opaque
    from ..records.record import inputs_entry

    if not isinstance(output, OutputModel):
        raise ParameterError(f"fit: output must be an OutputModel('folder'), got "
                             f"{type(output).__name__}")
    params = dict(params or {})
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ParameterError(f"fit: seed must be a whole number >= 0, got {seed!r}")
    spec = get_fitter(fitter)
    func = spec.load()
    _check_params(func, params, spec.name)
    info = (autopara_info or AutoparaInfo()).resolved()
    inputs = training if isinstance(training, ConfigSet) else ConfigSet(training)
    target = output.path
    if target.exists() and not target.is_dir():
        raise OutputError(f"fit: {str(target)!r} is a file; a model is a folder: choose "
                          "another name")
    owner = get_plugin_manager().provider("fitters", spec.name)
    describer = Describer()
    code = describer.callable(func, "fitter", declared=True)
    programs = getattr(func, "__wflp_provenance__", None)
    if callable(programs):  # the fitting program's version, found at run time: a fact
        describer.facts["programs"]["fitter.provenance"] = describer.describe(
            programs(), "fitter.provenance")
    record = Record(
        kind="fit", name=spec.name, version=str(spec.result_version),
        code=code,
        parameters={"params": describer.describe(params, "parameters.params"), "seed": seed},
        inputs={}, layout={"outputs": [str(target)], "split": "model folder"},
        output={"format": "model"},
        providers={"fitter": {"distribution": owner.distribution, "version": owner.version}},
        opaque=describer.opaque, facts=describer.facts)
    log_opaque(f"fit {spec.name}", describer.opaque)
    lock = OutputLock(target, output.if_locked, f"fit {spec.name}")
    lock.acquire()
    try:
        fingerprint = fingerprint_configset(inputs)
        record.inputs = inputs_entry(fingerprint)
        _remove_leftovers(target)
        existing = _existing(target, record, output.overwrite, read_json, sha256_file,
                             reuse_mode(output, info))
        if existing is not None:
            log.info("fit %s: reusing the model in %s (its record matches)", spec.name, target)
            return existing
        rundir = target.with_name(f".{target.name}.wflp-fit-{secrets.token_hex(4)}")
        rundir.mkdir(mode=0o700, parents=True)
        started = now_iso()
        try:
            written = _write_training(inputs, rundir / TRAINING_FILE)
            if written == 0:
                raise FitError(f"fit {spec.name}: the training set is empty")
            if fingerprint.changed_files():
                raise WflpError(f"fit {spec.name}: the training files changed while they were "
                                "read; rerun once they are final")
            if info.remote_info is not None:
                outcome, workdir = _fit_remotely(func, params, seed, info, rundir, spec.name)
            else:
                workdir = rundir / "fit"
                workdir.mkdir(mode=0o700)
                outcome = _call(func, rundir / TRAINING_FILE, workdir, params, seed,
                                info.num_python_subprocesses or 1)
            model_files = _model_files(outcome, workdir, spec.name)
        except BaseException:
            log.warning("fit %s: the run directory %s is kept for inspection", spec.name,
                        rundir)
            raise
        from .. import __version__

        record.run = {"wflp_version": __version__, "started": started, "finished": now_iso(),
                      **host_info()}
        fitted = _commit(target, rundir, workdir, model_files, record, spec, sha256_file)
        shutil.rmtree(rundir, ignore_errors=True)
        return fitted
    finally:
        lock.release()


def _check_params(func: Any, params: dict, name: str) -> None:
    from ..calculators import check_call

    for reserved in ("seed", "cores"):
        if reserved in params:
            raise ParameterError(f"fit {name}: {reserved!r} is given by fit() itself, not in "
                                 "params")
    check_call(func, (None, None), params, f"fit {name}", "the fitter",
               source="params")


def _call(func: Any, training: Path, workdir: Path, params: dict, seed: Optional[int],
          cores: int) -> Any:
    accepted = inspect.signature(func).parameters
    extra = {}
    if "seed" in accepted:
        extra["seed"] = seed
    if "cores" in accepted:
        extra["cores"] = cores
    return func(training, workdir, **params, **extra)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
TAIL_LINES = 8


def run_program(argv: Sequence[str], workdir: Union[str, os.PathLike], label: str, *,
                threads: int = 1, log: str = "fit", env: Optional[dict] = None,
                timeout: Optional[float] = None) -> Path:
    """Run a fitting program in *workdir* and return the path of its stdout file.

    stdout goes to ``<log>.out`` and stderr to ``<log>.err`` in *workdir*; OpenMP and BLAS
    threads are set to *threads* for the program alone (this process's environment is
    untouched), *env* adds variables. A missing program, a non-zero exit status or a
    run past *timeout* seconds is a :class:`FitError` quoting the last lines of both
    files; when interrupted (Ctrl-C), the program and its children are killed first.
    """
    import signal
    import subprocess

    from ..calculators.fileio import tail

    workdir = Path(workdir)
    argv = [os.fspath(a) for a in argv]
    variables = dict(os.environ)
    variables.update({name: str(max(1, int(threads))) for name in THREAD_VARIABLES})
    variables.update({str(k): str(v) for k, v in (env or {}).items()})
    out_path, err_path = workdir / f"{log}.out", workdir / f"{log}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=variables,
                                    start_new_session=True)
        except OSError as error:
            raise FitError(f"{label}: cannot run {argv[0]!r} ({error.strerror or error}); "
                           "install it or give its path") from error
        try:
            returncode = proc.wait(timeout=timeout)
        except BaseException as error:
            for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
                try:
                    kill()
                except OSError:
                    pass
            try:
                proc.wait(timeout=10)
            except Exception:  # pragma: no cover - a process that will not die
                pass
            if isinstance(error, subprocess.TimeoutExpired):
                raise FitError(f"{label}: {argv[0]} ran past the time limit of {timeout} s"
                               f"{_last_lines(tail(out_path, TAIL_LINES), tail(err_path))}"
                               ) from None
            raise
    if returncode != 0:
        raise FitError(f"{label}: {os.path.basename(argv[0])} exited with status {returncode}"
                       f"{_last_lines(tail(out_path, TAIL_LINES), tail(err_path, TAIL_LINES))}")
    return out_path


def _last_lines(stdout: list, stderr: list) -> str:
    def joined(lines: list) -> str:
        picked = [" ".join(x.split()) for x in lines if x.strip()]
        return " | ".join(x[:200] for x in picked)

    parts = [f"{name}: {joined(lines)}" for name, lines in (("stdout", stdout),
                                                              ("stderr", stderr)) if lines]
    return "; last lines of " + "; ".join(parts) if parts else " (it printed nothing)"


def _fit_in_job(func: Any, params: dict, seed: Optional[int], cores: int) -> Any:
    """What a queued fit job runs, in its job directory: the training file is there."""
    workdir = Path("fit")
    workdir.mkdir(mode=0o700, exist_ok=True)
    outcome = _call(func, Path(TRAINING_FILE).resolve(), workdir.resolve(), params, seed, cores)
    files = _model_files(outcome, workdir.resolve(), "remote")
    return {"main": files[0], "files": files[1],
            "calculator_kwargs": files[2]}


def _fit_remotely(func: Any, params: dict, seed: Optional[int], info: Any, rundir: Path,
                  name: str) -> tuple:
    from ..remote import manager, submit
    from ..remote.config import Resources

    remote = info.remote_info.checked()
    resources = Resources.from_dict(remote.resources, "RemoteInfo.resources")
    cores = info.num_python_subprocesses if (info.num_python_subprocesses or 1) > 1 \
        else resources.num_cores
    job = submit(_fit_in_job, args=(func, params, seed, cores), system=remote.system,
                 resources=remote.resources, job_name=remote.job_name or f"fit-{name}",
                 input_files=[rundir / TRAINING_FILE, *remote.input_files],
                 resubmit_failed=remote.resubmit_failed)
    described = job.result(timeout=remote.timeout)
    jobs = manager()
    row = jobs.store.get(job.id)
    workdir = rundir / "fit"
    workdir.mkdir(mode=0o700, exist_ok=True)
    for rel in described["files"]:
        local = jobs.fetch_file(row, f"fit/{rel}")
        dest = workdir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
    return ModelFiles(described["main"], tuple(described["files"]),
                      described["calculator_kwargs"]), workdir


def _write_training(inputs: Any, path: Path) -> int:
    from ase import Atoms

    from ..io.extxyz import frame_texts

    count = 0
    with open(path, "w") as fd:
        for item in inputs:
            if not isinstance(item, Atoms):
                raise ParameterError(f"fit: training items must be Atoms, got "
                                     f"{type(item).__name__}")
            for text in frame_texts([item]):
                fd.write(text)
            count += 1
    return count


def _model_files(outcome: Any, workdir: Path, name: str) -> tuple:
    """(main, files, calculator kwargs), files relative to *workdir*."""
    if isinstance(outcome, ModelFiles):
        main, files, kwargs = outcome.main, outcome.files, dict(outcome.calculator_kwargs)
    elif isinstance(outcome, (str, os.PathLike)):
        main, files, kwargs = os.fspath(outcome), None, {}
    else:
        raise FitError(f"fit {name}: the fitter returned {type(outcome).__name__}; it must "
                       "return the path of the model file, or a ModelFiles")
    main_path = Path(main) if os.path.isabs(main) else workdir / main
    if not main_path.is_file():
        raise FitError(f"fit {name}: the fitter says the model is {str(main_path)!r}, which "
                       "does not exist")
    main = os.path.relpath(main_path, workdir)
    if main.startswith(".."):
        raise FitError(f"fit {name}: the model file {str(main_path)!r} is outside the run "
                       f"directory {workdir}")
    if files is None:
        files = tuple(os.path.relpath(os.path.join(root, f), workdir)
                      for root, _dirs, names in os.walk(workdir) for f in names)
    files = tuple(sorted(set(files) | {main}))
    for rel in files:
        if not (workdir / rel).is_file():
            raise FitError(f"fit {name}: the model file {rel!r} is missing from {workdir}")
    return main, files, kwargs


def _commit(target: Path, rundir: Path, workdir: Path, model: tuple, record: Any, spec: Any,
            sha256_file: Any) -> FittedModel:
    from ..records import write_json

    main, files, kwargs = model
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    digests = {}
    for rel in files:
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(workdir / rel), dest)
        digests[rel] = sha256_file(dest)
    fitted = FittedModel(target, spec.name, spec.calculator, main, files, digests,
                         _plain(kwargs), spec.model_argument)
    record.outputs = [{"file": str(target / rel), "sha256": digests[rel]} for rel in files]
    data = record.to_json(target)
    data["model"] = {"fitter": spec.name, "calculator": spec.calculator, "main": main,
                     "files": list(files), "digests": digests,
                     "calculator_kwargs": fitted.calculator_kwargs,
                     "model_argument": spec.model_argument}
    write_json(staging / MODEL_RECORD, data)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return fitted


def _plain(kwargs: dict) -> dict:
    from ..records import canonical

    out = canonical(kwargs)
    if not isinstance(out, dict):  # pragma: no cover
        raise FitError("calculator_kwargs must be a dict of plain values")
    return out


def _existing(target: Path, record: Any, overwrite: bool, read_json: Any,
              sha256_file: Any, reuse: str = "identity") -> Optional[FittedModel]:
    from ..records import Record, mismatch_error
    from ..records.store import note_reuse

    if not target.exists():
        return None
    data = read_json(target / MODEL_RECORD) if (target / MODEL_RECORD).exists() else None
    if data is None:
        if overwrite or not any(target.iterdir()):
            return None
        raise OutputError(f"{str(target)!r} exists but holds no wflp model record, so what "
                          "made it is unknown; move it away, or pass "
                          "OutputModel(..., overwrite=True)")
    try:
        old = Record.from_json(data, target, repr(str(target / MODEL_RECORD)))
    except RecordError:
        if overwrite:
            return None
        raise
    diff = old.differences(record, strict=reuse == "strict")
    if diff:
        if overwrite:
            log.info("fit: replacing the model in %s (overwrite=True): %s", target,
                     ", ".join(sorted(diff)))
            return None
        raise mismatch_error("the existing model", diff, [target])
    for entry in old.outputs:
        path = Path(entry["file"])
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            if overwrite:
                return None
            raise OutputError(f"the model file {str(path)!r} is missing or was modified after "
                              "wflp wrote it; delete the model folder or pass "
                              "OutputModel(..., overwrite=True)")
    note_reuse(old, record, target, f"fit {record.name}", record_file=target / MODEL_RECORD,
               extra={"model": data.get("model")})
    return FittedModel.load(target)


def _remove_leftovers(target: Path) -> None:
    """Run directories and staging folders of fits that were killed (we hold the lock)."""
    parent = target.parent
    if not parent.is_dir():
        return
    for entry in os.listdir(parent):
        if entry.startswith((f".{target.name}.wflp-fit-", f".{target.name}.tmp-",
                             f".{target.name}.old-")):
            shutil.rmtree(parent / entry, ignore_errors=True)
            log.info("fit: removed %s, left by an interrupted fit", parent / entry)


__all__ = ["FitError", "FittedModel", "ModelFile", "ModelFiles", "OutputModel", "fit",
           "run_program"]
