"""The "espresso" calculator: Quantum ESPRESSO pw.x through ASE, in wflp's run directories.

ASE's ``Espresso`` is built afresh for every calculation inside its own run directory
(see wflp.calculators.fileio); this module only says what is particular to pw.x: its
input (forces and stress switched on when asked for, ``K_POINTS gamma`` for non-periodic
structures, the pseudopotential folder, a private ``outdir``), its output files, how it
reports errors and non-convergence, its version and the pseudopotentials it reads.
"""

from __future__ import annotations

import copy
import os
import shlex
from pathlib import Path
from typing import Any, Optional

from wflp.calculators.fileio import (
    FileCalculator,
    env_prefix,
    file_sha256,
    program_version,
    tail,
)
from wflp.errors import ParameterError

# keyword arguments of ASE's Espresso that are not pw.x namelist variables
ASE_KEYWORDS = ("input_data", "pseudopotentials", "kspacing", "kpts", "koffset",
                "crystal_coordinates", "additional_cards")


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

    code = "espresso"
    default_command = "pw.x"
    main_outputs = ("*.pwo",)
    output_file = "espresso.pwo"
    stderr_file = "espresso.err"
    needs_cell = True
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, *, pseudo_dir: Optional[str] = None, command: Optional[str] = None,
                 command_gamma: Optional[str] = None, env: Optional[dict] = None,
                 keep: Any = None, rundir_root: Optional[str] = None,
                 scratch: Optional[str] = None, **kwargs: Any):
        super().__init__(command=command, command_gamma=command_gamma, env=env, keep=keep,
                         rundir_root=rundir_root, scratch=scratch, **kwargs)
        input_data = kwargs.get("input_data") or {}
        if not isinstance(input_data, dict):
            raise ParameterError(f"espresso: input_data must be a (flat or nested) table of "
                                 f"pw.x variables, got {input_data!r}")
        given = dict(_flat_items(input_data))
        given.update((k.lower(), v) for k, v in kwargs.items() if k not in ASE_KEYWORDS)
        if "scf_must_converge" in given and not given["scf_must_converge"]:
            raise ParameterError(
                "espresso: scf_must_converge=False is refused: pw.x would report the energy "
                "and forces of an unconverged SCF as results; raise electron_maxstep or "
                "lower mixing_beta instead")
        pseudos = kwargs.get("pseudopotentials")
        if pseudos is not None and not (isinstance(pseudos, dict) and all(
                isinstance(v, str) for v in pseudos.values())):
            raise ParameterError(f"espresso: pseudopotentials must map elements to file "
                                 f"names, e.g. {{'Si': 'Si.pz-vbc.UPF'}}, got {pseudos!r}")
        if pseudo_dir is None:
            pseudo_dir = given.get("pseudo_dir") or os.environ.get("ESPRESSO_PSEUDO") or \
                os.path.join(os.path.expanduser("~"), "espresso", "pseudo")
        if not isinstance(pseudo_dir, (str, os.PathLike)):
            raise ParameterError(f"espresso: pseudo_dir must be a folder, got {pseudo_dir!r}")
        self.pseudo_dir = os.path.abspath(os.path.expanduser(os.fspath(pseudo_dir)))

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

    def run(self, calc: Any, atoms: Any, properties: list, workdir: Path) -> dict:
        return self.run_template(calc, atoms, properties, workdir)

    def scf_converged(self, workdir: Path, calc: Any = None) -> Optional[bool]:
        # not FileCalculator's scan: here the last SCF's verdict wins, even "converged"
        # after "NOT achieved"
        path = workdir / self.output_file
        if not path.exists():
            return None
        state = None
        with open(path, errors="replace") as fd:
            for line in fd:
                if "convergence has been achieved" in line:
                    state = True
                elif "convergence NOT achieved" in line:
                    state = False
        return state

    def diagnose(self, workdir: Path) -> Optional[str]:
        lines = tail(workdir / self.output_file, 200, max_bytes=1 << 20)
        for i, line in enumerate(lines):
            if "Error in routine" in line:
                detail = next((x.strip() for x in lines[i + 1:] if x.strip()), "")
                return f"{line.strip()} {detail}".strip()
        for line in lines:
            if "convergence NOT achieved" in line:
                return line.strip()
        return None

    def version(self) -> Optional[str]:
        return program_version(env_prefix(self.env) + shlex.split(self.command),
                               r"Program PWSCF\s+v\.(\S+)")

    def input_files(self) -> dict:
        files = {}
        for element, name in sorted((self.parameters.get("pseudopotentials") or {}).items()):
            files[f"{element}:{name}"] = file_sha256(os.path.join(self.pseudo_dir, name)) \
                or "missing"
        return files

    def __wflp_provenance__(self) -> dict:
        return {**super().__wflp_provenance__(), "pseudo_dir": self.pseudo_dir}

