"""FileCalculator: an ASE calculator that runs a code's program in a run directory.

It joins the pieces, each in its own module: what the code is (:mod:`.codespec`), where
each calculation runs and what is kept (:mod:`.rundir`), how the program runs
(:mod:`.process`, :mod:`.asecalc`), what went wrong (:mod:`.diagnosis`) and what records
describe it by (:mod:`.provenance`). A plugin declares ``spec = CodeSpec(...)`` and
writes :meth:`FileCalculator.make_calculator`; everything else has a default driven by
the spec. :class:`GenericFileCalculator` wraps any ASE calculator class that takes
``directory``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from ase.calculators.calculator import BaseCalculator, all_changes

from ..errors import ParameterError, WflpError
from . import diagnosis
from .asecalc import quiet, run_profile_template, run_with_ase
from .codespec import CodeSpec, is_gamma
from .diagnosis import CalculationError
from .process import (
    CannotRun,
    check_command,
    check_env,
    env_prefix,
    exit_status_of,
    run_program,
    with_env,
)
from .provenance import code_provenance, program_version
from .rundir import RunDirs, check_folder, check_keep

log = logging.getLogger("wflp")

# the spec's fields also readable as attributes of the class (calc.code, calc.output_file
# ...); a subclass that sets them as class attributes, the older way, gets a spec with them
MIRRORED = ("code", "default_command", "default_command_gamma", "main_outputs", "output_file",
            "stdout_file", "stderr_file", "needs_cell", "molecular_only",
            "converged_pattern", "not_converged_pattern", "error_patterns",
            "error_output_lines")


class _Attempt:
    """What one calculation has done so far (for the error if it fails)."""

    def __init__(self, rundir: Path, workdir: Path):
        self.rundir = rundir
        self.workdir = workdir
        self.returncode: Optional[int] = None
        self.calc: Any = None
        self.phase = "prepare"   # -> "run" -> "read", when wflp runs the program


def _mirror(target: Any, spec: CodeSpec) -> None:
    for name in MIRRORED:
        setattr(target, name, getattr(spec, name))
    target.implemented_properties = list(spec.properties)
    target.wflp_result_version = spec.result_version


class FileCalculator(BaseCalculator):
    """Base of calculators that run a program in a run directory (see the module docstring).

    Keyword arguments (all optional): ``command`` and ``command_gamma`` (the program, MPI
    launcher included, e.g. ``"mpirun -np 4 pw.x"``; split like a shell would, not run
    through one; defaults from ``WFLP_<CODE>_COMMAND`` and ``WFLP_<CODE>_COMMAND_GAMMA``),
    ``env`` (extra environment variables for the program, put on its command line with
    ``env``), ``keep`` (``"main"``, ``"all"``, ``"none"`` or glob patterns),
    ``rundir_root`` and ``scratch`` (where run directories go); the other keyword
    arguments are the code's own (ASE's constructor arguments), kept in ``parameters``.

    Override points, all optional but the first: :meth:`make_calculator`, :meth:`run`
    (default by ``spec.runner``), :meth:`scf_converged` and :meth:`diagnose` (default:
    ``spec``'s patterns), :meth:`input_files`, :meth:`version` (default:
    ``spec.version_pattern``).
    """

    spec: CodeSpec = CodeSpec()
    # mirrors of spec (see MIRRORED), for code that reads them
    code: str
    default_command: str
    default_command_gamma: str
    main_outputs: tuple[str, ...]
    output_file: str
    stdout_file: str
    stderr_file: str
    needs_cell: bool
    molecular_only: bool
    converged_pattern: Any
    not_converged_pattern: Any
    error_patterns: tuple[Any, ...]
    error_output_lines: int
    wflp_result_version: str

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # attributes set in the class body (the older way to declare a code, or a
        # wflp_result_version bump) override the spec's fields
        body = cls.__dict__
        declared = {name: body[name] for name in MIRRORED if name in body}
        if "implemented_properties" in body:
            declared["properties"] = tuple(body["implemented_properties"])
        if "wflp_result_version" in body:
            declared["result_version"] = str(body["wflp_result_version"])
        cls.spec = dataclasses.replace(cls.spec, **declared)
        _mirror(cls, cls.spec)

    def __init__(self, *, command: Optional[str] = None, command_gamma: Optional[str] = None,
                 env: Optional[dict[str, str]] = None, keep: Any = None,
                 rundir_root: Optional[str] = None, scratch: Optional[str] = None,
                 **parameters: Any):
        spec = self.spec
        spec.refuse_reserved(parameters)
        super().__init__(parameters=None)
        self.parameters = dict(parameters)
        keep = check_keep(keep, spec.code)
        self.command = check_command(command, spec.code, "COMMAND", spec.default_command,
                                     "command")
        self.command_gamma = check_command(command_gamma, spec.code, "COMMAND_GAMMA",
                                           spec.default_command_gamma or self.command,
                                           "command_gamma")
        self.env = check_env(env, spec.code)
        self.rundirs = RunDirs(spec.code, keep, check_folder(rundir_root, "rundir_root",
                                                              spec.code),
                               check_folder(scratch, "scratch", spec.code))
        self.wflp_rundir: Optional[str] = None
        self._attempt: Optional[_Attempt] = None

    def setting_folder(self, name: str, value: Any, env: Sequence[str] = (),
                       default: Optional[str] = None) -> Optional[str]:
        """A folder setting as an absolute path: *value*, else the first of the
        environment variables *env* that is set, else *default* (None if none)."""
        if value is None or value == "":
            value = next((os.environ[v] for v in env if os.environ.get(v)), default)
        return check_folder(value if value != "" else None, name, self.spec.code)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_attempt"] = None
        return state

    def reset(self) -> None:
        """Forget the last results (nothing else carries over between calculations)."""
        self.atoms = None
        self.results = {}

    # -- what a plugin provides ---------------------------------------------------------------
    def make_calculator(self, atoms: Any, properties: list[str], workdir: Path,
                        command: str) -> Any:
        """A fresh ASE calculator that runs *command* in *workdir* and computes
        *properties* (forces and stress switched on in its input as needed)."""
        raise NotImplementedError

    def run(self, calc: Any, atoms: Any, properties: list[str], workdir: Path) -> dict[str, Any]:
        """Write the input, run the program, read the results; returns the results.

        The default is ``spec.runner``'s: ASE does all three (``"ase"``), or the template
        writes and reads and :meth:`execute` runs the profile's command (``"template"``).
        A plugin that runs the program itself calls :meth:`execute`.
        """
        if self.spec.runner == "template":
            return self.run_template(calc, atoms, properties, workdir)
        return run_with_ase(calc, atoms, properties)

    def run_template(self, calc: Any, atoms: Any, properties: list[str],
                     workdir: Path) -> dict[str, Any]:
        """:meth:`run` for an ASE profile-and-template calculator (see wflp.calculators
        .asecalc.run_profile_template)."""
        return run_profile_template(calc, atoms, properties, workdir, self.execute)

    def scf_converged(self, workdir: Path, calc: Any = None) -> Optional[bool]:
        """Whether the output says the SCF converged (None: it does not say); by default
        from the spec's patterns (wflp.calculators.diagnosis.scf_verdict)."""
        return diagnosis.scf_verdict(self.spec, workdir)

    def diagnose(self, workdir: Path) -> Optional[str]:
        """The code's own error message in its output, if it wrote one (one line); by
        default from the spec's ``error_patterns`` (diagnosis.declared_error)."""
        return diagnosis.declared_error(self.spec, workdir)

    def find_error(self, lines: Sequence[str]) -> Optional[str]:
        """The last of *lines* matching the first of ``spec.error_patterns`` that matches
        any, stripped of spaces, ``*`` and tabs (None if none matches)."""
        return diagnosis.find_error(lines, self.spec.error_patterns)

    def input_files(self) -> dict[str, Any]:
        """Digests of the files the code reads (pseudopotentials ...), for records."""
        return {}

    def version(self) -> Optional[str]:
        """The program's version (``spec.version_pattern`` in what ``command +
        spec.version_args`` prints); None if not declared or it does not say."""
        if not self.spec.version_pattern or not self.command:
            return None
        return program_version(env_prefix(self.env) + shlex.split(self.command) +
                               list(self.spec.version_args), self.spec.version_pattern)

    # -- commands and structures --------------------------------------------------------------
    def command_for(self, atoms: Any) -> str:
        """The command line for *atoms*: the gamma-point one for non-periodic structures,
        with the ``env`` variables in front."""
        return with_env(self.command_gamma if is_gamma(atoms) else self.command, self.env)

    is_gamma = staticmethod(is_gamma)

    def check_structure(self, atoms: Any) -> None:
        """Refuse structures the code cannot compute, with a message saying what to do."""
        self.spec.check_structure(atoms)

    # -- provenance ---------------------------------------------------------------------------
    def __wflp_provenance__(self) -> dict[str, Any]:
        """What records describe this calculator by (see wflp.records.describe)."""
        return code_provenance(self.spec, self.command, self.command_gamma, self.env,
                               self.parameters, self.input_files(), self.version())

    # -- the calculation ----------------------------------------------------------------------
    def __wflp_item__(self, index: int) -> None:
        """calculate says which item (global index) the next calculation is for."""
        self.rundirs.start_item(index)
        self.wflp_rundir = None

    def calculate(self, atoms: Any = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        """One calculation in a new run directory, giving every property in *properties*."""
        if atoms is None:
            atoms = self.atoms
        if atoms is None:
            raise ValueError(f"{self.spec.code}: no configuration to calculate")
        wanted = list(dict.fromkeys(properties))
        self.results = {}
        self.check_structure(atoms)
        rundir = self.rundirs.new()
        self.wflp_rundir = str(rundir)
        workdir = self.rundirs.workdir(rundir)
        attempt = self._attempt = _Attempt(rundir, workdir)
        ok = False
        try:
            try:
                with quiet(self.spec.code):
                    attempt.calc = self.make_calculator(atoms, wanted, workdir,
                                                        self.command_for(atoms))
                    results = self.run(attempt.calc, atoms.copy(), wanted, workdir)
            except WflpError:
                raise
            except Exception as err:
                if attempt.returncode is None:
                    attempt.returncode = exit_status_of(err)
                raise self.failure(self._default_reason(attempt), err) from err
            self.results = self._checked(results, wanted, len(atoms))
            ok = True
        finally:
            self._attempt = None
            try:
                self.rundirs.finish(rundir, workdir, ok, self.spec.main_outputs)
            finally:
                if not rundir.exists():
                    self.wflp_rundir = None

    def _default_reason(self, attempt: _Attempt) -> str:
        if attempt.phase == "read":
            return diagnosis.UNREADABLE
        runs_program = self.spec.runner == "template" or type(self).run is not \
            FileCalculator.run
        if attempt.phase == "prepare" and runs_program:
            return diagnosis.UNPREPARED   # wflp runs the program and had not yet
        return diagnosis.FAILED

    def _checked(self, results: dict[str, Any], properties: list[str],
                 natoms: int) -> dict[str, Any]:
        from ase.calculators.calculator import all_properties

        attempt = self._attempt
        assert attempt is not None
        if attempt.returncode:
            raise self.failure(f"the program exited with status {attempt.returncode}")
        with quiet(self.spec.code):
            converged = self.scf_converged(attempt.workdir, attempt.calc)
        if converged is False:
            raise self.failure("the SCF did not converge")
        problem = diagnosis.result_problem(results, properties, natoms)
        if problem:
            raise self.failure(problem)
        return {k: v for k, v in results.items() if k in all_properties and v is not None}

    def execute(self, argv: Sequence[str], workdir: Path, stdout: str,
                stderr: Optional[str] = None) -> int:
        """Run *argv* in *workdir*, stdout and stderr to those files there, stdin closed;
        record and return the exit status. Interrupted (a time limit, Ctrl-C), the
        program and its children are killed before the exception goes on."""
        attempt = self._attempt

        def started() -> None:
            if attempt is not None:
                attempt.phase = "run"

        try:
            returncode = run_program(argv, workdir, stdout, stderr, started)
        except CannotRun as err:
            raise self.failure(
                f"cannot run {err.program!r} ({err.why}); install it, or point command= "
                f"(or WFLP_{self.spec.code.upper()}_COMMAND) at it") from err.__cause__
        if attempt is not None:
            attempt.returncode = returncode
            attempt.phase = "read"
        return returncode

    def failure(self, reason: str, cause: Optional[BaseException] = None) -> CalculationError:
        """The CalculationError for the running calculation, with what its files say."""
        attempt = self._attempt
        if attempt is None:      # not while calculating: only the reason and the cause
            return CalculationError(self.spec.code, None, reason,
                                    output_file=self.spec.output_file,
                                    cause=diagnosis.describe_cause(cause))
        converged = self._quietly(self.scf_converged, "tell whether the SCF converged",
                                  attempt.workdir, attempt.calc)
        diag = self._quietly(self.diagnose, "read its error message", attempt.workdir)
        output_file, output_tail, stderr_tail = diagnosis.output_tails(self.spec,
                                                                       attempt.workdir)
        returncode = attempt.returncode
        return CalculationError(
            self.spec.code, str(attempt.rundir),
            diagnosis.failure_reason(reason, returncode, diag),
            returncode=returncode, converged=converged, output_file=output_file,
            output_tail=output_tail, stderr_tail=stderr_tail,
            cause=diagnosis.describe_cause(cause))

    def _quietly(self, method: Callable[..., Any], what: str, *args: Any) -> Any:
        """*method(*args)*, or None if it fails (an unreadable output says nothing)."""
        try:
            with quiet(self.spec.code):
                return method(*args)
        except Exception as err:
            log.debug("%s: cannot %s: %s", self.spec.code, what, err)
            return None


_mirror(FileCalculator, FileCalculator.spec)


class GenericFileCalculator(FileCalculator):
    """Any ASE calculator class that takes ``directory``, run in wflp's run directories.

    ``GenericFileCalculator(factory, *args, code="mycode", main_outputs=("*.out",),
    **kwargs)`` builds ``factory(*args, directory=<run directory>, **kwargs)`` for every
    calculation and lets ASE write, run and read. ``command=`` is passed to the factory
    when given (ASE's FileIOCalculator takes it); ``output_file``/``stderr_file`` name the
    files whose last lines go into errors.
    """

    def __init__(self, factory: Callable[..., Any], *args: Any, code: str = "file",
                 main_outputs: Sequence[str] = (), output_file: str = "",
                 stderr_file: str = "", properties: Optional[Sequence[str]] = None,
                 command: Optional[str] = None, env: Optional[dict[str, str]] = None,
                 keep: Any = None, rundir_root: Optional[str] = None,
                 scratch: Optional[str] = None, **kwargs: Any):
        if not callable(factory):
            raise ParameterError(f"GenericFileCalculator: factory must be an ASE calculator "
                                 f"class or function, got {factory!r}")
        props = properties or getattr(factory, "implemented_properties", None) or (
            "energy", "forces")
        self.spec = CodeSpec(code=code, main_outputs=tuple(main_outputs),
                             output_file=output_file, stderr_file=stderr_file,
                             properties=tuple(props))
        _mirror(self, self.spec)
        self.factory = factory
        self.args = tuple(args)
        self._given_command = command
        super().__init__(command=command, env=env, keep=keep,
                         rundir_root=rundir_root, scratch=scratch, **kwargs)

    def make_calculator(self, atoms: Any, properties: list[str], workdir: Path,
                        command: str) -> Any:
        """``factory(*args, directory=workdir, **kwargs)``, with ``command`` passed on only
        when it was given."""
        kwargs = dict(self.parameters)
        if self._given_command is not None:
            kwargs["command"] = command
        return self.factory(*self.args, directory=str(workdir), **kwargs)

    def __wflp_provenance__(self) -> dict[str, Any]:
        from ..records import describe_callable

        return {**super().__wflp_provenance__(), "factory": describe_callable(self.factory),
                "args": list(self.args)}


__all__ = ["FileCalculator", "GenericFileCalculator"]
