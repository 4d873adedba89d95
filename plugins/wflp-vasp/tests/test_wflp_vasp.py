"""The vasp plugin, the whole path: ASE writes the real input files, a program runs in a
private run directory, ASE's readers parse vasprun.xml and OUTCAR, results are stored,
files kept, failures reported. VASP cannot be installed here: the program is
standin_vasp.py (Lennard-Jones energies in VASP's output formats) unless WFLP_VASP_COMMAND points
at a real VASP (then with WFLP_VASP_COMMAND_GAMMA and VASP_PP_PATH, and the fault tests,
which need the stand-in's fault modes, are skipped). The readers are also checked on the
real VASP outputs ASE ships in ase/test/testdata/vasp.
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
from wflp import ConfigSet, OutputSpec
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate
from wflp.plugins import plugin_report, reset_plugin_manager
from wflp.testing import calculate_in_two_workers, scaled

HERE = Path(__file__).parent
STANDIN = HERE / "standin_vasp.py"
REAL = os.environ.get("WFLP_VASP_COMMAND")
TESTDATA = Path(ase.__file__).parent / "test" / "testdata" / "vasp"
needs_standin = pytest.mark.skipif(bool(REAL), reason="fault modes need the stand-in")

POTCAR = """  PAW_PBE {el} 06Sep2000
 11.0000000000000000
 parameters from PSCTR are:
   VRHFIN ={el}: d10 p1
   LEXCH  = PE
   TITEL  = PAW_PBE {el} 06Sep2000
   POMASS =   63.546; ZVAL   =   11.000    mass and valenz
 End of Dataset
"""


@pytest.fixture
def pp_path(tmp_path) -> str:
    if REAL:
        return os.environ["VASP_PP_PATH"]
    root = tmp_path / "pp"
    for el in ("Cu", "Ag", "Au", "Pt"):
        (root / "potpaw_PBE" / el).mkdir(parents=True)
        (root / "potpaw_PBE" / el / "POTCAR").write_text(POTCAR.format(el=el))
    return str(root)


def params(pp_path, **extra):
    out = {"xc": "PBE", "encut": 300, "kpts": (2, 2, 2), "pp_path": pp_path,
           "command": REAL or f"{sys.executable} {STANDIN} std",
           "command_gamma": os.environ.get("WFLP_VASP_COMMAND_GAMMA", REAL) or
           f"{sys.executable} {STANDIN} gam"}
    out.update(extra)
    return out


def cu_cells(n, seed=0, swap=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", "fcc", a=3.6, cubic=True)
        at.positions += rng.normal(0, 0.05, at.positions.shape)
        if swap:
            at[2].symbol = swap      # not first: ASE reorders POSCAR by species
        out.append(at)
    return out


def lj(atoms):
    """What the stand-in computes (its Lennard-Jones potential), by ASE."""
    at = atoms.copy()
    at.calc = LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False)
    return at.get_potential_energy(), at.get_forces(), at.get_stress()


def test_discovered_without_importing_ase_vasp():
    reset_plugin_manager()
    [record] = [r for r in plugin_report() if r.distribution == "wflp-vasp"]
    assert record.status == "ok", record.error
    assert record.registered == {"calculators": ["vasp"]}
    code = ("import sys\nfrom wflp.plugins import get_calculator\nget_calculator('vasp')\n"
            "print('ase.calculators.vasp' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.stdout.strip() == "False", out.stderr


def test_two_workers_give_the_serial_results_and_emt_values(tmp_path, pp_path):
    configs = cu_cells(6) + cu_cells(2, seed=1, swap="Au")
    ase.io.write(tmp_path / "in.xyz", configs)
    configs = ase.io.read(tmp_path / "in.xyz", ":")
    spec = ("vasp", [], params(pp_path))
    par = calculate_in_two_workers(tmp_path / "in.xyz", tmp_path / "p.xyz", spec)
    ser = list(calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "s.xyz"),
                         calculator=spec))
    for i, (a, b, orig) in enumerate(zip(par, ser, configs)):
        assert "vasp_calc_failed" not in a.info, a.info["vasp_calc_error"]
        assert a.info["vasp_energy"] == b.info["vasp_energy"]
        assert np.array_equal(a.arrays["vasp_forces"], b.arrays["vasp_forces"])
        rundir = Path(a.info["vasp_rundir"])
        assert rundir == tmp_path / "p.xyz.rundirs" / f"{i:06d}"
        assert sorted(os.listdir(rundir)) == ["OUTCAR", "vasprun.xml"]
        if not REAL:   # the stand-in computes LJ: the whole path must give its values
            energy, forces, stress = lj(orig)
            assert a.info["vasp_energy"] == pytest.approx(energy, abs=1e-8)
            assert a.info["vasp_free_energy"] == pytest.approx(energy, abs=1e-8)
            assert np.allclose(a.arrays["vasp_forces"], forces, atol=1e-8)  # sorted back
            assert np.allclose(a.info["vasp_stress"], stress, atol=1e-8)    # units, sign
    assert len({a.info["vasp_energy"] for a in par}) == 8


@needs_standin
def test_faults_are_per_configuration_failures_with_details(tmp_path, pp_path):
    configs = cu_cells(1) + cu_cells(1, swap="Ag") + cu_cells(1, swap="Au") + \
        cu_cells(1, swap="Pt") + cu_cells(1, seed=3)
    env = {"WFLP_STANDIN_FAIL": "unconverged:Ag,crash:Au,silent:Pt"}
    out = list(calculate(configs, OutputSpec(tmp_path / "f.xyz"),
                         calculator=("vasp", [], params(pp_path, env=env))))
    for i in (0, 4):
        assert "vasp_calc_failed" not in out[i].info, out[i].info["vasp_calc_error"]
    root = tmp_path / "f.xyz.rundirs"
    unconverged, crash, silent = (out[i].info["vasp_calc_error"] for i in (1, 2, 3))
    # VASP stops at NELM with exit status 0 and complete files: ASE reads them happily
    assert unconverged.startswith(f"CalculationError: vasp calculation failed in "
                                  f"{root / '000001'}: the SCF did not converge")
    assert "exit status 0" in unconverged and "vasp_energy" not in out[1].info
    assert "aborting loop EDIFF was not reached (unconverged)" in unconverged
    assert f"in {root / '000002'}: the program exited with status 1" in crash
    assert "VERY BAD NEWS! internal error in subroutine SGRCON" in crash
    assert 'stderr: "forrtl: error (78): process killed (SIGTERM)"' in crash
    assert "its output could not be read (exit status 0)" in silent
    assert "No such file or directory" in silent and "OUTCAR" in silent
    for i in (1, 2, 3):  # a failure keeps everything
        assert {"INCAR", "POSCAR", "KPOINTS", "POTCAR"} <= set(
            os.listdir(out[i].info["vasp_rundir"]))


def test_a_cluster_takes_the_gamma_path_and_no_cell_is_refused(tmp_path, pp_path):
    cluster = cu_cells(1)[0]
    cluster.center(vacuum=4.0)
    cluster.pbc = False
    nocell = cluster.copy()
    nocell.cell = None
    out = list(calculate([cluster, nocell], OutputSpec(tmp_path / "g.xyz"),
                         calculator=("vasp", [], params(pp_path, keep="all"))))
    info = out[0].info
    assert "vasp_calc_failed" not in info, info["vasp_calc_error"]
    assert "vasp_stress" not in info
    rundir = Path(info["vasp_rundir"])
    kpoints = (rundir / "KPOINTS").read_text().split("\n")
    assert kpoints[2].strip().lower().startswith("gamma") and kpoints[3].split() == ["1"] * 3
    assert "gamma-only" in (rundir / "OUTCAR").read_text().split("\n")[0]  # vasp_gam ran
    if not REAL:
        assert info["vasp_energy"] == pytest.approx(lj(cluster)[0], abs=1e-8)
    assert "no cell" in out[1].info["vasp_calc_error"]


@needs_standin
def test_readers_on_real_vasp_outputs(tmp_path, pp_path):
    """ASE's sample outputs of real VASP runs, read by the plugin's own path."""
    from wflp_vasp.calculator import VaspCalculator

    plugin = VaspCalculator(**params(pp_path))
    for name, expected in [("convergence_OUTCAR_y_y", True), ("convergence_OUTCAR_y_n", False),
                           ("convergence_OUTCAR_n_y", True), ("OUTCAR_example_1", True)]:
        work = tmp_path / name
        work.mkdir()
        shutil.copy(TESTDATA / name, work / "OUTCAR")
        assert plugin.scf_converged(work) is expected, name
    # vasprun.xml of a real run, through the calculator's reader (sorting included)
    reference = ase.io.read(TESTDATA / "vasprun_pstress.xml", format="vasp-xml")
    work = tmp_path / "pstress"
    work.mkdir()
    shutil.copy(TESTDATA / "vasprun_pstress.xml", work / "vasprun.xml")
    shutil.copy(TESTDATA / "convergence_OUTCAR_y_y", work / "OUTCAR")
    atoms = reference.copy()
    for el in set(atoms.get_chemical_symbols()):   # ASE looks for POTCARs while sorting
        Path(pp_path, "potpaw_PBE", el).mkdir(parents=True, exist_ok=True)
        Path(pp_path, "potpaw_PBE", el, "POTCAR").write_text(POTCAR.format(el=el))
    calc = plugin.make_calculator(atoms, ["energy"], work, plugin.command)
    calc.initialize(atoms)
    results = plugin.read(calc, atoms)
    assert results["energy"] == reference.get_potential_energy()
    assert np.array_equal(results["forces"], reference.get_forces())
    assert np.array_equal(results["stress"], reference.get_stress())
    assert calc.converged is True and calc.version is None  # no " vasp." line in it
    # the real OUTCAR's error-free tail gives no diagnosis, and its tail is readable
    assert plugin.diagnose(tmp_path / "OUTCAR_example_1") is None


def test_a_changed_potcar_or_command_is_a_record_mismatch(tmp_path, pp_path):
    if REAL:
        pytest.skip("edits POTCAR files: run with the stand-in's own POTCAR folder")
    spec = ("vasp", [], params(pp_path))
    out = tmp_path / "o.xyz"
    calculate(cu_cells(1), OutputSpec(out), calculator=spec)
    record = json.loads(Path(f"{out}.record.json").read_text())
    assert record["parameters"]["calculator"]["provenance"]["files"][
        "potcars"]["files"] == 4
    calculate(cu_cells(1), OutputSpec(out), calculator=spec)   # the same: reused
    potcar = Path(pp_path, "potpaw_PBE", "Ag", "POTCAR")      # one the run did not use
    potcar.write_text(potcar.read_text().replace("06Sep2000", "07Sep2000"))
    with pytest.raises(RecordMismatchError, match="potcars"):
        calculate(cu_cells(1), OutputSpec(out), calculator=spec)
    other = ("vasp", [], params(pp_path, command=f"{sys.executable} -E {STANDIN} std"))
    with pytest.raises(RecordMismatchError, match="command"):
        calculate(cu_cells(1), OutputSpec(out, overwrite=False), calculator=other)


def test_settings(monkeypatch, tmp_path, pp_path):
    from wflp_vasp.calculator import VaspCalculator

    monkeypatch.setenv("VASP_PP_PATH", pp_path)
    monkeypatch.delenv("WFLP_VASP_COMMAND", raising=False)
    monkeypatch.delenv("WFLP_VASP_COMMAND_GAMMA", raising=False)
    calc = VaspCalculator(xc="PBE")
    assert pickle.loads(pickle.dumps(calc)).__wflp_provenance__() == calc.__wflp_provenance__()
    assert (calc.command, calc.command_gamma, calc.pp_path) == ("vasp_std", "vasp_gam",
                                                                pp_path)
    files = calc.input_files()
    assert files["potcar_folder"] == os.path.join(pp_path, "potpaw_PBE")
    with pytest.raises(ParameterError, match="directory= is set by wflp"):
        VaspCalculator(directory="here")
    before = dict(os.environ)
    [at] = calculate(cu_cells(1), OutputSpec(), calculator=("vasp", [], params(
        None, rundir_root=str(tmp_path), env={"OMP_NUM_THREADS": "1"})))
    assert "vasp_energy" in at.info, at.info.get("vasp_calc_error")
    assert dict(os.environ) == before
