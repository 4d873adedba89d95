"""The "aims" calculator: FHI-aims through ASE's Aims calculator, in wflp's run directories.

ASE's ``Aims`` writes ``geometry.in`` and ``control.in`` (with the species defaults
copied in) and reads ``aims.out``; wflp builds a fresh one for every calculation in its
own run directory (see wflp.calculators.fileio), leaves the k-grid out for
non-periodic structures, runs FHI-aims itself (exit status and stderr known) and refuses
results that FHI-aims itself flags: "SELF-CONSISTENCY CYCLE DID NOT CONVERGE" (it then
goes on, says "Have a nice day." and ASE reads the numbers).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from pathlib import Path
from typing import Any, Optional

from wflp.calculators.fileio import (
    FileCalculator,
    env_prefix,
    folder_sha256,
    program_version,
)
from wflp.errors import ParameterError

K_GRID_KEYS = ("k_grid", "kpts", "k_grid_density")
NOT_CONVERGED = re.compile(r"SELF-CONSISTENCY CYCLE DID NOT CONVERGE|SCF cycle not converged",
                           re.I)
# what FHI-aims says when it fails, most telling first
ERROR_LINES = [re.compile(p, re.I) for p in (r"\* Error|\berror\b", r"not converge",
                                             r"abort")]


class AimsCalculator(FileCalculator):
    """FHI-aims, one private run directory per calculation.

    species_dir: the species defaults folder (e.g. ``.../species_defaults/defaults_2020/
    light``; default ``$AIMS_SPECIES_DIR``, read, never set). command: how to run
    FHI-aims, MPI launcher included (default ``aims.x``, or ``WFLP_AIMS_COMMAND``).
    Every other keyword argument goes to ASE's ``Aims`` unchanged (``xc``, ``k_grid``,
    ``kpts``, ``relativistic``, ``sc_accuracy_rho``, ``tier`` ...); ``k_grid``, ``kpts``
    and ``k_grid_density`` are left out for non-periodic structures. keep, env,
    rundir_root, scratch: see wflp.calculators.fileio.
    """

    code = "aims"
    default_command = "aims.x"
    main_outputs = ("aims.out",)
    output_file = "aims.out"
    stderr_file = "aims.err"
    converged_pattern = re.compile(re.escape("Self-consistency cycle converged."))
    not_converged_pattern = NOT_CONVERGED
    error_patterns = tuple(ERROR_LINES)
    error_output_lines = 60
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, *, species_dir: Optional[str] = None, command: Optional[str] = None,
                 command_gamma: Optional[str] = None, env: Optional[dict] = None,
                 keep: Any = None, rundir_root: Optional[str] = None,
                 scratch: Optional[str] = None, **kwargs: Any):
        for reserved in ("directory", "profile"):
            if reserved in kwargs:
                raise ParameterError(f"aims: {reserved}= is set by wflp (command=, env=, "
                                     "rundir_root=, scratch=); leave it out")
        super().__init__(command=command, command_gamma=command_gamma, env=env, keep=keep,
                         rundir_root=rundir_root, scratch=scratch, **kwargs)
        if species_dir is None:
            species_dir = os.environ.get("AIMS_SPECIES_DIR")
        if species_dir is None:
            raise ParameterError("aims: no species defaults: pass species_dir= (e.g. "
                                 ".../species_defaults/defaults_2020/light) or set "
                                 "AIMS_SPECIES_DIR")
        if not isinstance(species_dir, (str, os.PathLike)):
            raise ParameterError(f"aims: species_dir must be a folder, got {species_dir!r}")
        self.species_dir = os.path.abspath(os.path.expanduser(os.fspath(species_dir)))

    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        from ase.calculators.aims import Aims, AimsProfile

        params = copy.deepcopy(self.parameters)
        if self.is_gamma(atoms):      # a molecule: no lattice vectors, so no k-grid
            for key in K_GRID_KEYS:
                params.pop(key, None)
        params["species_dir"] = self.species_dir
        profile = AimsProfile(command=command, default_species_directory=self.species_dir)
        return Aims(profile=profile, directory=str(workdir), **params)

    def run(self, calc: Any, atoms: Any, properties: list, workdir: Path) -> dict:
        return self.run_template(calc, atoms, properties, workdir)

    def version(self) -> Optional[str]:
        return program_version(env_prefix(self.env) + shlex.split(self.command),
                               r"FHI-aims version\s*:\s*(\S+)")

    def input_files(self) -> dict:
        return {"species_dir": self.species_dir,
                "species": folder_sha256(self.species_dir, ["*_default"]) or "missing"}
