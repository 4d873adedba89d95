"""The buildcell generator: one random structure per input item, from AIRSS buildcell.

The parameters become a buildcell input (see :func:`wflp_buildcell.cellfile.cell_input`):

- ``composition``: one formula unit ("SiO2", {"Si": 1, "O": 2}); ``None`` takes the
  composition of each input configuration (so a file of prototypes works from
  ``wflp run`` and chains); other items (``ConfigSet.from_items(range(20))``) only
  count structures;
- ``n_formula_units``: a number or a range [low, high] (``#NFORM``);
- ``volume_per_atom``: Angstrom^3 per atom, a number or a range; written as the target
  volume per formula unit (``#TARGVOL``);
- ``min_separation``: a distance, or {"Si-O": 1.6, "O-O": 2.4, "default": 1.0}
  (``#MINSEP``; without "default", the smallest pair distance);
- ``symmetry_operations``: a number or a range (``#SYMMOPS``);
- ``extra``: further lines, verbatim (``#SLACK=0.25``, ``#OVERLAP=0.1``, ``#COMPACT``,
  ``#CLUSTER`` ...); it may not set a tag the parameters decide.

Each item gets ``#SEED=`` from the operation's ``seed`` and the item's position, so
the same seed gives the same structures in serial and parallel runs. buildcell runs
in a private (0700) run directory of its own, its input in ``buildcell.cell``,
stdout in ``buildcell.out.cell`` and stderr in ``buildcell.err``. The directory is
beside the output (``<output>.rundirs/buildcell-<item:06d>``; for an in-memory
output ``./wflp-rundirs/buildcell-<run id>/...``), the same layout as the file-based
calculators' (wflp.calculators.fileio). It is removed after a success unless
``keep_files=True``, and kept after a failure, which the error names. buildcell
loops forever on constraints it cannot meet: after ``timeout`` seconds it is killed
and the item fails.

Each structure is periodic, with ``info["config_type"]`` (``"buildcell"`` unless
``config_type`` says otherwise), ``info["buildcell_seed"]`` and, when buildcell's
header names it, ``info["buildcell_space_group"]``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from numbers import Real
from pathlib import Path
from typing import Any, Optional

from ase import Atoms
from wflp import operation
from wflp.calculators.fileio import (
    DEFAULT_ROOT,
    RUNDIRS_SUFFIX,
    file_sha256,
    fresh_dir,
    private_dir,
    tail,
)
from wflp.errors import ParameterError, WflpError

from .cellfile import CellFileError, cell_input, composition_counts, read_cell

INPUT_FILE = "buildcell.cell"
OUTPUT_FILE = "buildcell.out.cell"
STDERR_FILE = "buildcell.err"
MAX_SEED = 2**31 - 1
TAIL = 3


class BuildcellError(WflpError):
    """buildcell failed for one item; ``directory`` holds its files."""

    def __init__(self, message: str, directory: Optional[str] = None):
        super().__init__(message)
        self.directory = directory

    def __reduce__(self):
        return (BuildcellError, (str(self), self.directory))


def command_argv(command: Any) -> list[str]:
    """The program and its arguments: a string is split like a shell would (no shell runs)."""
    if isinstance(command, str):
        argv = shlex.split(command)
    elif isinstance(command, (list, tuple)) and all(isinstance(x, str) for x in command):
        argv = list(command)
    else:
        argv = []
    if not argv:
        raise ParameterError(f"buildcell: command must name the buildcell program (a string "
                             f"or a list of words), got {command!r}")
    return argv


def describe_command(command: Any, describer: Any) -> dict:
    """Records describe the command with a digest of the program it runs here, so another
    buildcell binary counts as a different computation."""
    argv = command_argv(command)
    path = shutil.which(argv[0])
    return {"argv": argv, "program_sha256": file_sha256(path) if path else None}


def _check(params: dict, seed: Optional[int]) -> None:
    if seed is None:
        raise ParameterError("buildcell: the structures are random: pass seed=<int> (wflp run "
                             "... --seed N) so they can be made again")
    command_argv(params["command"])
    timeout = params["timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, Real) or not timeout > 0:
        raise ParameterError(f"buildcell: timeout must be a number of seconds > 0, got "
                             f"{timeout!r}")
    if params["volume_per_atom"] is None:
        raise ParameterError("buildcell: volume_per_atom is needed (Angstrom^3 per atom, a "
                             "number or a range [low, high])")
    composition = params["composition"]
    if composition is None:  # taken from each configuration; check the rest on a stand-in
        named = set()
        if isinstance(params["min_separation"], dict):
            for key in params["min_separation"]:
                if key != "default":
                    named.update(key.split("-"))
        composition = {e: 1 for e in sorted(named)} or {"H": 1}
    try:
        cell_input(composition, volume_per_atom=params["volume_per_atom"],
                   n_formula_units=params["n_formula_units"],
                   min_separation=params["min_separation"],
                   symmetry_operations=params["symmetry_operations"], extra=params["extra"])
    except ValueError as err:
        raise ParameterError(f"buildcell: {err}") from None
    for name in ("keep_files",):
        if not isinstance(params[name], bool):
            raise ParameterError(f"buildcell: {name} must be true or false, got "
                                 f"{params[name]!r}")


def run_directory(index: int) -> tuple[Path, Path]:
    """(root, a fresh private run directory for item *index*) for the running operation."""
    from wflp.engine import current_run

    ctx = current_run()
    if ctx is not None and ctx.outputs:
        first = Path(ctx.outputs[0])
        beside = Path(ctx.stage).parent if ctx.stage else first.parent
        root = beside / f"{first.name}{RUNDIRS_SUFFIX}"
    elif ctx is not None:
        root = Path(DEFAULT_ROOT).absolute() / f"buildcell-{ctx.run_id}"
    else:
        base = private_dir(Path(DEFAULT_ROOT).absolute())
        root = Path(tempfile.mkdtemp(prefix="buildcell-", dir=base))
    private_dir(root)
    return root, fresh_dir(root / f"buildcell-{index:06d}")


def _tail(path: Path, n: int = TAIL) -> str:
    lines = [x.strip() for x in tail(path, n=20) if x.strip()][-n:]
    return " | ".join(lines)


def run_buildcell(text: str, argv: list[str], rundir: Path, timeout: float) -> str:
    """Run buildcell on *text* in *rundir*; its stdout (the structure). BuildcellError if it
    cannot run, fails, or runs past *timeout*; the program is killed on any interruption."""
    (rundir / INPUT_FILE).write_text(text)
    with open(rundir / INPUT_FILE, "rb") as stdin, open(rundir / OUTPUT_FILE, "wb") as out, \
            open(rundir / STDERR_FILE, "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=rundir, stdin=stdin, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as error:
            raise BuildcellError(
                f"buildcell: cannot run {argv[0]!r} ({error.strerror or error}); install AIRSS "
                "(https://www.mtg.msm.cam.ac.uk/Codes/AIRSS) or point command= at buildcell; "
                f"the input is kept in {rundir}", str(rundir)) from None
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise BuildcellError(
                f"buildcell: no structure within {timeout:g} s (it keeps trying when the "
                "constraints cannot be met: loosen min_separation, raise volume_per_atom, or "
                f"raise timeout); its files are kept in {rundir}", str(rundir)) from None
        except BaseException:
            _kill(proc)
            raise
    if status != 0:
        said = _tail(rundir / STDERR_FILE) or "no message on stderr"
        raise BuildcellError(f"buildcell exited with status {status}: {said}; its files are "
                             f"kept in {rundir}", str(rundir))
    return (rundir / OUTPUT_FILE).read_text(errors="replace")


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


@operation("buildcell", version="1", check=_check, describe={"command": describe_command})
def buildcell(item: Any, composition: Any = None, volume_per_atom: Any = None,
              n_formula_units: Any = 1, min_separation: Any = None,
              symmetry_operations: Any = None, extra: Any = "", command: Any = "buildcell",
              timeout: float = 60.0, keep_files: bool = False,
              config_type: Optional[str] = "buildcell", rng: Any = None,
              index: Any = None) -> Atoms:
    """One random structure from buildcell for this item (see the module docstring)."""
    if composition is None:
        if not isinstance(item, Atoms):
            raise ValueError("buildcell: composition= is needed, or give configurations whose "
                             "composition each structure takes")
        composition = item
    counts = composition_counts(composition)
    seed = int(rng.integers(1, MAX_SEED))
    text = cell_input(counts, volume_per_atom=volume_per_atom, n_formula_units=n_formula_units,
                      min_separation=min_separation, symmetry_operations=symmetry_operations,
                      extra=extra, seed=seed)
    root, rundir = run_directory(int(index))
    output = run_buildcell(text, command_argv(command), rundir, float(timeout))
    try:
        atoms = read_cell(output)
    except CellFileError as err:
        raise BuildcellError(f"buildcell wrote no structure wflp can read ({err}): "
                             f"{_tail(rundir / OUTPUT_FILE) or 'its output is empty'}; its "
                             f"files are kept in {rundir}", str(rundir)) from None
    wanted = set(counts)
    if set(atoms.get_chemical_symbols()) - wanted:
        raise BuildcellError(f"buildcell made a structure with elements "
                             f"{sorted(set(atoms.get_chemical_symbols()))}, not those of "
                             f"{sorted(wanted)}; its files are kept in {rundir}", str(rundir))
    if config_type is not None:
        atoms.info["config_type"] = config_type
    atoms.info["buildcell_seed"] = seed
    if not keep_files:
        shutil.rmtree(rundir, ignore_errors=True)
        for folder in (root, root.parent):  # the last one out removes empty roots
            if folder.name.endswith(RUNDIRS_SUFFIX) or folder == Path(DEFAULT_ROOT).absolute() \
                    or folder == root:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
    return atoms


__all__ = ["BuildcellError", "buildcell", "command_argv", "run_buildcell", "run_directory"]
