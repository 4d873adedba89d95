"""The orca plugin, the whole path: ASE writes orca.inp, a program runs in a private run
directory, ASE's readers parse orca.out and orca.engrad, results are stored, files kept,
failures reported. ORCA cannot be installed here: the program is standin_orca.py
(Lennard-Jones energies in ORCA's output formats) unless WFLP_ORCA_COMMAND points at a
real ORCA (then the fault tests, which need the stand-in's fault modes, are skipped).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones
from wflp import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool
from wflp.calculators.fileio import CalculationError
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate
from wflp.plugins import plugin_report, reset_plugin_manager
from wflp.testing import calculate_in_two_workers, scaled

STANDIN = Path(__file__).parent / "standin_orca.py"
REAL = os.environ.get("WFLP_ORCA_COMMAND")
COMMAND = REAL or f"{sys.executable} {STANDIN}"
needs_standin = pytest.mark.skipif(bool(REAL), reason="fault modes need the stand-in")


def params(**extra):
    out = {"command": COMMAND, "orcasimpleinput": "HF def2-SVP"}
    out.update(extra)
    return out


def clusters(n, element="Ar", seed=0):
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0], [2.6, 0, 0], [0, 2.6, 0], [0, 0, 2.6]])
    return [Atoms(element + "Ar3", positions=base + rng.normal(0, 0.05, base.shape))
            for _ in range(n)]


def lj(atoms):
    at = atoms.copy()
    at.calc = LennardJones(sigma=2.3, epsilon=0.4, rc=5.0, smooth=False)
    return at.get_potential_energy(), at.get_forces()


def test_discovered_without_importing_ase_orca():
    reset_plugin_manager()
    [record] = [r for r in plugin_report() if r.distribution == "wflp-orca"]
    assert record.status == "ok", record.error
    assert record.registered == {"calculators": ["orca"]}
    code = ("import sys\nfrom wflp.plugins import get_calculator\nget_calculator('orca')\n"
            "print('ase.calculators.orca' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.stdout.strip() == "False", out.stderr


def test_two_workers_give_the_serial_results_and_lj_values(tmp_path):
    ase.io.write(tmp_path / "in.xyz", clusters(8))
    configs = ase.io.read(tmp_path / "in.xyz", ":")
    spec = ("orca", [], params())
    par = calculate_in_two_workers(tmp_path / "in.xyz", tmp_path / "p.xyz", spec)
    ser = list(calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "s.xyz"),
                         calculator=spec))
    for i, (a, b, orig) in enumerate(zip(par, ser, configs)):
        assert "orca_calc_failed" not in a.info, a.info["orca_calc_error"]
        assert a.info["orca_energy"] == b.info["orca_energy"]
        assert np.array_equal(a.arrays["orca_forces"], b.arrays["orca_forces"])
        assert "orca_stress" not in a.info
        rundir = Path(a.info["orca_rundir"])
        assert rundir == tmp_path / "p.xyz.rundirs" / f"{i:06d}"
        assert sorted(os.listdir(rundir)) == ["orca.engrad", "orca.out"]
        if not REAL:
            energy, forces = lj(orig)
            assert a.info["orca_energy"] == pytest.approx(energy, abs=1e-9)   # Hartree->eV
            assert np.allclose(a.arrays["orca_forces"], forces, atol=1e-9)  # Eh/bohr->eV/Å
    assert len({a.info["orca_energy"] for a in par}) == 8


def test_an_instance_goes_to_two_workers_too(tmp_path):
    from wflp_orca.calculator import OrcaCalculator

    calc = OrcaCalculator(**params())
    shutdown_pool()
    try:
        out = list(calculate(clusters(4, seed=2), OutputSpec(tmp_path / "i.xyz"), calculator=calc,
                             autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                                        num_inputs_per_python_subprocess=1)))
    finally:
        shutdown_pool()
    assert [Path(a.info["OrcaCalculator_rundir"]).name for a in out] == [
        f"{i:06d}" for i in range(4)]
    if not REAL:
        assert all(a.info["OrcaCalculator_energy"] == pytest.approx(lj(c)[0], abs=1e-9)
                   for a, c in zip(out, clusters(4, seed=2)))


def test_forces_ask_orca_for_the_gradient(tmp_path):
    [a, b] = [list(calculate(clusters(1), OutputSpec(), calculator=("orca", [], params(
        keep="all", rundir_root=str(tmp_path / name))), properties=props))[0]
        for name, props in (("f", ["energy", "forces"]), ("e", ["energy"]))]
    assert "! HF def2-SVP EnGrad" in (Path(a.info["orca_rundir"]) / "orca.inp").read_text()
    assert "EnGrad" not in (Path(b.info["orca_rundir"]) / "orca.inp").read_text()
    assert "orca_forces" in a.arrays and "orca_forces" not in b.arrays


@needs_standin
def test_faults_are_per_configuration_failures_with_details(tmp_path):
    configs = (clusters(1) + clusters(1, "Ne") + clusters(1, "He") + clusters(1, "Kr")
               + clusters(1, "Xe") + clusters(1, seed=4))
    env = {"WFLP_STANDIN_FAIL": "unconverged:Ne,noenergy:He,crash:Kr,silent:Xe"}
    out = list(calculate(configs, OutputSpec(tmp_path / "f.xyz"),
                         calculator=("orca", [], params(env=env))))
    for i in (0, 5):
        assert "orca_calc_failed" not in out[i].info, out[i].info["orca_calc_error"]
    root = tmp_path / "f.xyz.rundirs"
    nan, none, crash, silent = (out[i].info["orca_calc_error"] for i in (1, 2, 3, 4))
    # ORCA goes on after a failed SCF and exits 0; ASE reads the energy as NaN
    assert nan.startswith(f"CalculationError: orca calculation failed in {root / '000001'}: "
                          "the SCF did not converge")
    assert "(exit status 0)" in nan and "orca_energy" not in out[1].info
    assert "FINAL SINGLE POINT ENERGY (Wavefunction not fully converged!)" in nan
    assert 'PropertyNotImplementedError: The property "energy" is not available' in none
    assert f"in {root / '000003'}: the program exited with status 1" in crash
    assert "status 1: ORCA finished by error termination in SCF" in crash
    assert 'stderr: "[file orca_tools/qcmsg.cpp, line 465]: .... aborting the run"' in crash
    assert "its output could not be read (exit status 0)" in silent
    assert "orca.inp" in os.listdir(out[4].info["orca_rundir"])


@needs_standin
def test_the_error_of_an_unconverged_scf_says_so(tmp_path):
    from wflp_orca.calculator import OrcaCalculator

    calc = OrcaCalculator(**params(env={"WFLP_STANDIN_FAIL": "unconverged:Ne"},
                                   rundir_root=str(tmp_path)))
    atoms = clusters(1, "Ne")[0]
    atoms.calc = calc
    with pytest.raises(CalculationError) as info:
        atoms.get_potential_energy()
    assert info.value.converged is False and info.value.returncode == 0
    assert "Wavefunction not fully converged" in " ".join(info.value.output_tail) or \
        "SCF NOT CONVERGED" in str(info.value)


def test_periodic_structures_are_refused():
    [at] = calculate([bulk("Cu")], OutputSpec(), calculator=("orca", [], params()))
    assert "orca computes molecules and clusters" in at.info["orca_calc_error"]
    assert "atoms.pbc = False" in at.info["orca_calc_error"]


def test_records_know_the_version_command_and_method(tmp_path):
    out = tmp_path / "o.xyz"
    calculate(clusters(1), OutputSpec(out), calculator=("orca", [], params()))
    record = json.loads(Path(f"{out}.record.json").read_text())
    assert record["parameters"]["calculator"]["provenance"]["code"]
    if not REAL:  # the program's version is a fact, found at run time
        assert record["facts"]["programs"]["parameters.calculator.provenance"] == {
            "program_version": "5.0.4"}
    calculate(clusters(1), OutputSpec(out), calculator=("orca", [], params()))  # reused
    with pytest.raises(RecordMismatchError, match="orcasimpleinput"):
        calculate(clusters(1), OutputSpec(out),
                  calculator=("orca", [], params(orcasimpleinput="B3LYP def2-SVP")))
    with pytest.raises(RecordMismatchError, match="command"):
        calculate(clusters(1), OutputSpec(out),
                  calculator=("orca", [], params(command=f"env A=1 {COMMAND}")))


def test_settings(monkeypatch):
    from wflp_orca.calculator import OrcaCalculator, absolute_program

    monkeypatch.setenv("WFLP_ORCA_COMMAND", "/opt/orca/orca")
    calc = OrcaCalculator()
    assert calc.command == "/opt/orca/orca"
    assert pickle.loads(pickle.dumps(calc)).__wflp_provenance__() == calc.__wflp_provenance__()
    assert absolute_program("env A=1 python -x").split()[:3] == [
        "env", "A=1", subprocess.check_output(["which", "python"], text=True).strip()]
    with pytest.raises(ParameterError, match="orcasimpleinput must be a string"):
        OrcaCalculator(orcasimpleinput=["B3LYP"])
    with pytest.raises(ParameterError, match="directory= is set by wflp"):
        OrcaCalculator(directory="x")
