"""The aims plugin, the whole path: ASE writes geometry.in and control.in (species
defaults copied in), a program runs in a private run directory, ASE's reader parses
aims.out, results are stored, files kept, failures reported. FHI-aims cannot be
installed here: the program is standin_aims.py (Lennard-Jones energies in FHI-aims'
output format) unless WFLP_AIMS_COMMAND points at a real FHI-aims (with AIMS_SPECIES_DIR;
the fault tests, which need the stand-in's fault modes, are then skipped). ASE's reader
is also checked on the real FHI-aims outputs in ase/test/testdata/aims.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.data import atomic_numbers
from wflp import ConfigSet, OutputSpec
from wflp.calculators.fileio import quiet
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate
from wflp.plugins import plugin_report, reset_plugin_manager
from wflp.testing import calculate_in_two_workers, scaled

STANDIN = Path(__file__).parent / "standin_aims.py"
REAL = os.environ.get("WFLP_AIMS_COMMAND")
COMMAND = REAL or f"{sys.executable} {STANDIN}"
TESTDATA = Path(ase.__file__).parent / "test" / "testdata" / "aims"
needs_standin = pytest.mark.skipif(bool(REAL), reason="fault modes need the stand-in")

SPECIES = """################################################################################
#
#  FHI-aims code project
#  Suggested "light" defaults for {el} atom (to be pasted into control.in file)
#
################################################################################
  species        {el}
#     global species definitions
    nucleus             {z}
    mass                63.546
#
    l_hartree           4
#
    cut_pot             3.5  1.5  1.0
    basis_dep_cutoff    1e-4
#
    radial_base         53 5.0
    radial_multiplier   1
    angular_grids specified
      division   0.5231   50
      outer_grid  302
"""


@pytest.fixture
def species_dir(tmp_path) -> str:
    if REAL:
        return os.environ["AIMS_SPECIES_DIR"]
    folder = tmp_path / "light"
    folder.mkdir()
    for el in ("Cu", "Ag", "Au", "Pt", "Ar"):   # no Ni: a missing species file
        z = atomic_numbers[el]
        (folder / f"{z:02d}_{el}_default").write_text(SPECIES.format(el=el, z=z))
    return str(folder)


def params(species_dir, **extra):
    out = {"species_dir": species_dir, "command": COMMAND, "xc": "pbe", "k_grid": [2, 2, 2]}
    out.update(extra)
    return out


def cu_cells(n, seed=0, swap=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", "fcc", a=3.6, cubic=True)
        at.positions += rng.normal(0, 0.05, at.positions.shape)
        if swap:
            at[2].symbol = swap
        out.append(at)
    return out


def lj(atoms):
    at = atoms.copy()
    at.calc = LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False)
    return at.get_potential_energy(), at.get_forces(), (
        at.get_stress() if at.pbc.all() else None)


def test_discovered_without_importing_ase_aims():
    reset_plugin_manager()
    [record] = [r for r in plugin_report() if r.distribution == "wflp-aims"]
    assert record.status == "ok", record.error
    assert record.registered == {"calculators": ["aims"]}
    code = ("import sys\nfrom wflp.plugins import get_calculator\nget_calculator('aims')\n"
            "print('ase.calculators.aims' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.stdout.strip() == "False", out.stderr


def test_two_workers_give_the_serial_results_and_lj_values(tmp_path, species_dir):
    ase.io.write(tmp_path / "in.xyz", cu_cells(8))
    configs = ase.io.read(tmp_path / "in.xyz", ":")
    spec = ("aims", [], params(species_dir))
    par = calculate_in_two_workers(tmp_path / "in.xyz", tmp_path / "p.xyz", spec)
    ser = list(calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "s.xyz"),
                         calculator=spec))
    for i, (a, b, orig) in enumerate(zip(par, ser, configs)):
        assert "aims_calc_failed" not in a.info, a.info["aims_calc_error"]
        assert a.info["aims_energy"] == b.info["aims_energy"]
        assert np.array_equal(a.arrays["aims_forces"], b.arrays["aims_forces"])
        rundir = Path(a.info["aims_rundir"])
        assert rundir == tmp_path / "p.xyz.rundirs" / f"{i:06d}"
        assert os.listdir(rundir) == ["aims.out"]
        if not REAL:
            energy, forces, stress = lj(orig)
            assert a.info["aims_energy"] == pytest.approx(energy, abs=1e-9)
            assert np.allclose(a.arrays["aims_forces"], forces, atol=1e-9)
            assert np.allclose(a.info["aims_stress"], stress, atol=1e-10)
    assert len({a.info["aims_energy"] for a in par}) == 8


def test_a_molecule_has_no_k_grid_and_a_periodic_structure_needs_a_cell(tmp_path,
                                                                        species_dir):
    base = np.array([[0, 0, 0], [2.6, 0, 0], [0, 2.6, 0], [0, 0, 2.6]])
    mol = Atoms("Ar4", positions=base)                 # no cell at all: fine for aims
    bad = Atoms("Ar4", positions=base, pbc=True)       # periodic without a cell
    out = list(calculate([mol, bad], OutputSpec(tmp_path / "m.xyz"),
                         calculator=("aims", [], params(species_dir, keep="all"))))
    info = out[0].info
    assert "aims_calc_failed" not in info, info["aims_calc_error"]
    assert "aims_stress" not in info
    rundir = Path(info["aims_rundir"])
    control = (rundir / "control.in").read_text()
    assert "compute_forces" in control and "k_grid" not in control
    assert "species        Ar" in control       # the species defaults were copied in
    assert "lattice_vector" not in (rundir / "geometry.in").read_text()
    if not REAL:
        assert info["aims_energy"] == pytest.approx(lj(mol)[0], abs=1e-9)
    assert "aims: this configuration has no cell" in out[1].info["aims_calc_error"]


@needs_standin
def test_faults_are_per_configuration_failures_with_details(tmp_path, species_dir):
    configs = (cu_cells(1) + cu_cells(1, swap="Ag") + cu_cells(1, swap="Au")
               + cu_cells(1, swap="Pt") + cu_cells(1, swap="Ni") + cu_cells(1, seed=5))
    env = {"WFLP_STANDIN_FAIL": "unconverged:Ag,crash:Au,silent:Pt"}
    out = list(calculate(configs, OutputSpec(tmp_path / "f.xyz"),
                         calculator=("aims", [], params(species_dir, env=env))))
    for i in (0, 5):
        assert "aims_calc_failed" not in out[i].info, out[i].info["aims_calc_error"]
    root = tmp_path / "f.xyz.rundirs"
    unconverged, crash, silent, nospecies = (out[i].info["aims_calc_error"]
                                             for i in (1, 2, 3, 4))
    # FHI-aims warns, goes on and says "Have a nice day.": ASE reads the numbers
    assert unconverged.startswith(f"CalculationError: aims calculation failed in "
                                  f"{root / '000001'}: the SCF did not converge")
    assert "WARNING! SELF-CONSISTENCY CYCLE DID NOT CONVERGE" in unconverged
    assert "(exit status 0)" in unconverged and '"Have a nice day."' in unconverged
    assert "the program exited with status 1: Error: the Cholesky decomposition" in crash
    assert 'stderr: "MPI_ABORT was invoked on rank 0' in crash
    assert "its output could not be read (exit status 0)" in silent
    assert nospecies.startswith(f"CalculationError: aims calculation failed in "
                                f"{root / '000004'}: writing its input failed")
    assert "28_Ni_default" in nospecies and "exit status" not in nospecies
    assert {"control.in", "geometry.in", "aims.out"} <= set(
        os.listdir(out[1].info["aims_rundir"]))


def test_reader_on_real_fhi_aims_outputs(tmp_path, species_dir):
    from wflp_aims.calculator import AimsCalculator

    plugin = AimsCalculator(**params(species_dir))
    work = tmp_path / "single"
    work.mkdir()
    shutil.copy(TESTDATA / "singlepoint.out", work / "aims.out")
    atoms = Atoms("OH2")
    calc = plugin.make_calculator(atoms, ["energy", "forces"], work, plugin.command)
    with quiet("aims"):                          # ASE's FutureWarning about its reader
        results = calc.template.read_results(work)
    assert results["energy"] == pytest.approx(-0.206302072675943e04, abs=1e-9)
    assert np.allclose(results["forces"][0], [-0.478299830661005e01, -0.616960341437854e01,
                                              0.0], atol=1e-12)
    assert plugin.scf_converged(work) is True   # after a "not yet converged" restart
    for name, expected in [("relax.out", True), ("md.out", True),
                           ("preamble_fail.out", None)]:
        shutil.copy(TESTDATA / name, work / "aims.out")
        assert plugin.scf_converged(work) is expected, name
    with pytest.raises(Exception, match="No SCF steps present"), quiet("aims"):
        calc.template.read_results(work)        # preamble_fail.out
    text = (TESTDATA / "issue_3345_spin_md_light.out").read_text()
    assert re.search(r"FHI-aims version\s*:\s*(\S+)", text).group(1) == "221103"


def test_records_know_version_species_and_command(tmp_path, species_dir):
    out = tmp_path / "o.xyz"
    spec = ("aims", [], params(species_dir))
    calculate(cu_cells(1), OutputSpec(out), calculator=spec)
    record = json.loads(Path(f"{out}.record.json").read_text())
    provenance = record["parameters"]["calculator"]["provenance"]
    if not REAL:  # the program's version is a fact, found at run time
        assert record["facts"]["programs"]["parameters.calculator.provenance"] == {
            "program_version": "240507"}
        assert provenance["files"]["species"]["files"] == 5
    calculate(cu_cells(1), OutputSpec(out), calculator=spec)   # the same: reused
    if not REAL:
        path = Path(species_dir, "29_Cu_default")
        path.write_text(path.read_text().replace("outer_grid  302", "outer_grid  434"))
        with pytest.raises(RecordMismatchError, match="species"):
            calculate(cu_cells(1), OutputSpec(out), calculator=spec)
    with pytest.raises(RecordMismatchError, match="command"):
        calculate(cu_cells(1), OutputSpec(out, overwrite=False),
                  calculator=("aims", [], params(species_dir, command=f"env A=1 {COMMAND}")))


def test_settings(monkeypatch, species_dir):
    from wflp_aims.calculator import AimsCalculator

    monkeypatch.delenv("AIMS_SPECIES_DIR", raising=False)
    with pytest.raises(ParameterError, match="pass species_dir= .* or set AIMS_SPECIES_DIR"):
        AimsCalculator()
    monkeypatch.setenv("AIMS_SPECIES_DIR", species_dir)
    monkeypatch.setenv("WFLP_AIMS_COMMAND", "mpirun -np 4 aims.x")
    calc = AimsCalculator()
    assert pickle.loads(pickle.dumps(calc)).__wflp_provenance__() == calc.__wflp_provenance__()
    assert (calc.species_dir, calc.command) == (species_dir, "mpirun -np 4 aims.x")
    with pytest.raises(ParameterError, match="directory= is set by wflp"):
        AimsCalculator(directory="x")
