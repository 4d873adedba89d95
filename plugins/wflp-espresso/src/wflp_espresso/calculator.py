"""The "espresso" calculator: Quantum ESPRESSO pw.x through ASE, in wflp's run directories.

ASE's ``Espresso`` is built afresh for every calculation inside its own run directory
(see wflp.calculators.fileio); this module only says what is particular to pw.x: its
files, how it reports convergence and errors, and how its version is asked (the
``CodeSpec``), and its input (forces and stress switched on when asked for,
``K_POINTS gamma`` for non-periodic structures, the pseudopotential folder, a private
``outdir``) and the pseudopotentials it reads.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Optional

from wflp.calculators.fileio import CodeSpec, FileCalculator, file_sha256, tail
from wflp.errors import ParameterError

# keyword arguments of ASE's Espresso that are not pw.x namelist variables
ASE_KEYWORDS = ("input_data", "pseudopotentials", "kspacing", "kpts", "koffset",
                "crystal_coordinates", "additional_cards")

SPEC = CodeSpec(
    code="espresso", default_command="pw.x", runner="template", main_outputs=("*.pwo",),
    output_file="espresso.pwo", stderr_file="espresso.err", needs_cell=True,
    converged_pattern=re.compile("convergence has been achieved"),
    not_converged_pattern=re.compile("convergence NOT achieved"),
    last_scf_wins=True,   # each SCF of a relaxation has its verdict; the last one counts
    version_pattern=r"Program PWSCF\s+v\.(\S+)", reserved=("directory", "profile"))


def _flat_items(value: Any):
    """(key, value) of a flat or nested namelist dict, keys lower case."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict):
                yield from _flat_items(item)
            else:
                yield str(key).lower(), item


class EspressoCalculator(FileCalculator):
    """Quantum ESPRESSO pw.x, one private run directory per calculation.

    pseudo_dir: the folder of the pseudopotential files (default: ``input_data``'s
    ``control.pseudo_dir``, else ``$ESPRESSO_PSEUDO``, else ``~/espresso/pseudo``, pw.x's
    own default). command / command_gamma: how to run pw.x (default ``pw.x``, or
    ``WFLP_ESPRESSO_COMMAND`` / ``WFLP_ESPRESSO_COMMAND_GAMMA``), MPI launcher included.
    Every other keyword argument goes to ASE's ``Espresso`` unchanged: ``input_data``,
    ``pseudopotentials``, ``kpts``, ``kspacing``, ``koffset``, or pw.x variables such as
    ``ecutwfc``. keep, env, rundir_root, scratch: see wflp.calculators.fileio.

    ``scf_must_converge=False`` is refused: pw.x would then print energies and forces of
    an unconverged SCF as if they were results.
    """

    spec = SPEC

    def __init__(self, *, pseudo_dir: Optional[str] = None, **kwargs: Any):
        super().__init__(**kwargs)
        input_data = self.parameters.get("input_data") or {}
        if not isinstance(input_data, dict):
            raise ParameterError(f"espresso: input_data must be a (flat or nested) table of "
                                 f"pw.x variables, got {input_data!r}")
        given = dict(_flat_items(input_data))
        given.update((k.lower(), v) for k, v in self.parameters.items()
                     if k not in ASE_KEYWORDS)
        if "scf_must_converge" in given and not given["scf_must_converge"]:
            raise ParameterError(
                "espresso: scf_must_converge=False is refused: pw.x would report the energy "
                "and forces of an unconverged SCF as results; raise electron_maxstep or "
                "lower mixing_beta instead")
        pseudos = self.parameters.get("pseudopotentials")
        if pseudos is not None and not (isinstance(pseudos, dict) and all(
                isinstance(v, str) for v in pseudos.values())):
            raise ParameterError(f"espresso: pseudopotentials must map elements to file "
                                 f"names, e.g. {{'Si': 'Si.pz-vbc.UPF'}}, got {pseudos!r}")
        self.pseudo_dir = self.setting_folder(
            "pseudo_dir", pseudo_dir if pseudo_dir is not None else given.get("pseudo_dir"),
            ["ESPRESSO_PSEUDO"], os.path.join(os.path.expanduser("~"), "espresso", "pseudo"))

    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        from ase.calculators.espresso import Espresso, EspressoProfile
        from ase.io.espresso import Namelist

        params = copy.deepcopy(self.parameters)
        input_data = Namelist(params.pop("input_data", None) or {})
        input_data.to_nested("pw")
        control = input_data["control"]
        control["pseudo_dir"] = self.pseudo_dir
        control.setdefault("outdir", "./")   # never $ESPRESSO_TMPDIR, shared by all runs
        if "forces" in properties:
            control["tprnfor"] = True
        if "stress" in properties:
            control["tstress"] = True
        if self.is_gamma(atoms):
            params["kpts"] = None                 # K_POINTS gamma
            params.pop("kspacing", None)
            params.pop("koffset", None)
        profile = EspressoProfile(command=command, pseudo_dir=self.pseudo_dir)
        return Espresso(profile=profile, directory=str(workdir), input_data=input_data,
                        **params)

    def diagnose(self, workdir: Path) -> Optional[str]:
        # pw.x's "Error in routine" line says where; the next line says what
        lines = tail(workdir / self.spec.output_file, 200, max_bytes=1 << 20)
        for i, line in enumerate(lines):
            if "Error in routine" in line:
                detail = next((x.strip() for x in lines[i + 1:] if x.strip()), "")
                return f"{line.strip()} {detail}".strip()
        return next((x.strip() for x in lines if "convergence NOT achieved" in x), None)

    def input_files(self) -> dict:
        pseudos = sorted((self.parameters.get("pseudopotentials") or {}).items())
        return {f"{element}:{name}": file_sha256(os.path.join(self.pseudo_dir, name))
                or "missing" for element, name in pseudos}

    def __wflp_provenance__(self) -> dict:
        return {**super().__wflp_provenance__(), "pseudo_dir": self.pseudo_dir}
