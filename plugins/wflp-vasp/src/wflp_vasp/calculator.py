"""The "vasp" calculator: VASP through ASE's Vasp calculator, in wflp's run directories.

ASE's ``Vasp`` writes INCAR, POSCAR, KPOINTS and POTCAR and reads vasprun.xml and
OUTCAR; wflp builds a fresh one for every calculation in its own run directory (see
wflp.calculators.fileio), runs the program itself (so the exit status and stderr are
known), refuses results of an unconverged SCF (ASE only records ``converged``), takes
non-periodic structures to a gamma-centred 1x1x1 mesh with the gamma-only executable,
and finds POTCARs under ``pp_path`` without changing ``os.environ``.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from pathlib import Path
from typing import Any, Optional

from wflp.calculators.fileio import CodeSpec, FileCalculator, folder_sha256, tail

SPEC = CodeSpec(
    code="vasp", default_command="vasp_std", default_command_gamma="vasp_gam",
    main_outputs=("OUTCAR", "vasprun.xml"), output_file="OUTCAR", stdout_file="vasp.out",
    stderr_file="vasp.err", needs_cell=True,
    reserved=("directory", "label", "txt", "restart", "atoms"))
ERROR_LINE = re.compile(r"VERY BAD NEWS|ERROR|Error|forrtl|BUG|not found|Segmentation")


def potcar_folder(calc: Any, pp_path: Optional[str]) -> Optional[str]:
    """The folder of POTCARs ASE's Vasp *calc* would read (its ``pp`` setting resolved as
    ASE does: "lda"/"pbe" aliases, ``pp_version``), under *pp_path*; None if unknown."""
    params = calc.input_params
    pp = params.get("pp")
    if pp is None:
        gga = calc.string_params.get("gga")
        pp = "lda" if gga is None else ("pbe" if gga.lower() == "pe" else None)
    if pp is None:
        return None
    version = params.get("pp_version") or ""
    aliases = {"lda": f"potpaw_LDA.{version}" if version else "potpaw",
               "pbe": f"potpaw_PBE.{version}" if version else "potpaw_PBE"}
    folder = aliases.get(pp.lower(), pp)
    if os.path.isabs(folder) or pp_path is None:
        return folder
    return os.path.join(pp_path, folder)


class VaspCalculator(FileCalculator):
    """VASP, one private run directory per calculation.

    pp_path: the folder holding ``potpaw_PBE/`` etc. (default ``$VASP_PP_PATH``, read,
    never set). command / command_gamma: how to run VASP (default ``vasp_std`` and
    ``vasp_gam``, or ``WFLP_VASP_COMMAND`` / ``WFLP_VASP_COMMAND_GAMMA``), MPI launcher
    included; the gamma one runs non-periodic structures. Every other keyword argument
    goes to ASE's ``Vasp`` unchanged (``xc``, ``encut``, ``kpts``, ``ediff``, ``nelm``,
    ``setups``, ``pp`` ...). keep, env, rundir_root, scratch: see
    wflp.calculators.fileio.
    """

    spec = SPEC

    def __init__(self, *, pp_path: Optional[str] = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.pp_path = self.setting_folder("pp_path", pp_path, ["VASP_PP_PATH"])

    def _ase_calc(self, params: dict, workdir: Optional[Path], command: Optional[str]) -> Any:
        from ase.calculators.vasp import Vasp

        calc = Vasp(directory=str(workdir) if workdir else ".", command=command,
                    txt=self.spec.stdout_file, **params)
        folder = potcar_folder(calc, self.pp_path)
        if folder is not None:
            calc.input_params["pp"] = os.path.abspath(folder)  # ASE joins it as it is
        return calc

    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        params = copy.deepcopy(self.parameters)
        if self.is_gamma(atoms):        # a molecule or cluster: the gamma point only
            params["kpts"] = (1, 1, 1)
            params["gamma"] = True
            params.pop("kspacing", None)
        return self._ase_calc(params, workdir, command)

    def run(self, calc: Any, atoms: Any, properties: list, workdir: Path) -> dict:
        from ase.calculators.calculator import Calculator, all_changes

        Calculator.calculate(calc, atoms, list(properties), list(all_changes))
        calc.clear_results()
        calc.write_input(calc.atoms, list(properties), list(all_changes))
        self.execute(shlex.split(calc.command), workdir, stdout=self.spec.stdout_file,
                     stderr=self.spec.stderr_file)
        return self.read(calc, atoms)

    @staticmethod
    def read(calc: Any, atoms: Any) -> dict:
        """Results from the vasprun.xml and OUTCAR in calc's directory (ASE's reader)."""
        calc.update_atoms(atoms)
        calc.read_results()
        return dict(calc.results)

    def scf_converged(self, workdir: Path, calc: Any = None) -> Optional[bool]:
        path = workdir / "OUTCAR"
        if not path.exists():
            return None
        if calc is None:
            from ase.calculators.vasp import Vasp

            calc = Vasp(directory=str(workdir))
        with open(path, errors="replace") as fd:
            return calc.read_convergence(lines=fd.readlines())

    def diagnose(self, workdir: Path) -> Optional[str]:
        loops = [line.strip(" -\n") for line in tail(workdir / "OUTCAR", 400, 1 << 20)
                 if "aborting loop" in line and "reached" in line]
        if loops and "not reached" in loops[-1]:
            return loops[-1]
        for name in (self.spec.stdout_file, self.spec.stderr_file, "OUTCAR"):
            found = [line.strip(" |\t") for line in tail(workdir / name, 60)
                     if ERROR_LINE.search(line)]
            if found:
                return found[-1]
        return None

    def input_files(self) -> dict:
        try:
            calc = self._ase_calc(copy.deepcopy(self.parameters), None, None)
        except Exception as err:  # a bad parameter: the calculation will say so
            return {"potcars": f"unknown ({type(err).__name__}: {err})"}
        folder = potcar_folder(calc, self.pp_path)
        if folder is None:
            return {"potcars": "unknown"}
        return {"potcar_folder": os.path.abspath(folder),
                "potcars": folder_sha256(folder, ["*/POTCAR", "*/POTCAR.Z"]) or "missing"}

    def __wflp_provenance__(self) -> dict:
        return {**super().__wflp_provenance__(), "pp_path": self.pp_path}
