"""The castep plugin, the whole path: ASE writes castep.cell and castep.param, a program
runs in a private run directory, ASE's reader parses castep.castep (atoms sorted back
from CASTEP's species order), results are stored, files kept, failures reported. CASTEP
cannot be installed here: the program is standin_castep.py (Lennard-Jones energies in
CASTEP's output format) unless WFLP_CASTEP_COMMAND points at a real CASTEP (then the
fault tests, which need the stand-in's fault modes, are skipped). ASE's reader is also
checked on the real CASTEP output in ase/test/testdata/castep.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones
from wflp import OutputSpec
from wflp.calculators.fileio import quiet
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate
from wflp.plugins import plugin_report, reset_plugin_manager
from wflp.testing import calculate_in_two_workers, scaled

STANDIN = Path(__file__).parent / "standin_castep.py"
REAL = os.environ.get("WFLP_CASTEP_COMMAND")
COMMAND = REAL or f"{sys.executable} {STANDIN}"
TESTDATA = Path(ase.__file__).parent / "test" / "testdata" / "castep"
needs_standin = pytest.mark.skipif(bool(REAL), reason="fault modes need the stand-in")


def params(**extra):
    out = {"command": COMMAND, "cut_off_energy": 300, "xc": "PBE", "kpts": (2, 2, 2)}
    out.update(extra)
    return out


def cu_cells(n, seed=0, swap=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", "fcc", a=3.6, cubic=True)
        at.positions = np.round(at.positions + rng.normal(0, 0.05, (4, 3)), 6)  # as written
        if swap:
            at[0].symbol = swap       # first here, last in CASTEP's order (by atomic number)
        out.append(at)
    return out


def lj(atoms):
    at = atoms.copy()
    at.calc = LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False)
    return at.get_potential_energy(), at.get_forces(), at.get_stress()


def test_discovered_without_importing_ase_castep():
    reset_plugin_manager()
    [record] = [r for r in plugin_report() if r.distribution == "wflp-castep"]
    assert record.status == "ok", record.error
    assert record.registered == {"calculators": ["castep"]}
    code = ("import sys\nfrom wflp.plugins import get_calculator\nget_calculator('castep')\n"
            "print('ase.calculators.castep' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.stdout.strip() == "False", out.stderr


def test_two_workers_give_the_serial_results_and_lj_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # the in-memory run's ./wflp-rundirs
    configs = cu_cells(6) + cu_cells(2, seed=1, swap="Au")
    ase.io.write(tmp_path / "in.xyz", configs)
    spec = ("castep", [], params())
    par = calculate_in_two_workers(tmp_path / "in.xyz", tmp_path / "p.xyz", spec)
    ser = list(calculate(configs, OutputSpec(), calculator=spec))  # in memory: exact values
    for i, (a, b, orig) in enumerate(zip(par, ser, configs)):
        assert "castep_calc_failed" not in a.info, a.info["castep_calc_error"]
        assert a.info["castep_energy"] == b.info["castep_energy"]
        assert np.allclose(a.arrays["castep_forces"], b.arrays["castep_forces"], rtol=0,
                           atol=1e-8)   # the file holds 8 decimals
        rundir = Path(a.info["castep_rundir"])
        assert rundir == tmp_path / "p.xyz.rundirs" / f"{i:06d}"
        assert os.listdir(rundir) == ["castep.castep"]
        if not REAL:
            energy, forces, stress = lj(orig)
            assert b.info["castep_energy"] == pytest.approx(energy, abs=1e-8)
            assert b.info["castep_free_energy"] == pytest.approx(energy, abs=1e-8)
            assert np.allclose(b.arrays["castep_forces"], forces, rtol=0, atol=1e-11)
            assert np.allclose(b.info["castep_stress"], stress, rtol=0, atol=1e-12)
    assert len({a.info["castep_energy"] for a in par}) == 8


def test_keywords_go_to_the_right_file_and_pseudopotentials_are_linked(tmp_path):
    pspots = tmp_path / "pspots"
    pspots.mkdir()
    (pspots / "Cu_00.usp").write_text("a Cu pseudopotential\n")
    [at] = calculate(cu_cells(1), OutputSpec(), calculator=("castep", [], params(
        castep_pp_path=str(pspots), species_pot={"Cu": "Cu_00.usp"}, elec_energy_tol=1e-6,
        fix_occupancy=True, symmetry_generate=True, cell={"fix_all_cell": True},
        param={"max_scf_cycles": 60}, keep="all", rundir_root=str(tmp_path / "runs"))))
    assert "castep_calc_failed" not in at.info, at.info["castep_calc_error"]
    rundir = Path(at.info["castep_rundir"])
    param = (rundir / "castep.param").read_text().upper()
    cell = (rundir / "castep.cell").read_text().upper()
    for key in ("CUT_OFF_ENERGY: 300", "XC_FUNCTIONAL: PBE", "ELEC_ENERGY_TOL",
                "FIX_OCCUPANCY", "MAX_SCF_CYCLES: 60", "TASK: SINGLEPOINT",
                "CALCULATE_STRESS: TRUE"):
        assert key in param, key
    for key in ("KPOINT_MP_GRID: 2 2 2", "SYMMETRY_GENERATE", "FIX_ALL_CELL",
                "%BLOCK SPECIES_POT\nCU CU_00.USP"):
        assert key in cell, key
    assert os.path.islink(rundir / "Cu_00.usp")
    assert stat_mode(rundir) == 0o700         # not ASE's 0775, and no *.bak-<date> copy


def stat_mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_molecule_in_a_box_is_computed_at_gamma(tmp_path):
    mol = cu_cells(1)[0]
    mol.center(vacuum=4.0)
    mol.pbc = False
    [at] = calculate([mol], OutputSpec(), calculator=("castep", [], params(
        keep="all", rundir_root=str(tmp_path))))
    assert "castep_stress" not in at.info
    cell = (Path(at.info["castep_rundir"]) / "castep.cell").read_text().upper()
    assert "KPOINT_MP_GRID: 1 1 1" in cell and "2 2 2" not in cell
    if not REAL:
        assert at.info["castep_energy"] == pytest.approx(
            LennardJones(sigma=2.3, epsilon=0.4, rc=5.0).get_potential_energy(mol), abs=1e-8)


@needs_standin
def test_faults_are_per_configuration_failures_with_details(tmp_path):
    configs = (cu_cells(1) + cu_cells(1, swap="Ag") + cu_cells(1, swap="Au")
               + cu_cells(1, swap="Pt") + cu_cells(1, swap="Si") + cu_cells(1, seed=5))
    env = {"WFLP_STANDIN_FAIL": "unconverged:Ag,crash:Au,badexit:Pt,silent:Si"}
    out = list(calculate(configs, OutputSpec(tmp_path / "f.xyz"),
                         calculator=("castep", [], params(env=env))))
    for i in (0, 5):
        assert "castep_calc_failed" not in out[i].info, out[i].info["castep_calc_error"]
    root = tmp_path / "f.xyz.rundirs"
    unconverged, crash, badexit, silent = (out[i].info["castep_calc_error"]
                                           for i in (1, 2, 3, 4))
    # CASTEP warns, writes every number and exits 0; ASE only warns
    assert unconverged.startswith(f"CalculationError: castep calculation failed in "
                                  f"{root / '000001'}: the SCF did not converge")
    assert "max. SCF cycles performed but system has not reached the groundstate" in \
        unconverged and "(exit status 0)" in unconverged
    assert "castep_energy" not in out[1].info
    assert f"{root / '000002'}: the program exited with status 1" in crash
    assert "status 1: castep.0001.err: Error in cell_read_species_pot" in crash
    # a complete output, but a non-zero exit status (ASE ignores it)
    assert f"{root / '000003'}: the program exited with status 137" in badexit
    assert 'stderr: "mpirun noticed that process rank 0 exited on signal 9' in badexit
    assert "its output could not be read (exit status 0)" in silent
    assert {"castep.cell", "castep.param", "castep.0001.err"} <= set(
        os.listdir(out[2].info["castep_rundir"]))


def test_reader_on_a_real_castep_output(tmp_path):
    from wflp_castep.calculator import CastepCalculator

    plugin = CastepCalculator(**params())
    work = tmp_path / "md"
    work.mkdir()
    shutil.copy(TESTDATA / "md.castep", work / "castep.castep")
    with quiet("castep"):
        reference = ase.io.read(TESTDATA / "md.castep", format="castep-castep")
        calc = plugin.make_calculator(reference.copy(), ["energy"], work, plugin.command)
        calc.atoms = reference.copy()
        calc.read(str(work / "castep.castep"))
    assert calc.results["free_energy"] == reference.get_potential_energy(force_consistent=True)
    assert np.array_equal(calc.results["forces"], reference.get_forces())
    assert np.array_equal(calc.results["stress"], reference.get_stress())
    # its general warning line is not an SCF failure ...
    assert plugin.scf_converged(work) is True and plugin.diagnose(work) is None
    # ... CASTEP's SCF warning in the same real file is
    text = (work / "castep.castep").read_text().replace(
        " Finished MD", " *Warning* max. SCF cycles performed but system has not reached "
        "the groundstate.\n Finished MD")
    (work / "castep.castep").write_text(text)
    assert plugin.scf_converged(work) is False
    assert "not reached the groundstate" in plugin.diagnose(work)


def test_records_and_settings(tmp_path, monkeypatch):
    from wflp_castep.calculator import CastepCalculator

    out = tmp_path / "o.xyz"
    calculate(cu_cells(1), OutputSpec(out), calculator=("castep", [], params()))
    record = json.loads(Path(f"{out}.record.json").read_text())
    assert record["parameters"]["calculator"]["provenance"]["code"]
    if not REAL:  # the program's version is a fact, found at run time
        assert record["facts"]["programs"]["parameters.calculator.provenance"] == {
            "program_version": "23.1"}
    calculate(cu_cells(1), OutputSpec(out), calculator=("castep", [], params()))  # reused
    with pytest.raises(RecordMismatchError, match="cut_off_energy"):
        calculate(cu_cells(1), OutputSpec(out),
                  calculator=("castep", [], params(cut_off_energy=350)))
    monkeypatch.setenv("PSPOT_DIR", str(tmp_path))
    monkeypatch.setenv("WFLP_CASTEP_COMMAND", "mpirun -np 4 castep.mpi")
    calc = CastepCalculator()
    assert pickle.loads(pickle.dumps(calc)).__wflp_provenance__() == calc.__wflp_provenance__()
    assert (calc.castep_pp_path, calc.command) == (str(tmp_path), "mpirun -np 4 castep.mpi")
    with pytest.raises(ParameterError, match="param must be a table"):
        CastepCalculator(param=["cut_off_energy: 300"])
    with pytest.raises(ParameterError, match="castep_command= is set by wflp"):
        CastepCalculator(castep_command="castep")
