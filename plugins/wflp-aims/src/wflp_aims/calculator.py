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
import re
from pathlib import Path
from typing import Any, Optional

from wflp.calculators.fileio import CodeSpec, FileCalculator, folder_sha256
from wflp.errors import ParameterError

K_GRID_KEYS = ("k_grid", "kpts", "k_grid_density")
NOT_CONVERGED = re.compile(r"SELF-CONSISTENCY CYCLE DID NOT CONVERGE|SCF cycle not converged",
                           re.I)
# what FHI-aims says when it fails, most telling first
ERROR_LINES = [re.compile(p, re.I) for p in (r"\* Error|\berror\b", r"not converge",
                                             r"abort")]
SPEC = CodeSpec(
    code="aims", default_command="aims.x", runner="template", main_outputs=("aims.out",),
    output_file="aims.out", stderr_file="aims.err",
    converged_pattern=re.compile(re.escape("Self-consistency cycle converged.")),
    not_converged_pattern=NOT_CONVERGED, error_patterns=tuple(ERROR_LINES),
    version_pattern=r"FHI-aims version\s*:\s*(\S+)", reserved=("directory", "profile"))


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

    spec = SPEC

    def __init__(self, *, species_dir: Optional[str] = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.species_dir = self.setting_folder("species_dir", species_dir, ["AIMS_SPECIES_DIR"])
        if self.species_dir is None:
            raise ParameterError("aims: no species defaults: pass species_dir= (e.g. "
                                 ".../species_defaults/defaults_2020/light) or set "
                                 "AIMS_SPECIES_DIR")

    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        from ase.calculators.aims import Aims, AimsProfile

        params = copy.deepcopy(self.parameters)
        if self.is_gamma(atoms):      # a molecule: no lattice vectors, so no k-grid
            for key in K_GRID_KEYS:
                params.pop(key, None)
        params["species_dir"] = self.species_dir
        profile = AimsProfile(command=command, default_species_directory=self.species_dir)
        return Aims(profile=profile, directory=str(workdir), **params)

    def input_files(self) -> dict:
        return {"species_dir": self.species_dir,
                "species": folder_sha256(self.species_dir, ["*_default"]) or "missing"}
