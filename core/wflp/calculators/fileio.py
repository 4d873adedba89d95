"""File-based calculators: one private run directory per calculation, and what goes with it.

ASE's file-based calculators (Quantum ESPRESSO, VASP, ORCA, CASTEP, FHI-aims ...) write
their input files into ``directory`` (``"."`` by default), run a program there and read
its output back. Two worker processes sharing that directory silently read each other's
results. :class:`FileCalculator` is the base of wflp's calculators for such codes; ASE's
own ``genericfileio`` separates a *profile* (how to run a code) from a *template* (what to
write and read) and wishes its ``directory`` were a factory: this class is that factory.

- **One run directory per calculation**, private (0700), named deterministically from
  the output and the item index so a resumed run finds (and replaces) the old one:

  ==========================  ===============================================================
  where calculate writes      run directory of item *i*
  ==========================  ===============================================================
  a file ``dir/out.xyz``      ``dir/out.xyz.rundirs/<i:06d>`` (beside the output's stage)
  the same, ``rundir_root``   ``<rundir_root>/out.xyz-<8 hex of the output path>/<i:06d>``
  memory (no output file)     ``<rundir_root or ./wflp-rundirs>/<operation>-<run id>/<i:06d>``
  outside ``calculate``       a new ``<rundir_root or ./wflp-rundirs>/<code>-XXXXXXXX``
  ==========================  ===============================================================

  A second calculation for the same item (an optimizer step) gets ``<i:06d>-1``, ``-2`` ...
  An existing directory of that name is emptied first: nothing of an older run (a
  wavefunction file a code would restart from) can leak into the new one. ``calculate``
  stores the path in ``Atoms.info[prefix + "rundir"]`` when something was kept.
  ``scratch=DIR`` runs the program in ``DIR/wflp-<digest>`` instead and copies the kept
  files back to the run directory.
- **Keep-files policy** (``keep=``): ``"main"`` (the default) keeps only the code's main
  output files on success; ``"all"``, ``"none"``, or a list of glob patterns. A failed
  calculation keeps everything. Empty directories are removed.
- **One calculation for all properties**: :meth:`FileCalculator.calculate` builds a fresh
  ASE calculator for every calculation (no state carries over) and asks it for every
  requested property at once (forces and stress switched on in the input as needed).
- **One error type**, :class:`CalculationError`, whatever ASE raised (CalledProcessError,
  StopIteration, AssertionError, IndexError, ParseError, RuntimeError ... or nothing):
  code, run directory, exit status, whether the SCF converged, the last lines of the main
  output and of stderr. Its message is one line (``calculate`` stores it as
  ``<prefix>calc_error``); the details are attributes.
- **Provenance**: ``__wflp_provenance__()`` returns the code, the program's version (when
  it can be asked cheaply), the command, the parameters and digests of the files the code
  reads (pseudopotentials, POTCARs, species files); records describe the calculator by it,
  so a changed pseudopotential, command or parameter is a record mismatch.
- ASE's warnings and prints while writing and reading files go to the ``wflp`` logger at
  debug level, not to the user's terminal.

A subclass names its code and files in class attributes and implements
:meth:`FileCalculator.make_calculator` (a fresh ASE calculator running in a given
directory); :meth:`~FileCalculator.run` (default: let ASE write, run and read;
:meth:`~FileCalculator.run_template` runs an ASE profile-and-template calculator with
:meth:`~FileCalculator.execute`), :meth:`~FileCalculator.scf_converged` (default: scan the
output for ``converged_pattern`` / ``not_converged_pattern``),
:meth:`~FileCalculator.diagnose` (default: the last line matching ``error_patterns``),
:meth:`~FileCalculator.input_files` and :meth:`~FileCalculator.version` are optional.
:class:`GenericFileCalculator` wraps any ASE calculator class that takes ``directory``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Union

import numpy as np
from ase.calculators.calculator import BaseCalculator, all_changes

from ..errors import ParameterError, WflpError

log = logging.getLogger("wflp")

ITEM_PROTOCOL = "__wflp_item__"   # calculate calls calc.__wflp_item__(index) before each item
RUNDIRS_SUFFIX = ".rundirs"
DEFAULT_ROOT = "wflp-rundirs"
KEEP_CHOICES = ("main", "all", "none")
TAIL_LINES = 20
MESSAGE_LINES = 3
UNREADABLE = "its output could not be read"
UNPREPARED = "writing its input failed"
FAILED = "the calculation failed"
DEFAULT_REASONS = (UNREADABLE, UNPREPARED, FAILED)


# -- the error --------------------------------------------------------------------------------

class CalculationError(WflpError):
    """A file-based calculation failed.

    The message is one line (code, run directory, reason, exit status, the last lines of
    the output); the attributes carry the details: ``code``, ``directory`` (where its
    files are kept), ``reason``, ``returncode`` (None if the program did not run or is
    not known), ``converged`` (True, False or None if unknown), ``output_file``,
    ``output_tail`` and ``stderr_tail`` (the last lines, up to 20 each) and ``cause``
    (what ASE raised, as text, or "").
    """

    def __init__(self, code: str, directory: Optional[str], reason: str, *,
                 returncode: Optional[int] = None, converged: Optional[bool] = None,
                 output_file: str = "", output_tail: Sequence[str] = (),
                 stderr_tail: Sequence[str] = (), cause: str = ""):
        self.code = code
        self.directory = directory
        self.reason = reason
        self.returncode = returncode
        self.converged = converged
        self.output_file = output_file
        self.output_tail = list(output_tail)
        self.stderr_tail = list(stderr_tail)
        self.cause = cause
        super().__init__(self._message())

    def __reduce__(self):  # pickles with its attributes (the default would pass only args)
        return (_rebuild_error, (type(self), dict(self.__dict__)))

    def _message(self) -> str:
        where = f" in {self.directory}" if self.directory else ""
        parts = [f"{self.code} calculation failed{where}: {self.reason}"]
        notes = []
        if self.returncode is not None and f"status {self.returncode}" not in self.reason:
            notes.append(f"exit status {self.returncode}")
        if self.converged is False and "converge" not in self.reason:
            notes.append("SCF not converged")
        if notes:
            parts[0] += f" ({'; '.join(notes)})"
        if self.cause and self.cause not in self.reason:
            parts.append(f"raised {self.cause}")
        out = _short(self.output_tail)
        if out:
            parts.append(f"last lines of {self.output_file or 'the output'}: {out}")
        err = _short(self.stderr_tail)
        if err:
            parts.append(f"stderr: {err}")
        return _one_line("; ".join(parts))

    def report(self) -> str:
        """A multi-line report: the message, then the tails of the output and stderr."""
        lines = [str(self)]
        if self.output_tail:
            lines += [f"--- last lines of {self.output_file or 'the output'} ---",
                      *self.output_tail]
        if self.stderr_tail:
            lines += ["--- last lines of stderr ---", *self.stderr_tail]
        return "\n".join(lines)


def _rebuild_error(cls: type, state: dict) -> CalculationError:
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, err._message())
    return err


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(lines: Sequence[str], n: int = MESSAGE_LINES, width: int = 160) -> str:
    picked = [_one_line(x) for x in lines if re.search(r"[A-Za-z0-9]", x)][-n:]  # no rules
    return " | ".join(f'"{x[:width]}"' for x in picked)


def tail(path: Union[str, os.PathLike], n: int = TAIL_LINES, max_bytes: int = 65536) -> list:
    """The last *n* lines of a text file ([] if it does not exist or is empty)."""
    try:
        with open(path, "rb") as fd:
            fd.seek(0, os.SEEK_END)
            size = fd.tell()
            fd.seek(max(0, size - max_bytes))
            data = fd.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[-n:]


# -- keep-files policy ------------------------------------------------------------------------

def check_keep(keep: Any, where: str) -> Union[str, tuple]:
    """The keep policy as given, checked: "main", "all", "none" or a tuple of globs."""
    if keep is None:
        return "main"
    if isinstance(keep, str):
        if keep in KEEP_CHOICES:
            return keep
        raise ParameterError(f"{where}: keep must be 'main', 'all', 'none' or a list of glob "
                             f"patterns such as ['*.out', 'OUTCAR'], got {keep!r}")
    if isinstance(keep, (list, tuple)) and all(isinstance(p, str) and p for p in keep):
        return tuple(keep)
    raise ParameterError(f"{where}: keep must be 'main', 'all', 'none' or a list of glob "
                         f"patterns such as ['*.out', 'OUTCAR'], got {keep!r}")


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def prune(folder: Path, patterns: Sequence[str]) -> None:
    """Delete everything in *folder* that matches none of *patterns* (relative path or
    name; a matching directory is kept whole), then the directories left empty."""
    for dirpath, dirnames, filenames in os.walk(folder, topdown=True):
        here = Path(dirpath)
        rel_here = here.relative_to(folder).as_posix()
        for d in list(dirnames):
            rel = d if rel_here == "." else f"{rel_here}/{d}"
            path = here / d
            if _matches(rel, patterns):
                dirnames.remove(d)            # kept whole
            elif path.is_symlink():
                path.unlink()
                dirnames.remove(d)
        for f in filenames:
            rel = f if rel_here == "." else f"{rel_here}/{f}"
            if not _matches(rel, patterns):
                with contextlib.suppress(FileNotFoundError):
                    (here / f).unlink()
    remove_empty_dirs(folder, keep_top=True)


def remove_empty_dirs(folder: Path, keep_top: bool = False) -> None:
    """Remove empty directories below *folder* (and *folder* itself unless keep_top)."""
    for dirpath, _dirs, _files in os.walk(folder, topdown=False):
        if keep_top and Path(dirpath) == folder:
            continue
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


# -- directories ------------------------------------------------------------------------------

def private_dir(path: Path) -> Path:
    """Create *path* (and missing parents) with mode 0700; tolerate racing creators."""
    for _attempt in range(5):
        try:
            missing = []
            p = path
            while not p.exists():
                missing.append(p)
                p = p.parent
            os.makedirs(path, mode=0o700, exist_ok=True)
            for created in missing:
                with contextlib.suppress(OSError):
                    os.chmod(created, 0o700)
            return path
        except FileNotFoundError:  # a parent was removed meanwhile (an emptied root)
            continue
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def fresh_dir(path: Path) -> Path:
    """An empty private directory at *path*: an older one of that name is removed first."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    private_dir(path)
    os.chmod(path, 0o700)
    return path


def _copy_into(src: Path, dst: Path) -> None:
    """Copy the files of src into dst (symlinks as symlinks)."""
    for dirpath, _dirs, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        target = dst / rel
        private_dir(target)
        for f in filenames:
            shutil.copy2(Path(dirpath) / f, target / f, follow_symlinks=False)


def _digest8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# -- provenance helpers ------------------------------------------------------------------------

_file_digests: dict = {}
_versions: dict = {}


def file_sha256(path: Union[str, os.PathLike]) -> Optional[str]:
    """sha256 of a file's bytes (None if it does not exist); cached by size and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _file_digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as fd:
            for block in iter(lambda: fd.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        if len(_file_digests) > 4096:
            _file_digests.clear()
        _file_digests[key] = digest
    return digest


def folder_sha256(folder: Union[str, os.PathLike],
                  patterns: Sequence[str] = ("*",)) -> Optional[dict]:
    """{"files": n, "sha256": digest} over the relative names and contents of the files
    in *folder* (recursively) matching *patterns*; None if the folder does not exist."""
    root = Path(folder)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            path = Path(dirpath) / f
            rel = path.relative_to(root).as_posix()
            if not _matches(rel, patterns):
                continue
            digest = file_sha256(path)
            if digest is None:
                continue
            h.update(f"{rel}\0{digest}\n".encode())
            n += 1
    return {"files": n, "sha256": h.hexdigest()}


def program_version(argv: Sequence[str], pattern: str, timeout: float = 20.0,
                    touch: Optional[str] = None) -> Optional[str]:
    """The version a program prints when run without input (in an empty private temporary
    directory, stdin closed), matched by the regular expression *pattern* (group 1); None
    if it cannot be run or prints none. Asked once per process for each command."""
    key = (tuple(argv), pattern, touch)
    if key in _versions:
        return _versions[key]
    version = None
    try:
        with tempfile.TemporaryDirectory(prefix="wflp-version-") as tmp:
            if touch:
                Path(tmp, touch).touch()
            proc = subprocess.run(list(argv), cwd=tmp, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout)
        match = re.search(pattern, proc.stdout.decode("utf-8", errors="replace"), re.M)
        version = match.group(1) if match else None
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        log.debug("cannot ask %s for its version: %s: %s", argv[0] if argv else "?",
                  type(err).__name__, err)
    _versions[key] = version
    return version


# -- quiet ASE --------------------------------------------------------------------------------

@contextlib.contextmanager
def quiet(label: str) -> Iterator[None]:
    """Warnings and prints inside the block go to the wflp logger at debug level."""
    buffer = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buffer):
            warnings.simplefilter("always")
            yield
    finally:
        for w in caught:
            log.debug("%s: %s: %s", label, w.category.__name__, w.message)
        text = buffer.getvalue().strip()
        if text:
            log.debug("%s printed: %s", label, text)


# -- the base class ---------------------------------------------------------------------------

class _Attempt:
    """What one calculation has done so far (for the error if it fails)."""

    def __init__(self, rundir: Path, workdir: Path):
        self.rundir = rundir
        self.workdir = workdir
        self.returncode: Optional[int] = None
        self.calc: Any = None
        self.phase = "prepare"   # -> "run" -> "read", when the calculator runs the program


def env_prefix(env: Optional[dict]) -> list:
    """argv words that run a command with extra environment variables: ["env", "K=V" ...]."""
    if not env:
        return []
    words = ["env"]
    for key, value in env.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ParameterError(f"env: {key!r} is not an environment variable name")
        words.append(f"{key}={value}")
    return words


class FileCalculator(BaseCalculator):
    """Base of calculators that run a program in a run directory (see the module docstring).

    Keyword arguments (all optional): ``command`` and ``command_gamma`` (the program, MPI
    launcher included, e.g. ``"mpirun -np 4 pw.x"``; split like a shell would, not run
    through one; defaults from ``WFLP_<CODE>_COMMAND`` and ``WFLP_<CODE>_COMMAND_GAMMA``),
    ``env`` (extra environment variables for the program, put on its command line with
    ``env``), ``keep`` (``"main"``, ``"all"``, ``"none"`` or glob patterns),
    ``rundir_root`` and ``scratch`` (where run directories go); the other keyword
    arguments are the code's own (ASE's constructor arguments), kept in ``parameters``.

    What a subclass declares (class attributes): ``code``, ``default_command``
    (``default_command_gamma``), ``main_outputs``, ``output_file``, ``stdout_file``,
    ``stderr_file``, ``needs_cell``, ``molecular_only``, ``implemented_properties``, and
    for the default :meth:`scf_converged` and :meth:`diagnose`:

    - ``converged_pattern`` / ``not_converged_pattern``: compiled regular expressions (or
      None) searched in every line of ``output_file``. The verdict is that of the last
      line that matches either, except that once a line said "not converged" a later
      "converged" does not undo it (one failed SCF in the run is a failure); None if
      the output is missing or neither matches. With both None nothing is read.
    - ``error_patterns``: compiled regular expressions, the most telling first; the
      diagnosis is the last line, stripped of spaces, ``*`` and tabs, that matches the
      first pattern matching any of the last ``error_output_lines`` lines of
      ``output_file`` and the last 20 of ``stderr_file`` (:meth:`find_error`).
    """

    code: ClassVar[str] = "file"
    default_command: ClassVar[str] = ""
    default_command_gamma: ClassVar[str] = ""   # "" -> the command
    main_outputs: ClassVar[tuple] = ()         # globs kept on success with keep="main"
    output_file: ClassVar[str] = ""            # the main output (its tail goes in errors)
    stdout_file: ClassVar[str] = ""            # the program's stdout, if not output_file
    stderr_file: ClassVar[str] = ""
    needs_cell: ClassVar[bool] = False         # refuse structures without a cell
    molecular_only: ClassVar[bool] = False     # refuse periodic structures
    converged_pattern: ClassVar[Optional[re.Pattern]] = None      # output_file says: converged
    not_converged_pattern: ClassVar[Optional[re.Pattern]] = None  # ... not converged
    error_patterns: ClassVar[tuple] = ()       # its error messages, most telling first
    error_output_lines: ClassVar[int] = 60     # the last lines of output_file they are sought in
    # the version of what this plugin computes (bump it when a change changes the results);
    # records compare it, not the plugin's distribution version
    wflp_result_version: ClassVar[str] = "1"
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, *, command: Optional[str] = None, command_gamma: Optional[str] = None,
                 env: Optional[dict] = None, keep: Any = None,
                 rundir_root: Optional[str] = None, scratch: Optional[str] = None,
                 **parameters: Any):
        super().__init__(parameters=None)
        self.parameters = dict(parameters)
        self.keep = check_keep(keep, self.code)
        self.command = self._command(command, "COMMAND", self.default_command, "command")
        self.command_gamma = self._command(command_gamma, "COMMAND_GAMMA",
                                           self.default_command_gamma or self.command,
                                           "command_gamma")
        if env is not None and not isinstance(env, dict):
            raise ParameterError(f"{self.code}: env must be a table of variables, e.g. "
                                 f"{{'OMP_NUM_THREADS': '1'}}, got {env!r}")
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        env_prefix(self.env)  # checks the names now
        self.rundir_root = self._folder(rundir_root, "rundir_root")
        self.scratch = self._folder(scratch, "scratch")
        self.wflp_rundir: Optional[str] = None
        self._item: Optional[int] = None
        self._item_calls = 0
        self._own_root: Optional[Path] = None
        self._attempt: Optional[_Attempt] = None

    # -- configuration ------------------------------------------------------------------------
    def _command(self, value: Optional[str], suffix: str, default: str, name: str) -> str:
        if value is None:
            value = os.environ.get(f"WFLP_{self.code.upper()}_{suffix}") or default
        if isinstance(value, str) and not value.strip() and not default:
            return ""  # no command of its own: the ASE calculator knows how to run
        if not isinstance(value, str) or not value.strip():
            raise ParameterError(
                f"{self.code}: {name} must name the program to run (e.g. {default!r}), got "
                f"{value!r}; pass {name}= or set WFLP_{self.code.upper()}_{suffix}")
        try:
            shlex.split(value)
        except ValueError as err:
            raise ParameterError(f"{self.code}: {name} {value!r} cannot be split into words: "
                                 f"{err}") from None
        return value

    def _folder(self, value: Any, name: str) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ParameterError(f"{self.code}: {name} must be a folder path, got {value!r}")
        return os.path.abspath(os.path.expanduser(os.fspath(value)))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_attempt"] = None
        return state

    def reset(self) -> None:
        """Forget the last results (nothing else carries over between calculations)."""
        self.atoms = None
        self.results = {}

    # -- what subclasses provide --------------------------------------------------------------
    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        """A fresh ASE calculator that runs *command* in *workdir* and computes
        *properties* (forces and stress switched on in its input as needed)."""
        raise NotImplementedError

    def run(self, calc: Any, atoms: Any, properties: list, workdir: Path) -> dict:
        """Write the input, run the program, read the results; returns the results.

        The default lets ASE do all three (``calc.calculate``). Subclasses that can run
        the program themselves use :meth:`execute`, which records its exit status.
        """
        calc.calculate(atoms, list(properties), list(all_changes))
        return dict(calc.results)

    def run_template(self, calc: Any, atoms: Any, properties: list, workdir: Path) -> dict:
        """:meth:`run` for an ASE calculator made of a profile and a template (ASE's
        ``GenericFileIOCalculator``: Espresso, ORCA, Aims ...): the template writes the
        input, :meth:`execute` runs the profile's command with the template's output and
        error files (so the exit status is known), the template reads the results."""
        template = calc.template
        calc.write_inputfiles(atoms, properties)
        self.execute(calc.profile.get_command(getattr(template, "inputname", None)), workdir,
                     stdout=template.outputname, stderr=template.errorname)
        return dict(template.read_results(workdir))

    def scf_converged(self, workdir: Path, calc: Any = None) -> Optional[bool]:
        """Whether the output says the SCF converged (None: it does not say).

        The default scans ``output_file`` for ``not_converged_pattern`` and
        ``converged_pattern`` (see the class docstring)."""
        if self.converged_pattern is None and self.not_converged_pattern is None:
            return None
        if not self.output_file:
            return None
        path = workdir / self.output_file
        if not path.exists():
            return None
        state = None
        with open(path, errors="replace") as fd:
            for line in fd:
                if self.not_converged_pattern is not None and \
                        self.not_converged_pattern.search(line):
                    state = False
                elif self.converged_pattern is not None and state is not False and \
                        self.converged_pattern.search(line):
                    state = True
        return state

    def diagnose(self, workdir: Path) -> Optional[str]:
        """The code's own error message in its output, if it wrote one (one line).

        The default: :meth:`find_error` in the last ``error_output_lines`` lines of
        ``output_file`` followed by the last 20 of ``stderr_file``."""
        if not self.error_patterns:
            return None
        lines = tail(workdir / self.output_file, self.error_output_lines) \
            if self.output_file else []
        if self.stderr_file:
            lines += tail(workdir / self.stderr_file, TAIL_LINES)
        return self.find_error(lines)

    def find_error(self, lines: Sequence[str]) -> Optional[str]:
        """The last of *lines* matching the first of ``error_patterns`` that matches any,
        stripped of spaces, ``*`` and tabs (None if none matches)."""
        for pattern in self.error_patterns:
            found = [line.strip(" *\t") for line in lines if pattern.search(line)]
            if found:
                return found[-1]
        return None

    def input_files(self) -> dict:
        """Digests of the files the code reads (pseudopotentials ...), for records."""
        return {}

    def version(self) -> Optional[str]:
        """The program's version, if it can be asked cheaply (None otherwise)."""
        return None

    def command_for(self, atoms: Any) -> str:
        """The command line for *atoms*: the gamma-point one for non-periodic structures,
        with the ``env`` variables in front."""
        command = self.command_gamma if self.is_gamma(atoms) else self.command
        prefix = env_prefix(self.env)
        return f"{shlex.join(prefix)} {command}" if prefix and command else command

    @staticmethod
    def is_gamma(atoms: Any) -> bool:
        """Non-periodic structures are computed at the gamma point only."""
        return not bool(np.any(atoms.pbc))

    # -- provenance -----------------------------------------------------------------------------
    def __wflp_provenance__(self) -> dict:
        """What records describe this calculator by (see wflp.records.describe)."""
        out = {"code": self.code, "command": self.command,
               "command_gamma": self.command_gamma, "env": dict(self.env),
               "parameters": dict(self.parameters), "files": self.input_files(),
               "facts": {"program_version": self.version()}}
        if str(self.wflp_result_version) != "1":
            out["result_version"] = str(self.wflp_result_version)
        return out

    # -- items and run directories -------------------------------------------------------------
    def __wflp_item__(self, index: int) -> None:
        """calculate says which item (global index) the next calculation is for."""
        self._item = int(index)
        self._item_calls = 0
        self.wflp_rundir = None

    def _base(self) -> Path:
        return Path(self.rundir_root) if self.rundir_root else Path(DEFAULT_ROOT).absolute()

    def _item_root(self) -> Path:
        from ..engine import current_run

        ctx = current_run()
        if ctx is not None and ctx.outputs:
            first = Path(ctx.outputs[0])
            if self.rundir_root is None:
                beside = Path(ctx.stage).parent if ctx.stage else first.parent
                return beside / f"{first.name}{RUNDIRS_SUFFIX}"
            return Path(self.rundir_root) / f"{first.name}-{_digest8(str(first))}"
        if ctx is not None:
            return self._base() / f"{ctx.operation}-{ctx.run_id}"
        if self._own_root is None:
            base = private_dir(self._base())
            self._own_root = Path(tempfile.mkdtemp(prefix=f"{self.code}-", dir=base))
        return self._own_root

    def _next_rundir(self) -> Path:
        if self._item is None:
            base = private_dir(self._base())
            return Path(tempfile.mkdtemp(prefix=f"{self.code}-", dir=base))
        name = f"{self._item:06d}"
        if self._item_calls:
            name += f"-{self._item_calls}"
        self._item_calls += 1
        return fresh_dir(self._item_root() / name)

    def _workdir(self, rundir: Path) -> Path:
        if not self.scratch:
            return rundir
        digest = hashlib.sha256(str(rundir).encode()).hexdigest()[:16]
        return fresh_dir(Path(self.scratch) / f"wflp-{digest}")

    def _finish(self, rundir: Path, workdir: Path, ok: bool) -> None:
        """Apply the keep policy, bring files back from scratch, remove empty folders."""
        try:
            if ok and self.keep != "all":
                patterns = self.main_outputs if self.keep == "main" else (
                    () if self.keep == "none" else self.keep)
                prune(workdir, patterns)
            if workdir != rundir:
                _copy_into(workdir, rundir)
                shutil.rmtree(workdir, ignore_errors=True)
        finally:
            remove_empty_dirs(rundir)
            if not rundir.exists():
                self.wflp_rundir = None
                with contextlib.suppress(OSError):
                    os.rmdir(rundir.parent)   # the root, if nothing else is in it
                    if rundir.parent.parent == Path(DEFAULT_ROOT).absolute():
                        os.rmdir(rundir.parent.parent)   # ./wflp-rundirs, if empty

    # -- the calculation -------------------------------------------------------------------------
    def check_structure(self, atoms: Any) -> None:
        """Refuse structures the code cannot compute, with a message saying what to do."""
        pbc = np.asarray(atoms.pbc, dtype=bool)
        rank = atoms.cell.rank
        if self.molecular_only and pbc.any():
            raise ParameterError(
                f"{self.code} computes molecules and clusters, but this configuration is "
                f"periodic (pbc={pbc.tolist()}); set atoms.pbc = False to compute it as a "
                "cluster")
        if (self.needs_cell or pbc.any()) and rank < 3:
            raise ParameterError(
                f"{self.code}: this configuration has no cell (its cell vectors span "
                f"{rank} dimensions, pbc={pbc.tolist()}); {self.code} needs one: put a "
                "molecule in a box, e.g. atoms.center(vacuum=6.0), and set atoms.pbc")

    def calculate(self, atoms: Any = None, properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        """One calculation in a new run directory, giving every property in *properties*."""
        if atoms is None:
            atoms = self.atoms
        if atoms is None:
            raise ValueError(f"{self.code}: no configuration to calculate")
        properties = list(dict.fromkeys(properties))
        self.results = {}
        self.check_structure(atoms)
        rundir = self._next_rundir()
        self.wflp_rundir = str(rundir)
        workdir = self._workdir(rundir)
        attempt = self._attempt = _Attempt(rundir, workdir)
        ok = False
        try:
            try:
                with quiet(self.code):
                    attempt.calc = self.make_calculator(atoms, properties, workdir,
                                                        self.command_for(atoms))
                    results = self.run(attempt.calc, atoms.copy(), properties, workdir)
            except WflpError:
                raise
            except Exception as err:
                if attempt.returncode is None:
                    attempt.returncode = _exit_status_of(err)
                raise self.failure(self._default_reason(attempt), err) from err
            self.results = self._checked(results, properties, atoms)
            ok = True
        finally:
            self._attempt = None
            self._finish(rundir, workdir, ok)

    def _default_reason(self, attempt: _Attempt) -> str:
        if attempt.phase == "read":
            return UNREADABLE
        if attempt.phase == "prepare" and type(self).run is not FileCalculator.run:
            return UNPREPARED     # it runs the program itself (execute) and had not yet
        return FAILED

    def _checked(self, results: dict, properties: list, atoms: Any) -> dict:
        attempt = self._attempt
        if attempt.returncode:
            raise self.failure(f"the program exited with status {attempt.returncode}")
        with quiet(self.code):
            converged = self.scf_converged(attempt.workdir, attempt.calc)
        if converged is False:
            raise self.failure("the SCF did not converge")
        out = {}
        for name in properties:
            value = results.get(name)
            if value is None:
                raise self.failure(f"its output has no {name}")
            array = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(array)):
                raise self.failure(f"its {name} is not a finite number ({value!r})"
                                   if array.ndim == 0 else f"its {name} are not all finite")
            if name == "forces" and array.shape != (len(atoms), 3):
                raise self.failure(f"its forces have shape {array.shape}, not "
                                   f"({len(atoms)}, 3)")
        from ase.calculators.calculator import all_properties

        for name, value in results.items():
            if name in all_properties and value is not None:
                out[name] = value
        return out

    def execute(self, argv: Sequence[str], workdir: Path, stdout: str,
                stderr: Optional[str] = None) -> int:
        """Run *argv* in *workdir*, stdout and stderr to those files there, stdin closed;
        record and return the exit status. Interrupted (a time limit, Ctrl-C), the
        program and its children are killed before the exception goes on."""
        argv = list(argv)
        with open(workdir / stdout, "wb") as out, \
                (open(workdir / stderr, "wb") if stderr else contextlib.nullcontext(None)) as err:
            if self._attempt is not None:
                self._attempt.phase = "run"
            try:
                proc = subprocess.Popen(argv, cwd=workdir, stdout=out,
                                        stderr=err if err is not None else subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as error:
                raise self.failure(
                    f"cannot run {argv[0]!r} ({error.strerror or error}); install it, or "
                    f"point command= (or WFLP_{self.code.upper()}_COMMAND) at it") from error
            try:
                returncode = proc.wait()
            except BaseException:
                _kill(proc)
                raise
        if self._attempt is not None:
            self._attempt.returncode = returncode
            self._attempt.phase = "read"
        return returncode

    def failure(self, reason: str, cause: Optional[BaseException] = None) -> CalculationError:
        """The CalculationError for the running calculation, with what its files say."""
        attempt = self._attempt
        workdir = attempt.workdir if attempt else None
        converged = diag = None
        output_file, output_tail, stderr_tail = self.output_file, [], []
        if workdir is not None:
            try:
                with quiet(self.code):
                    converged = self.scf_converged(workdir, attempt.calc)
            except Exception as err:  # an unreadable output says nothing about it
                log.debug("%s: cannot tell whether the SCF converged: %s", self.code, err)
            try:
                diag = self.diagnose(workdir)
            except Exception as err:
                log.debug("%s: cannot read its error message: %s", self.code, err)
            for name in (self.output_file, self.stdout_file):
                if name:
                    output_tail = tail(workdir / name)
                    if output_tail:
                        output_file = name
                        break
            if self.stderr_file:
                stderr_tail = tail(workdir / self.stderr_file)
        returncode = attempt.returncode if attempt else None
        if reason in DEFAULT_REASONS and returncode:
            reason = f"the program exited with status {returncode}"
        if diag and reason in DEFAULT_REASONS:
            reason = diag
        elif diag and diag not in reason:
            reason = f"{reason}: {diag}"
        return CalculationError(
            self.code, str(attempt.rundir) if attempt else None, reason,
            returncode=returncode, converged=converged,
            output_file=output_file, output_tail=output_tail, stderr_tail=stderr_tail,
            cause=_describe(cause))


def _describe(err: Optional[BaseException]) -> str:
    if err is None:
        return ""
    text = _one_line(str(err))
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _exit_status_of(err: BaseException) -> Optional[int]:
    """The exit status in what ASE raised when it ran the program itself, if it says."""
    code = getattr(err, "returncode", None)
    if isinstance(code, int):
        return code
    match = re.search(r"(?:returned an error:|with error code) *(-?\d+)", str(err))
    return int(match.group(1)) if match else None


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


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
                 command: Optional[str] = None, env: Optional[dict] = None, keep: Any = None,
                 rundir_root: Optional[str] = None, scratch: Optional[str] = None,
                 **kwargs: Any):
        if not callable(factory):
            raise ParameterError(f"GenericFileCalculator: factory must be an ASE calculator "
                                 f"class or function, got {factory!r}")
        self.code = code
        self.main_outputs = tuple(main_outputs)
        self.output_file = output_file
        self.stderr_file = stderr_file
        self.factory = factory
        self.args = tuple(args)
        self._given_command = command
        super().__init__(command=command, env=env, keep=keep,
                         rundir_root=rundir_root, scratch=scratch, **kwargs)
        props = properties or getattr(factory, "implemented_properties", None) or (
            "energy", "forces")
        self.implemented_properties = list(props)

    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        kwargs = dict(self.parameters)
        if self._given_command is not None:
            kwargs["command"] = command
        return self.factory(*self.args, directory=str(workdir), **kwargs)

    def __wflp_provenance__(self) -> dict:
        from ..records import describe_callable

        return {**super().__wflp_provenance__(), "factory": describe_callable(self.factory),
                "args": list(self.args)}


__all__ = ["CalculationError", "FileCalculator", "GenericFileCalculator", "ITEM_PROTOCOL",
           "KEEP_CHOICES", "RUNDIRS_SUFFIX", "check_keep", "env_prefix", "file_sha256",
           "folder_sha256", "fresh_dir", "private_dir", "program_version", "prune", "quiet",
           "remove_empty_dirs", "tail"]
