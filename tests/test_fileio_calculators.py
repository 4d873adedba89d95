"""File-based calculators (wflp.calculators.fileio) with toy programs written here.

Two toys run a real external program (a Python script computing Lennard-Jones energies
and forces from the input file it reads): an ordinary ASE FileIOCalculator wrapped by
GenericFileCalculator (ASE writes, runs and reads), and a FileCalculator subclass that
runs the program itself. Their program sleeps between reading its input and writing its
output, so two calculations sharing a directory would read each other's results.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import stat
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import FileIOCalculator
from ase.calculators.lj import LennardJones
from wflp import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool
from wflp.calculators.fileio import (
    CalculationError,
    FileCalculator,
    GenericFileCalculator,
    check_keep,
    file_sha256,
    folder_sha256,
    prune,
)
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate

TOY_PROGRAM = r'''
import os
with open("toy.pid.tmp", "w") as fd:   # first, and whole: a time limit may kill us soon
    fd.write(str(os.getpid()))
os.replace("toy.pid.tmp", "toy.pid")
import json, sys, time
import numpy as np

data = json.load(open("toy.in"))
pos = np.array(data["positions"], dtype=float)
n = len(pos)
print(f"toy program: {n} atoms", flush=True)
if n == 3:
    print("toy: SCF did not converge", flush=True)
    print("toy: giving up", file=sys.stderr, flush=True)
    sys.exit(3)
if n == 6:
    time.sleep(60)
time.sleep(float(data.get("sleep", 0.05)))
if n == 5:
    sys.exit(0)  # no output at all
eps, sigma = data.get("epsilon", 1.0), data.get("sigma", 1.0)
if n == 2:
    energy = float("nan")  # a program that prints NaN and exits 0
    json.dump({"energy": energy, "forces": np.zeros((n, 3)).tolist()}, open("toy.out", "w"))
    sys.exit(0)
if os.path.exists(data.get("params", "")):
    eps = float(open(data["params"]).read().split()[0])
energy, forces = 0.0, np.zeros((n, 3))
for i in range(n):
    for j in range(i + 1, n):
        d = pos[j] - pos[i]
        r2 = d @ d
        c6 = (sigma * sigma / r2) ** 3
        energy += 4 * eps * (c6 * c6 - c6)
        f = (24 * eps * (2 * c6 * c6 - c6) / r2) * d
        forces[i] -= f
        forces[j] += f
json.dump({"energy": energy, "forces": forces.tolist()}, open("toy.out", "w"))
print("toy program: done", flush=True)
'''


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("toy") / "toy_lj.py"
    path.write_text(TOY_PROGRAM)
    return str(path)


def _write_input(directory, atoms, extra):
    data = {"positions": atoms.positions.tolist(), **extra}
    Path(directory, "toy.in").write_text(json.dumps(data))


def _read_output(directory):
    data = json.loads(Path(directory, "toy.out").read_text())
    return {"energy": data["energy"], "forces": np.array(data["forces"])}


class ToyLJ(FileIOCalculator):
    """A minimal ASE file-based calculator (not one of wflp's plugins)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, program, sleep=0.05, **kwargs):
        super().__init__(command=f"{shlex.quote(sys.executable)} {shlex.quote(program)} "
                                 "> toy.log 2> toy.err", **kwargs)
        self.sleep = sleep

    def write_input(self, atoms, properties=None, system_changes=None):
        super().write_input(atoms, properties, system_changes)
        _write_input(self.directory, atoms, {"sleep": self.sleep})

    def read_results(self):
        self.results = _read_output(self.directory)


class ToyRunner(FileCalculator):
    """A FileCalculator that writes, runs and reads itself (the plugins' way)."""

    code = "toyrun"
    main_outputs = ("toy.out", "toy.log")
    output_file = "toy.log"
    stderr_file = "toy.err"
    implemented_properties = ["energy", "forces"]

    def make_calculator(self, atoms, properties, workdir, command):
        return {"command": command, "workdir": workdir}

    def run(self, calc, atoms, properties, workdir):
        _write_input(workdir, atoms, {"sleep": self.parameters.get("sleep", 0.05),
                                      "params": self.parameters.get("params", "")})
        self.execute(shlex.split(calc["command"]), workdir, stdout="toy.log",
                     stderr="toy.err")
        return _read_output(workdir)

    def scf_converged(self, workdir, calc=None):
        text = Path(workdir, "toy.log").read_text() if Path(workdir, "toy.log").exists() else ""
        return False if "did not converge" in text else (True if "done" in text else None)

    def input_files(self):
        params = self.parameters.get("params")
        return {"params": file_sha256(params)} if params else {}


def clusters(n=8, natoms=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pos = np.array([[0, 0, 0], [1.1, 0, 0], [0, 1.1, 0], [0, 0, 1.1], [1.1, 1.1, 0],
                        [1.1, 0, 1.1]][:natoms], dtype=float)
        out.append(Atoms("Ar" * natoms, positions=pos + rng.normal(0, 0.05, pos.shape)))
    return out


def reference(atoms):
    at = atoms.copy()
    at.calc = LennardJones(rc=1e4)
    return at.get_potential_energy(), at.get_forces()


def private(path) -> bool:
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


@pytest.fixture
def pool():
    shutdown_pool()
    yield AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=2)
    shutdown_pool()


@pytest.mark.parametrize("flavour", ["generic", "runner"])
def test_two_processes_give_the_serial_results_in_private_run_directories(
        tmp_path, program, pool, flavour):
    ase.io.write(tmp_path / "in.xyz", clusters(8))
    configs = ase.io.read(tmp_path / "in.xyz", ":")  # the positions the program sees
    if flavour == "generic":
        calc = (GenericFileCalculator, [ToyLJ, program],
                {"code": "toy", "main_outputs": ["toy.out"], "sleep": 0.1})
        kept = {"toy.out"}
    else:
        calc = (ToyRunner, [], {"command": f"{sys.executable} {program}", "sleep": 0.1})
        kept = {"toy.out", "toy.log"}
    out = tmp_path / "out.xyz"
    result = list(calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(out), calculator=calc,
                            prefix="toy_", autopara_info=pool))
    serial = list(calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "s.xyz"),
                            calculator=calc, prefix="toy_"))
    root = tmp_path / "out.xyz.rundirs"
    assert private(root)
    for i, (at, ser, orig) in enumerate(zip(result, serial, configs)):
        energy, forces = reference(orig)
        assert at.info["toy_energy"] == pytest.approx(energy, abs=1e-9)
        assert np.allclose(at.arrays["toy_forces"], forces, atol=1e-9)
        assert at.info["toy_energy"] == ser.info["toy_energy"]
        rundir = Path(at.info["toy_rundir"])
        assert rundir == root / f"{i:06d}"
        assert private(rundir)
        assert {p.name for p in rundir.iterdir()} == kept  # input, pid, logs removed
    assert sorted(p.name for p in root.iterdir()) == [f"{i:06d}" for i in range(8)]


def test_failures_are_per_configuration_and_keep_everything(tmp_path, program):
    configs = clusters(2) + clusters(1, natoms=3) + clusters(1, natoms=5) + clusters(1)
    calc = (ToyRunner, [], {"command": f"{sys.executable} {program}"})
    out = list(calculate(configs, OutputSpec(tmp_path / "out.xyz"), calculator=calc,
                         prefix="toy_"))
    ok = [0, 1, 4]
    for i in ok:
        assert "toy_calc_failed" not in out[i].info
        assert out[i].info["toy_energy"] == pytest.approx(reference(configs[i])[0], abs=1e-9)
    crash, silent = out[2].info, out[3].info
    assert crash["toy_calc_failed"] and silent["toy_calc_failed"]
    crash_dir = str(tmp_path / "out.xyz.rundirs" / "000002")
    assert crash["toy_rundir"] == crash_dir
    error = crash["toy_calc_error"]
    assert error.startswith("CalculationError: toyrun calculation failed in " + crash_dir)
    assert "exited with status 3" in error and "SCF not converged" in error
    assert '"toy: SCF did not converge"' in error and 'stderr: "toy: giving up"' in error
    # a failed calculation keeps everything, to look at
    assert {"toy.in", "toy.pid", "toy.log", "toy.err"} <= set(os.listdir(crash_dir))
    assert "exit status 0" in silent["toy_calc_error"]
    assert "FileNotFoundError" in silent["toy_calc_error"]
    assert "toy.in" in os.listdir(silent["toy_rundir"])


def test_a_nan_energy_is_a_failure(tmp_path, program):
    [at] = calculate(clusters(1, natoms=2), OutputSpec(tmp_path / "o.xyz"),
                     calculator=(ToyRunner, [], {"command": f"{sys.executable} {program}"}),
                     prefix="t_")
    assert "t_energy" not in at.info
    assert "its energy is not a finite number (nan)" in at.info["t_calc_error"]


def test_the_error_carries_the_details_and_pickles(tmp_path, program):
    calc = ToyRunner(command=f"{sys.executable} {program}", rundir_root=str(tmp_path))
    atoms = clusters(1, natoms=3)[0]
    atoms.calc = calc
    with pytest.raises(CalculationError) as info:
        atoms.get_potential_energy()
    err = info.value
    assert err.code == "toyrun" and err.returncode == 3 and err.converged is False
    assert Path(err.directory).parent == tmp_path / "wflp-rundirs" or \
        Path(err.directory).parent == tmp_path
    assert err.output_file == "toy.log"
    assert err.output_tail[-1] == "toy: SCF did not converge"
    assert err.stderr_tail == ["toy: giving up"]
    assert "\n" not in str(err) and "toy: giving up" in err.report()
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.output_tail == err.output_tail


def test_generic_calculator_reports_the_exit_status_ase_saw(tmp_path, program):
    [out] = calculate(clusters(1, natoms=3), OutputSpec(tmp_path / "o.xyz"),
                      calculator=(GenericFileCalculator, [ToyLJ, program],
                                  {"code": "toy", "output_file": "toy.log",
                                   "stderr_file": "toy.err"}), prefix="toy_")
    error = out.info["toy_calc_error"]
    assert "exited with status 3" in error and "CalculationFailed" in error
    assert '"toy: SCF did not converge"' in error and '"toy: giving up"' in error


def test_keep_policies_and_empty_folders(tmp_path, program, monkeypatch):
    cmd = f"{sys.executable} {program}"
    for keep, expected in [("all", {"toy.in", "toy.out", "toy.log", "toy.err", "toy.pid"}),
                           (["*.in", "toy.err"], {"toy.in", "toy.err"})]:
        [at] = calculate(clusters(1), OutputSpec(tmp_path / f"{keep[0]}.xyz"),
                         calculator=(ToyRunner, [], {"command": cmd, "keep": keep}),
                         prefix="t_")
        assert set(os.listdir(at.info["t_rundir"])) == expected
    [at] = calculate(clusters(1), OutputSpec(tmp_path / "none.xyz"),
                     calculator=(ToyRunner, [], {"command": cmd, "keep": "none"}),
                     prefix="t_")
    assert "t_rundir" not in at.info and "t_energy" in at.info
    assert not (tmp_path / "none.xyz.rundirs").exists()  # empty folders removed
    monkeypatch.chdir(tmp_path)  # in memory, default root: nothing left behind either
    [at] = calculate(clusters(1), OutputSpec(),
                     calculator=(ToyRunner, [], {"command": cmd, "keep": "none"}), prefix="t_")
    assert "t_energy" in at.info and not (tmp_path / "wflp-rundirs").exists()
    with pytest.raises(ParameterError, match="keep must be 'main', 'all', 'none'"):
        check_keep("everything", "toyrun")


def test_prune_keeps_matching_files_and_whole_matching_folders(tmp_path):
    for rel in ["a.out", "b.tmp", "sub/c.out", "sub/d.tmp", "keep/x.bin", "empty/e.tmp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    prune(tmp_path, ["*.out", "keep"])
    found = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert found == ["a.out", "keep", "keep/x.bin", "sub", "sub/c.out"]


def test_in_memory_outputs_use_a_run_folder_under_the_root(tmp_path, program):
    root = tmp_path / "runs"
    out = list(calculate(clusters(3), OutputSpec(),
                         calculator=(ToyRunner, [], {"command": f"{sys.executable} {program}",
                                                     "rundir_root": str(root)}),
                         prefix="t_"))
    [run_folder] = list(root.iterdir())
    assert run_folder.name.startswith("calculate-") and private(root)
    assert [at.info["t_rundir"] for at in out] == [
        str(run_folder / f"{i:06d}") for i in range(3)]


def test_scratch_runs_there_and_copies_the_kept_files_back(tmp_path, program):
    scratch = tmp_path / "scratch"
    [at] = calculate(clusters(1), OutputSpec(tmp_path / "o.xyz"),
                     calculator=(ToyRunner, [], {"command": f"{sys.executable} {program}",
                                                 "scratch": str(scratch)}), prefix="t_")
    assert set(os.listdir(at.info["t_rundir"])) == {"toy.out", "toy.log"}
    assert list(scratch.iterdir()) == []


def test_a_rerun_reuses_the_names_and_starts_from_an_empty_directory(tmp_path, program):
    calc = (ToyRunner, [], {"command": f"{sys.executable} {program}"})
    first = list(calculate(clusters(2), OutputSpec(tmp_path / "o.xyz"), calculator=calc,
                           prefix="t_"))
    stale = Path(first[1].info["t_rundir"]) / "WAVECAR"
    stale.write_text("from an older run")
    again = list(calculate(clusters(2), OutputSpec(tmp_path / "o.xyz", overwrite=True),
                           calculator=calc, prefix="t_", properties=["energy"]))
    assert [a.info["t_rundir"] for a in again] == [a.info["t_rundir"] for a in first]
    assert not stale.exists()


def test_an_item_time_limit_kills_the_program(tmp_path, program):
    [at] = calculate(clusters(1, natoms=6), OutputSpec(tmp_path / "o.xyz"),
                     calculator=(ToyRunner, [], {"command": f"{sys.executable} {program}"}),
                     prefix="t_", autopara_info=AutoparaInfo(item_time_limit=3.0))
    assert at.info["t_calc_failed"] and "ItemTimeoutError" in at.info["t_calc_error"]
    pid = int((Path(at.info["t_rundir"]) / "toy.pid").read_text())
    # generous for a loaded machine, not scaled: it must stay below the program's 60 s nap
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the program (pid {pid}) still runs after the time limit")


def test_records_see_the_files_the_code_reads_and_the_command(tmp_path, program):
    params = tmp_path / "params.txt"
    params.write_text("1.0\n")
    cmd = f"{sys.executable} {program}"
    calc = (ToyRunner, [], {"command": cmd, "params": str(params)})
    out = tmp_path / "o.xyz"
    calculate(clusters(2), OutputSpec(out), calculator=calc, prefix="t_")
    calculate(clusters(2), OutputSpec(out), calculator=calc, prefix="t_")  # reused
    record = json.loads(Path(f"{out}.record.json").read_text())
    assert "provenance" in json.dumps(record)
    params.write_text("2.0\n")  # same path, other content
    with pytest.raises(RecordMismatchError, match="provenance"):
        calculate(clusters(2), OutputSpec(out), calculator=calc, prefix="t_")
    params.write_text("1.0\n")
    other = (ToyRunner, [], {"command": f"env TOY=1 {cmd}", "params": str(params)})
    with pytest.raises(RecordMismatchError, match="command"):
        calculate(clusters(2), OutputSpec(out), calculator=other, prefix="t_")
    # an instance is described the same way
    inst = ToyRunner(command=cmd, params=str(params))
    assert inst.__wflp_provenance__()["files"] == {"params": file_sha256(params)}


def test_env_goes_on_the_command_line_not_into_os_environ(tmp_path, program):
    calc = ToyRunner(command=f"{sys.executable} {program}", env={"OMP_NUM_THREADS": "1"})
    assert calc.command_for(clusters(1)[0]).startswith("env OMP_NUM_THREADS=1 ")
    assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] is not None
    with pytest.raises(ParameterError, match="not an environment variable name"):
        ToyRunner(command="x", env={"A B": "1"})


def test_a_missing_program_is_a_clear_per_configuration_failure(tmp_path):
    [at] = calculate(clusters(1), OutputSpec(tmp_path / "o.xyz"),
                     calculator=(ToyRunner, [], {"command": "/nonexistent/toy-program -x"}),
                     prefix="t_")
    assert "cannot run '/nonexistent/toy-program'" in at.info["t_calc_error"]
    assert "WFLP_TOYRUN_COMMAND" in at.info["t_calc_error"]


def test_folder_digest_follows_content(tmp_path):
    (tmp_path / "Si").mkdir()
    (tmp_path / "Si" / "POTCAR").write_text("one")
    first = folder_sha256(tmp_path, ["*/POTCAR"])
    (tmp_path / "Si" / "POTCAR").write_text("two")
    assert folder_sha256(tmp_path, ["*/POTCAR"])["sha256"] != first["sha256"]
    assert first["files"] == 1 and folder_sha256(tmp_path / "none") is None


def test_ase_warnings_and_prints_go_to_the_debug_log(tmp_path, program, capsys, caplog):
    class Noisy(ToyRunner):
        def run(self, calc, atoms, properties, workdir):
            import warnings

            warnings.warn("WARNING: this file contains warnings", stacklevel=2)
            print("Warning: If you are reading in an engrad file ...")
            return super().run(calc, atoms, properties, workdir)

    atoms = clusters(1)[0]
    atoms.calc = Noisy(command=f"{sys.executable} {program}", rundir_root=str(tmp_path))
    with caplog.at_level("DEBUG", logger="wflp"):
        with __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("error")  # a warning that escaped would raise
            atoms.get_potential_energy()
    assert capsys.readouterr().out == ""
    assert "this file contains warnings" in caplog.text
    assert "reading in an engrad file" in caplog.text


DOC = Path(__file__).resolve().parent.parent / "docs" / "fileio.md"


def test_the_docs_page_examples_run_as_shown(tmp_path, monkeypatch, capsys):
    import re

    blocks = re.findall(r"```python\n(.*?)```(?:\s*```text\n(.*?)```)?", DOC.read_text(), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    shutdown_pool()
    try:
        for i, (code, expected) in enumerate(blocks):
            exec(compile(code, f"fileio.md[{i}]", "exec"), {"__name__": "__docs__"})
            if expected:
                assert capsys.readouterr().out == expected
    finally:
        shutdown_pool()


class PatternCode(FileCalculator):
    """Only patterns declared: the default scf_converged and diagnose do the reading."""

    code = "patterns"
    output_file = "code.out"
    stderr_file = "code.err"
    converged_pattern = re.compile(r"SCF converged")
    not_converged_pattern = re.compile(r"SCF NOT converged")
    error_patterns = (re.compile(r"FATAL"), re.compile(r"error", re.I))
    error_output_lines = 3


def test_the_default_scf_verdict_comes_from_the_declared_patterns(tmp_path):
    calc = PatternCode()
    out = tmp_path / "code.out"
    assert calc.scf_converged(tmp_path) is None                    # no output at all
    out.write_text("start\nstep 1\n")
    assert calc.scf_converged(tmp_path) is None                    # it says neither
    out.write_text("step 1\nSCF NOT converged\nstep 2\nSCF converged\n")
    assert calc.scf_converged(tmp_path) is False     # a later "converged" does not undo it
    out.write_text("step 1\nSCF converged\nstep 2\nSCF converged\n")
    assert calc.scf_converged(tmp_path) is True
    out.write_text("SCF converged\nrelaxing\nSCF NOT converged\n")
    assert calc.scf_converged(tmp_path) is False                   # not converged after
    plain = type("Plain", (FileCalculator,), {"output_file": "code.out"})()
    assert plain.scf_converged(tmp_path) is None and plain.diagnose(tmp_path) is None


def test_the_default_diagnosis_is_the_last_line_of_the_most_telling_pattern(tmp_path):
    calc = PatternCode()
    assert calc.diagnose(tmp_path) is None                         # no files
    (tmp_path / "code.out").write_text("an error long ago\n" + "fine\n" * 5)
    assert calc.diagnose(tmp_path) is None           # outside the last error_output_lines
    (tmp_path / "code.err").write_text("Error: first\n** Error: no memory\t\nbye\n")
    assert calc.diagnose(tmp_path) == "Error: no memory"           # found in stderr
    (tmp_path / "code.out").write_text("fine\n  * FATAL: bad input\nerror: later\n")
    assert calc.diagnose(tmp_path) == "FATAL: bad input"  # the first pattern wins over later
    assert calc.find_error(["ok", "an Error here", "ok"]) == "an Error here"
    assert calc.find_error(["nothing"]) is None
