"""The "orca" calculator: ORCA through ASE's ORCA calculator, in wflp's run directories.

ASE's ``ORCA`` writes ``orca.inp`` and reads ``orca.out`` and ``orca.engrad``; wflp builds
a fresh one for every calculation in its own run directory (see
wflp.calculators.fileio), asks for the gradient (``EnGrad``) when forces are wanted,
runs ORCA itself (exit status and stderr known), and refuses what ASE lets through: an
energy that is NaN (ORCA's "Wavefunction not fully converged") or missing, and an SCF
that did not converge.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
from pathlib import Path
from typing import Any, Optional

from wflp.calculators.fileio import CodeSpec, FileCalculator, env_prefix, program_version
from wflp.errors import ParameterError

DEFAULTS = {"charge": 0, "mult": 1, "orcasimpleinput": "B3LYP def2-TZVP",
            "orcablocks": "%pal nprocs 1 end"}          # ASE's own defaults
# what ORCA says when it fails, most telling first
ERROR_LINES = [re.compile(p) for p in (r"error termination", r"INPUT ERROR",
                                       r"SCF NOT CONVERGED|not fully converged",
                                       r"aborting the run", r"ERROR|[Ee]rror")]
SPEC = CodeSpec(
    code="orca", default_command="orca", runner="template",
    main_outputs=("orca.out", "orca.engrad"), output_file="orca.out", stderr_file="orca.err",
    molecular_only=True, properties=("energy", "free_energy", "forces"),
    converged_pattern=re.compile(r"SCF CONVERGED AFTER"),
    not_converged_pattern=re.compile(r"SCF NOT CONVERGED|Wavefunction not fully converged"),
    error_patterns=tuple(ERROR_LINES), error_output_lines=80,
    reserved=("directory", "profile"))


def absolute_program(command: str) -> str:
    """The command with the ORCA executable as an absolute path (ORCA needs it to start
    its own parallel processes); words before it (``env A=1``) are kept."""
    words = shlex.split(command)
    i = 0
    if words and words[0] == "env":
        i = 1
        while i < len(words) and "=" in words[i] and not words[i].startswith("/"):
            i += 1
    if i < len(words) and "/" not in words[i]:
        found = shutil.which(words[i])
        if found:
            words[i] = found
    return shlex.join(words)


class OrcaCalculator(FileCalculator):
    """ORCA, one private run directory per calculation (molecules and clusters only).

    command: how to run ORCA (default ``orca``, or ``WFLP_ORCA_COMMAND``); it is made an
    absolute path when found on PATH, as ORCA's parallel runs need. Every other keyword
    argument goes to ASE's ``ORCA`` unchanged: ``charge``, ``mult``, ``orcasimpleinput``
    (default ``"B3LYP def2-TZVP"``), ``orcablocks`` (default ``"%pal nprocs 1 end"``).
    keep, env, rundir_root, scratch: see wflp.calculators.fileio.
    """

    spec = SPEC

    def __init__(self, **kwargs: Any):
        for key in ("orcasimpleinput", "orcablocks"):
            if key in kwargs and not isinstance(kwargs[key], str):
                raise ParameterError(f"orca: {key} must be a string such as "
                                     f"{DEFAULTS[key]!r}, got {kwargs[key]!r}")
        super().__init__(**kwargs)

    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        from ase.calculators.orca import ORCA, OrcaProfile

        params = {**DEFAULTS, **copy.deepcopy(self.parameters)}
        if "forces" in properties and "engrad" not in params["orcasimpleinput"].lower():
            params["orcasimpleinput"] += " EnGrad"
        return ORCA(profile=OrcaProfile(command=absolute_program(command)),
                    directory=str(workdir), **params)

    def version(self) -> Optional[str]:
        argv = env_prefix(self.env) + shlex.split(absolute_program(self.command))
        return program_version(argv + ["wflp-version-query.inp"], r"Program Version (\S+)")
