"""The espresso plugin with the real pw.x: results, gamma path, parallel runs, failures,
records. Tiny runs (Si, 2 atoms, 15 Ry, 2x2x2 k-points: about half a second each).

pw.x comes from Debian's quantum-espresso package, pseudopotentials from
quantum-espresso-data (/usr/share/espresso/pseudo); under CI=true a missing one fails.
Another pw.x: WFLP_ESPRESSO_COMMAND=/path/to/pw.x (and ESPRESSO_TEST_PSEUDO=/folder).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.units import create_units
from wflp import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool
from wflp.calculators.fileio import CalculationError
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate
from wflp.plugins import get_calculator, plugin_report, reset_plugin_manager
from wflp.testing import require_program, scaled

HOW = "apt-get install quantum-espresso quantum-espresso-data (Debian), or point " \
      "WFLP_ESPRESSO_COMMAND at pw.x and ESPRESSO_TEST_PSEUDO at its pseudopotentials"
PSEUDO = os.environ.get("ESPRESSO_TEST_PSEUDO", "/usr/share/espresso/pseudo")
SI, H, C_MISSING = "Si.pz-vbc.UPF", "H.pz-vbc.UPF", "C.not-installed.UPF"
units = create_units("2006")  # the constants pw.x (and ASE's reader of its output) use


def _pw() -> str:
    command = os.environ.get("WFLP_ESPRESSO_COMMAND", "pw.x")
    require_program(command.split()[-1], HOW)
    for name in (SI, H):
        if not os.path.exists(os.path.join(PSEUDO, name)):
            message = f"pseudopotential {PSEUDO}/{name} is missing; to run this test: {HOW}"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"CI=true but {message}", pytrace=False)
            pytest.skip(message)
    return command


@pytest.fixture
def pw() -> str:
    return _pw()


def params(**extra):
    base = {"pseudo_dir": PSEUDO, "pseudopotentials": {"Si": SI, "H": H, "C": C_MISSING},
            "input_data": {"system": {"ecutwfc": 15}}, "kpts": (2, 2, 2),
            "env": {"OMP_NUM_THREADS": "1"}}
    base.update(extra)
    return base


def si_configs(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Si", "diamond", a=5.43)
        at.positions = np.round(at.positions + rng.normal(0, 0.05, (2, 3)), 4)
        out.append(at)
    return out


def failures(configs):
    """The error of every configuration that failed, by index (a test's message)."""
    return {i: a.info.get("espresso_calc_error") for i, a in enumerate(configs)
            if "espresso_energy" not in a.info}


@pytest.fixture
def fresh_registry():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def test_discovered_without_importing_ase_espresso(fresh_registry):
    [record] = [r for r in plugin_report() if r.distribution == "wflp-espresso"]
    assert record.status == "ok", record.error
    assert record.registered == {"calculators": ["espresso"]}
    code = ("import sys\nfrom wflp.plugins import get_calculator\nget_calculator('espresso')\n"
            "print('ase.calculators.espresso' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _by_hand(tmp_path: Path, atoms, command: str) -> dict:
    """pw.x on an input written here (not by ASE), read here (not by ASE)."""
    cell = "\n".join(" ".join(f"{x:.10f}" for x in row) for row in atoms.cell)
    pos = "\n".join(f"Si {x:.10f} {y:.10f} {z:.10f}" for x, y, z in atoms.positions)
    text = f"""&control
  calculation = 'scf', tprnfor = .true., tstress = .true.,
  pseudo_dir = '{PSEUDO}', outdir = './'
/
&system
  ibrav = 0, nat = 2, ntyp = 1, ecutwfc = 15
/
&electrons
/
ATOMIC_SPECIES
Si 28.085 {SI}
K_POINTS automatic
2 2 2 0 0 0
CELL_PARAMETERS angstrom
{cell}
ATOMIC_POSITIONS angstrom
{pos}
"""
    work = tmp_path / "by_hand"
    work.mkdir()
    (work / "pw.in").write_text(text)
    run = subprocess.run(command.split() + ["-in", "pw.in"], cwd=work, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-2000:]
    out = run.stdout
    energy = float(re.search(r"^!\s+total energy\s+=\s+(\S+) Ry", out, re.M).group(1))
    forces = [[float(v) for v in m] for m in re.findall(
        r"atom\s+\d+ type\s+\d+\s+force =\s+(\S+)\s+(\S+)\s+(\S+)", out)][:2]
    lines = out[out.index("total   stress"):].splitlines()[1:4]
    sigma = np.array([[float(v) for v in line.split()[:3]] for line in lines])
    return {"energy": energy * units.Ry,
            "forces": np.array(forces) * units.Ry / units.Bohr,
            "stress": -sigma.ravel()[[0, 4, 8, 5, 2, 1]] * units.Ry / units.Bohr ** 3}


def test_si_bulk_matches_pw_x_run_by_hand(tmp_path, pw):
    [atoms] = si_configs(1)
    [out] = calculate([atoms], OutputSpec(), calculator=("espresso", [], params(
        rundir_root=str(tmp_path / "runs"))))
    ref = _by_hand(tmp_path, atoms, pw)
    assert "espresso_calc_failed" not in out.info, out.info.get("espresso_calc_error")
    assert out.info["espresso_energy"] == pytest.approx(ref["energy"], abs=1e-7)
    assert np.allclose(out.arrays["espresso_forces"], ref["forces"], atol=1e-7)
    assert np.abs(ref["forces"]).max() > 0.1  # really displaced: forces are not zero
    assert np.allclose(out.info["espresso_stress"], ref["stress"], atol=1e-9)
    # one pw.x run gave every property; only its output is kept
    rundir = Path(out.info["espresso_rundir"])
    assert os.listdir(rundir) == ["espresso.pwo"]
    assert (rundir / "espresso.pwo").read_text().count("Program PWSCF") == 1


def test_a_molecule_in_a_box_takes_the_gamma_path(tmp_path, pw):
    h2 = molecule("H2")
    h2.center(vacuum=2.5)
    h2.pbc = False
    nocell = molecule("H2")
    out = list(calculate([h2, nocell], OutputSpec(tmp_path / "h2.xyz"),
                         calculator=("espresso", [], params(keep="all"))))
    info = out[0].info
    assert "espresso_calc_failed" not in info, info.get("espresso_calc_error")
    assert "espresso_stress" not in info          # not periodic: no stress asked for
    rundir = Path(info["espresso_rundir"])
    assert "K_POINTS gamma" in (rundir / "espresso.pwi").read_text()
    assert "gamma-point specific algorithms are used" in (rundir / "espresso.pwo").read_text()
    assert out[0].arrays["espresso_forces"][1, 2] == pytest.approx(
        -out[0].arrays["espresso_forces"][0, 2])
    assert out[1].info["espresso_calc_failed"]
    assert "no cell" in out[1].info["espresso_calc_error"]
    assert "atoms.center(vacuum=6.0)" in out[1].info["espresso_calc_error"]
    assert "espresso_rundir" not in out[1].info


def test_two_workers_give_the_serial_results_leaving_only_outputs(tmp_path, pw,
                                                                  fresh_registry):
    ase.io.write(tmp_path / "in.xyz", si_configs(8, seed=1))
    shutdown_pool()
    try:
        par = list(calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "par.xyz"),
                             calculator=("espresso", [], params()),
                             autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                                        num_inputs_per_python_subprocess=2)))
    finally:
        shutdown_pool()
    ser = list(calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "ser.xyz"),
                         calculator=("espresso", [], params())))
    for run in (par, ser):
        assert not failures(run), failures(run)
    energies = [a.info["espresso_energy"] for a in ser]
    assert len(set(energies)) == 8                 # eight different configurations
    assert [a.info["espresso_energy"] for a in par] == energies
    for a, b in zip(par, ser):
        assert np.array_equal(a.arrays["espresso_forces"], b.arrays["espresso_forces"])
        assert np.array_equal(a.info["espresso_stress"], b.info["espresso_stress"])
    root = tmp_path / "par.xyz.rundirs"
    assert sorted(os.listdir(root)) == [f"{i:06d}" for i in range(8)]
    assert all(os.listdir(root / d) == ["espresso.pwo"] for d in os.listdir(root))


def test_pw_x_runs_with_a_private_tmpdir_open_mpi_can_use(tmp_path, pw, monkeypatch):
    # Open MPI's session folder $TMPDIR/ompi.<host>.<uid>: two pw.x starting at once race
    # to make it (CI lost a configuration so). Made unusable here, in the TMPDIR wflp
    # inherits, pw.x run by hand fails; run by wflp it has a TMPDIR of its own.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / f"ompi.{socket.gethostname()}.{os.getuid()}").write_text("not a folder")
    ase.io.write(tmp_path / "pw.in", si_configs(1)[0], format="espresso-in",
                 pseudopotentials={"Si": SI}, kpts=(2, 2, 2),
                 input_data={"control": {"pseudo_dir": PSEUDO, "outdir": "./"},
                             "system": {"ecutwfc": 15}})
    by_hand = subprocess.run(pw.split() + ["-in", "pw.in"], cwd=tmp_path,
                             capture_output=True, text=True,
                             env={**os.environ, "TMPDIR": str(shared),
                                  "OMP_NUM_THREADS": "1"})
    assert by_hand.returncode != 0 and "mkdir" in by_hand.stderr + by_hand.stdout
    monkeypatch.setenv("TMPDIR", str(shared))
    out = list(calculate(si_configs(2), OutputSpec(tmp_path / "out.xyz"),
                         calculator=("espresso", [], params())))
    assert not failures(out), failures(out)
    assert all(np.isfinite(a.info["espresso_energy"]) for a in out)
    from wflp.calculators.process import _remove_retired

    _remove_retired()             # a TMPDIR whose Open MPI daemon had not yet tidied up
    assert os.listdir(shared) == [f"ompi.{socket.gethostname()}.{os.getuid()}"]


def test_non_convergence_and_a_missing_pseudopotential_fail_alone(tmp_path, pw):
    # one SCF step: with conv_thr = 0.18 Ry the 2-atom cells converge in it (estimated
    # accuracy 0.10-0.12 Ry) and the 8-atom cell does not (0.26 Ry)
    si8 = bulk("Si", "diamond", a=5.43, cubic=True)
    sic = bulk("SiC", "zincblende", a=4.36)        # no C pseudopotential installed
    configs = si_configs(1) + [si8, sic] + si_configs(1, seed=2)
    out = list(calculate(configs, OutputSpec(tmp_path / "f.xyz"), calculator=(
        "espresso", [], params(input_data={"system": {"ecutwfc": 15},
                                           "electrons": {"electron_maxstep": 1,
                                                         "conv_thr": 0.18}}))))
    for i in (0, 3):
        assert "espresso_calc_failed" not in out[i].info, out[i].info["espresso_calc_error"]
        assert np.isfinite(out[i].info["espresso_energy"])
    unconverged, missing = out[1].info, out[2].info
    where = str(tmp_path / "f.xyz.rundirs" / "000001")
    assert unconverged["espresso_rundir"] == where
    error = unconverged["espresso_calc_error"]
    assert error.startswith(f"CalculationError: espresso calculation failed in {where}: ")
    assert "convergence NOT achieved after 1 iterations" in error
    assert "the program exited with status 2" in error
    assert 'last lines of espresso.pwo: "' in error and '"JOB DONE."' in error
    assert "=-----" not in error                     # no ruler lines in the summary
    assert 'stderr: "STOP 2"' in error
    assert "espresso_energy" not in unconverged
    assert {"espresso.pwi", "espresso.pwo", "espresso.err"} <= set(os.listdir(where))
    error = missing["espresso_calc_error"]
    assert missing["espresso_rundir"] in error
    assert f"{C_MISSING} not found" in error and "Error in routine readpp" in error


def test_the_error_object_says_what_happened(tmp_path, pw):
    from wflp_espresso.calculator import EspressoCalculator

    calc = EspressoCalculator(**params(rundir_root=str(tmp_path),
                                       input_data={"system": {"ecutwfc": 15},
                                                   "electrons": {"electron_maxstep": 1}}))
    atoms = si_configs(1)[0]
    atoms.calc = calc
    with pytest.raises(CalculationError) as info:
        atoms.get_forces()
    err = info.value
    assert (err.code, err.returncode, err.converged) == ("espresso", 2, False)
    assert err.output_file == "espresso.pwo" and "JOB DONE." in err.output_tail[-2]
    assert len(err.output_tail) == 20
    assert err.stderr_tail == ["STOP 2"] and "AssertionError" in err.cause
    assert Path(err.directory, "espresso.pwi").exists()


def test_a_changed_pseudopotential_or_command_is_a_record_mismatch(tmp_path, pw):
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    shutil.copy(os.path.join(PSEUDO, SI), pseudo / SI)
    spec = ("espresso", [], params(pseudo_dir=str(pseudo)))
    out = tmp_path / "o.xyz"
    calculate(si_configs(1), OutputSpec(out), calculator=spec)
    record = json.loads(Path(f"{out}.record.json").read_text())
    text = json.dumps(record)
    assert "provenance" in text
    program = record["facts"]["programs"]["parameters.calculator.provenance"]
    assert re.match(r"\d", program["program_version"])  # a fact, found at run time
    calculate(si_configs(1), OutputSpec(out), calculator=spec)  # same: reused
    with open(pseudo / SI, "a") as fd:
        fd.write("\n")                               # same name, other bytes
    with pytest.raises(RecordMismatchError, match="Si:Si.pz-vbc.UPF"):
        calculate(si_configs(1), OutputSpec(out), calculator=spec)
    shutil.copy(os.path.join(PSEUDO, SI), pseudo / SI)
    calculate(si_configs(1), OutputSpec(out), calculator=spec)  # back: reused again
    other = ("espresso", [], params(pseudo_dir=str(pseudo), command=f"{pw} -ndiag 1"))
    with pytest.raises(RecordMismatchError, match="command"):
        calculate(si_configs(1), OutputSpec(out), calculator=other)


def test_bad_settings_are_refused_with_a_clear_message(monkeypatch):
    factory = get_calculator("espresso").load()
    with pytest.raises(ParameterError, match="scf_must_converge=False is refused"):
        factory(input_data={"electrons": {"scf_must_converge": False}})
    with pytest.raises(ParameterError, match="scf_must_converge=False is refused"):
        factory(scf_must_converge=False)
    with pytest.raises(ParameterError, match="pseudopotentials must map elements"):
        factory(pseudopotentials=["Si.UPF"])
    with pytest.raises(ParameterError, match="keep must be"):
        factory(keep="some")
    monkeypatch.setenv("WFLP_ESPRESSO_COMMAND", "mpirun -np 2 pw.x")
    monkeypatch.setenv("WFLP_ESPRESSO_COMMAND_GAMMA", "pw.x -nk 1")
    calc = factory(env={"OMP_NUM_THREADS": "1"})
    assert pickle.loads(pickle.dumps(calc)).__wflp_provenance__()["command"] == calc.command
    assert (calc.command, calc.command_gamma) == ("mpirun -np 2 pw.x", "pw.x -nk 1")
    h2 = molecule("H2")
    assert calc.command_for(h2) == "env OMP_NUM_THREADS=1 pw.x -nk 1"
    assert calc.command_for(bulk("Si")) == "env OMP_NUM_THREADS=1 mpirun -np 2 pw.x"
    assert factory(command="pw.x").command == "pw.x"


def test_wflp_run_and_a_chain_use_it_by_name(tmp_path, pw):
    ase.io.write(tmp_path / "in.xyz", si_configs(1))
    sets = ["--set", f"pseudo_dir={json.dumps(PSEUDO)}",
            "--set", 'pseudopotentials={"Si"="Si.pz-vbc.UPF"}',
            "--set", "input_data={system={ecutwfc=15}}", "--set", "kpts=[2,2,2]"]
    run = subprocess.run([sys.executable, "-m", "wflp.cli", "run", "calculator", "espresso",
                          "-i", "in.xyz", "-o", "cli.xyz", *sets], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    [cli] = ase.io.read(tmp_path / "cli.xyz", ":")
    (tmp_path / "chain.toml").write_text(f"""
[chain]
inputs = "in.xyz"

[[step]]
kind = "calculator"
name = "espresso"
output = "chain.xyz"
params.pseudo_dir = {json.dumps(PSEUDO)}
params.pseudopotentials = {{ Si = "{SI}" }}
params.kpts = [2, 2, 2]
params.input_data = {{ system = {{ ecutwfc = 15 }} }}
""")
    run = subprocess.run([sys.executable, "-m", "wflp.cli", "run", "chain.toml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    [chain] = ase.io.read(tmp_path / "chain.xyz", ":")
    assert cli.info["espresso_energy"] == chain.info["espresso_energy"]
    assert cli.info["espresso_rundir"] == str(tmp_path / "cli.xyz.rundirs" / "000000")
    assert os.listdir(tmp_path / "chain.xyz.rundirs" / "000000") == ["espresso.pwo"]
