"""The "castep" calculator: CASTEP through ASE's Castep calculator, in wflp's run directories.

ASE's ``Castep`` writes ``castep.cell`` and ``castep.param`` and reads ``castep.castep``;
wflp builds a fresh one for every calculation in its own run directory (see
wflp.calculators.fileio) and adds what ASE leaves out:

- ASE ignores CASTEP's exit status and its SCF warnings ("max. SCF cycles performed but
  system has not reached the groundstate"): both are failures here;
- without a ``castep_keywords.json`` (made by running CASTEP's help) ASE drops every
  keyword argument with a warning; here keywords go to the .param or .cell file by name
  (and ``param={...}`` / ``cell={...}`` put them there explicitly), and ASE is never
  asked to build that file (which runs CASTEP in the current directory);
- ASE renames an existing directory to ``*.bak-<date>`` and creates its own with mode
  0775; here the run directory is wflp's private one.
"""

from __future__ import annotations

import copy
import glob
import os
import re
import shlex
from pathlib import Path
from typing import Any, Optional

from wflp.calculators.fileio import CodeSpec, FileCalculator, folder_sha256, tail
from wflp.errors import ParameterError

SEED = "castep"
# keywords of the .cell file (CASTEP's cell keywords; everything else is a .param keyword)
CELL_KEYWORDS = re.compile(
    r"^(lattice_|positions_|kpoint|kpoints_|spectral_kpoint|bs_kpoint|phonon_kpoint|"
    r"phonon_fine_kpoint|optics_kpoint|magres_kpoint|elnes_kpoint|supercell_kpoint|"
    r"symmetry_|snap_to_symmetry|fix_all_cell$|fix_all_ions$|fix_com$|fix_vol$|"
    r"cell_constraints|ionic_constraints|nonlinear_constraints|external_|species_|"
    r"hubbard_|quantisation_axis|ionic_velocities|sedc_custom_params)")
NOT_CONVERGED = re.compile(r"max\. SCF cycles performed but system has not reached the "
                           r"groundstate|electronic minimisation did not converge", re.I)
KEYWORDS_FILES = ("~/.ase/castep_keywords.json", "~/.config/ase/castep_keywords.json")
SPEC = CodeSpec(
    code="castep", default_command="castep.serial", main_outputs=("*.castep",),
    output_file=f"{SEED}.castep", stdout_file=f"{SEED}.stdout", stderr_file=f"{SEED}.stderr",
    needs_cell=True, converged_pattern=re.compile(r"^Final energy"),
    not_converged_pattern=NOT_CONVERGED,
    error_patterns=(NOT_CONVERGED, re.compile(r"error", re.I)),
    version_args=("--version",), version_pattern=r"CASTEP version:?\s*([0-9][0-9.]*)",
    reserved=("directory", "label", "castep_command"))


def has_keywords_file() -> bool:
    """Whether ASE can find a castep_keywords.json in the user's ASE folders."""
    return any(os.path.exists(os.path.expanduser(p)) for p in KEYWORDS_FILES)


class CastepCalculator(FileCalculator):
    """CASTEP, one private run directory per calculation.

    castep_pp_path: the pseudopotential folder (default ``$PSPOT_DIR`` or
    ``$CASTEP_PP_PATH``, read, never set; without one CASTEP generates its pseudopotentials
    on the fly). command / command_gamma: how to run CASTEP (default ``castep.serial``, or
    ``WFLP_CASTEP_COMMAND`` / ``WFLP_CASTEP_COMMAND_GAMMA``), MPI launcher included; the
    gamma one runs non-periodic structures, on a gamma-centred 1x1x1 grid. param / cell:
    keywords for the .param and .cell files. Every other keyword argument is passed as
    ASE's ``Castep`` takes it (``kpts``, ``xc``, ``ecut``, ``cut_off_energy``,
    ``species_pot`` ...), sorted into .param or .cell by name when ASE has no keyword file.
    keep, env, rundir_root, scratch: see wflp.calculators.fileio.
    """

    spec = SPEC

    def __init__(self, *, castep_pp_path: Optional[str] = None, param: Optional[dict] = None,
                 cell: Optional[dict] = None, keyword_tolerance: Optional[int] = None,
                 **kwargs: Any):
        for name, value in (("param", param), ("cell", cell)):
            if value is not None and not isinstance(value, dict):
                raise ParameterError(f"castep: {name} must be a table of {name} keywords, "
                                     f"e.g. {{'cut_off_energy': 300}}, got {value!r}")
        if keyword_tolerance is not None and keyword_tolerance not in (0, 1, 2, 3):
            raise ParameterError(f"castep: keyword_tolerance must be 0, 1, 2 or 3, got "
                                 f"{keyword_tolerance!r}")
        super().__init__(**kwargs)
        self.param = dict(param or {})
        self.cell = dict(cell or {})
        self.keyword_tolerance = keyword_tolerance
        self.castep_pp_path = self.setting_folder("castep_pp_path", castep_pp_path,
                                                  ["PSPOT_DIR", "CASTEP_PP_PATH"])

    def make_calculator(self, atoms: Any, properties: list, workdir: Path, command: str) -> Any:
        from ase.calculators.castep import Castep

        kwargs = copy.deepcopy(self.parameters)
        cell_kw = copy.deepcopy(self.cell)
        if self.is_gamma(atoms):      # a molecule in a box: the gamma point only
            for key in [k for k in kwargs if k.lower().startswith(("kpts", "kpoint"))]:
                kwargs.pop(key)
            for key in [k for k in cell_kw if k.lower().startswith("kpoint")]:
                cell_kw.pop(key)
            kwargs["kpts"] = {"size": (1, 1, 1), "gamma": True}
        tolerance = self.keyword_tolerance
        if tolerance is None:
            tolerance = 1 if has_keywords_file() else 3
        calc = Castep(directory=str(workdir), label=SEED, castep_command=command,
                      castep_pp_path=self.castep_pp_path or str(workdir),
                      keyword_tolerance=tolerance)
        calc._rename_existing_dir = False   # wflp's run directory, not a *.bak-<date> copy
        calc.atoms = atoms
        for key, value in kwargs.items():
            self._set(calc, key, value)
        for key, value in self.param.items():
            setattr(calc.param, key.lower(), value)
        for key, value in cell_kw.items():
            setattr(calc.cell, key.lower(), value)
        if calc.param.task.value is None:
            calc.param.task = "SinglePoint"
        if "stress" in properties:
            calc.param.calculate_stress = True
        return calc

    @staticmethod
    def _set(calc: Any, key: str, value: Any) -> None:
        """A keyword as ASE's Castep takes it, or by name to .cell or .param."""
        name = key.lower()
        if name == "species_pot" and isinstance(value, dict):   # {"Cu": "Cu_00.usp"}
            value = list(value.items())     # ASE's form: [("Cu", "Cu_00.usp")]
        if name == "kpts":
            calc.set_kpts(value)
        elif name == "bandpath":
            calc.set_bandpath(value)
        elif name in calc.param._options or name in calc.cell._options:
            setattr(calc, name, value)
        elif name == "xc":
            calc.param.xc_functional = value
        elif name == "ecut":
            calc.param.cut_off_energy = value
        elif CELL_KEYWORDS.match(name):
            setattr(calc.cell, name, value)
        else:
            setattr(calc.param, name, value)

    def run(self, calc: Any, atoms: Any, properties: list, workdir: Path) -> dict:
        atoms.calc = calc             # ASE writes the .cell keywords of atoms.calc only
        calc.prepare_input_files(atoms)
        returncode = self.execute(shlex.split(calc._castep_command) + [calc._seed], workdir,
                                  stdout=self.spec.stdout_file, stderr=self.spec.stderr_file)
        if returncode:                # ASE would go on reading
            raise self.failure(f"the program exited with status {returncode}")
        errors = self._error_files(workdir)
        if errors:
            raise self.failure(f"CASTEP wrote {errors[0][0]}: {errors[0][1]}")
        calc.read(str(workdir / f"{calc._seed}.castep"))
        return dict(calc.results)

    @staticmethod
    def _error_files(workdir: Path) -> list:
        """(name, first line) of every non-empty ``<seed>.NNNN.err`` file."""
        out = []
        for path in sorted(glob.glob(str(workdir / "*.err"))):
            lines = [x.strip() for x in Path(path).read_text(errors="replace").splitlines()
                     if x.strip() and "trace stack" not in x.lower()]
            if lines:
                error = next((x for x in lines if "error" in x.lower()), lines[-1])
                out.append((os.path.basename(path), error))
        return out

    def diagnose(self, workdir: Path) -> Optional[str]:
        # the <seed>.NNNN.err files first, then the .castep file alone (not its stderr)
        errors = self._error_files(workdir)
        if errors:
            return f"{errors[0][0]}: {errors[0][1]}"
        return self.find_error(tail(workdir / self.spec.output_file, 200, 1 << 20))

    def input_files(self) -> dict:
        if not self.castep_pp_path:
            return {"pseudopotentials": "generated on the fly"}
        return {"castep_pp_path": self.castep_pp_path,
                "pseudopotentials": folder_sha256(self.castep_pp_path) or "missing"}

    def __wflp_provenance__(self) -> dict:
        return {**super().__wflp_provenance__(), "param": dict(self.param),
                "cell": dict(self.cell), "keyword_tolerance": self.keyword_tolerance}
