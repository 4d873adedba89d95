"""CodeSpec: what a file-based code is, declared as data.

A plugin for a file-based code (pw.x, VASP, ORCA ...) says in one frozen
:class:`CodeSpec` how the program is run (default commands, ASE's way or a profile and
a template), which files it writes (kept, quoted in errors), what its output says about
convergence and errors (regular expressions), how to ask its version, and which ASE
keywords wflp sets itself; the one function it writes is the builder of the ASE
calculator (:meth:`wflp.calculators.fileio.FileCalculator.make_calculator`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

import numpy as np

from ..errors import ParameterError

RUNNERS = ("ase", "template")
ALL_PROPERTIES = ("energy", "free_energy", "forces", "stress")


@dataclasses.dataclass(frozen=True)
class CodeSpec:
    """A file-based code, as data (every field optional).

    - ``code``: its name (messages, records, ``WFLP_<CODE>_COMMAND``);
      ``default_command`` / ``default_command_gamma``: how to run it ("" for the
      gamma one: the command);
    - ``runner``: ``"ase"`` lets the ASE calculator write, run and read;
      ``"template"`` runs an ASE profile-and-template calculator (Espresso, ORCA, Aims)
      with wflp's own process handling (exit status, stderr, killed on a time limit);
    - ``main_outputs``: globs kept on success with ``keep="main"``; ``output_file``:
      the main output (its tail goes into errors); ``stdout_file``: the program's
      stdout when it is not ``output_file``; ``stderr_file``;
    - ``needs_cell`` / ``molecular_only``: refuse structures without a cell / periodic
      ones; ``properties``: what it computes;
    - ``converged_pattern`` / ``not_converged_pattern``: compiled regular expressions
      searched in every line of ``output_file``: once "not converged" is seen a later
      "converged" does not undo it, unless ``last_scf_wins`` (each SCF of a relaxation
      has its own verdict and the last one counts);
    - ``error_patterns``: compiled regular expressions, the most telling first, searched
      in the last ``error_output_lines`` lines of ``output_file`` and the last 20 of
      ``stderr_file``;
    - ``version_pattern``: a regular expression whose group 1 is the version in what
      ``command + version_args`` prints ("" : do not ask);
    - ``reserved``: keyword arguments of the ASE calculator that wflp sets itself
      (``directory``, ``profile`` ...), refused with a message;
    - ``result_version``: the version of what the plugin computes (records compare it;
      bump it when a change changes the results).
    """

    code: str = "file"
    default_command: str = ""
    default_command_gamma: str = ""
    runner: str = "ase"
    main_outputs: tuple[str, ...] = ()
    output_file: str = ""
    stdout_file: str = ""
    stderr_file: str = ""
    needs_cell: bool = False
    molecular_only: bool = False
    properties: tuple[str, ...] = ALL_PROPERTIES
    converged_pattern: Optional[re.Pattern[str]] = None
    not_converged_pattern: Optional[re.Pattern[str]] = None
    last_scf_wins: bool = False
    error_patterns: tuple[re.Pattern[str], ...] = ()
    error_output_lines: int = 60
    version_args: tuple[str, ...] = ()
    version_pattern: str = ""
    reserved: tuple[str, ...] = ()
    result_version: str = "1"

    def __post_init__(self) -> None:
        where = f"CodeSpec({self.code!r})"
        if not isinstance(self.code, str) or not self.code:
            raise ParameterError(f"{where}: code must be a name such as 'mycode'")
        if self.runner not in RUNNERS:
            raise ParameterError(f"{where}: runner must be one of {', '.join(RUNNERS)}, "
                                 f"got {self.runner!r}")
        for name in ("main_outputs", "properties", "error_patterns", "version_args",
                     "reserved"):   # lists are welcome; kept as tuples (hashable, frozen)
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "result_version", str(self.result_version))
        for name in ("converged_pattern", "not_converged_pattern"):
            _check_pattern(getattr(self, name), f"{where}: {name}", optional=True)
        for pattern in self.error_patterns:
            _check_pattern(pattern, f"{where}: error_patterns", optional=False)

    def refuse_reserved(self, kwargs: dict[str, Any]) -> None:
        """ParameterError if *kwargs* sets what wflp sets itself (``directory`` ...)."""
        for name in self.reserved:
            if name in kwargs:
                raise ParameterError(
                    f"{self.code}: {name}= is set by wflp (one run directory per calculation; "
                    "command=, env=, keep=, rundir_root=, scratch= say how and where it "
                    "runs); leave it out")

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


def _check_pattern(value: Any, where: str, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, re.Pattern):
        raise ParameterError(f"{where} must be a compiled regular expression "
                             f"(re.compile(...)), got {value!r}")


def is_gamma(atoms: Any) -> bool:
    """Non-periodic structures are computed at the gamma point only."""
    return not bool(np.any(atoms.pbc))


__all__ = ["ALL_PROPERTIES", "RUNNERS", "CodeSpec", "is_gamma"]
