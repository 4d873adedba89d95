"""examples/iterative_fit.py --small end to end: killed with SIGKILL in the middle of
iteration 2, resumed, then rerun; the error table, the records and the data flow."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "iterative_fit.py"
STEPS_PER_ITERATION = 8  # MD at three temperatures, SOAP, CUR, xTB, fit, test set
DEMO_STEPS = 11          # the demo's step lines (its errors-and-plots line is not echoed)
ZERO_STEPS = 2           # iteration 0: the demo's training set refitted, the test set
STEPS_BEFORE = DEMO_STEPS + ZERO_STEPS
OUTPUTS = ["md_300K.xyz", "md_600K.xyz", "md_1000K.xyz", "md_soap.xyz", "new.xyz",
           "new.xtb.xyz", "test.gap.xyz"]


def _needs_the_plugins():
    from wflp.testing import require_module, require_program

    for module in ("wflp_xtb", "wflp_smiles", "wflp_soap", "wflp_gap", "wflp_plots"):
        require_module(module, "bash scripts/dev-install.sh (installs every plugin)")
    require_module("quippy", "pip install quippy-ase")
    require_program("gap_fit", "pip install quippy-ase")


def _step_lines(stdout):
    """[(step name, "done" | "reused")] from the example's step lines, in order."""
    found = []
    for line in stdout.splitlines():
        if line.startswith("  ") and " s   " in line:
            head = line.rsplit(" s   ", 1)[0].rsplit(None, 2)
            found.append((head[0].strip(), head[1]))
    return found


def _run(out, timeout):
    done = subprocess.run([sys.executable, str(EXAMPLE), "--small", "--out", str(out)],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_iterative_example_resumes_after_kill_9_and_reruns_from_its_records(tmp_path):
    """About a minute on 2 idle cores: the demo --small, then three iterations."""
    from wflp.testing import scaled, wait_until

    _needs_the_plugins()
    out = tmp_path / "out"
    mid_iteration_2 = out / "iter_02" / "md_300K.xyz.record.json"

    # 1. a fresh run, killed (the driver and its workers) once iteration 2's first step
    # has its record: iteration 1 complete, iteration 2 under way
    log, err = tmp_path / "killed.out", tmp_path / "killed.err"
    with open(log, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--small", "--out", str(out)],
                                stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        def started_iteration_2():
            if proc.poll() is not None:
                raise AssertionError(f"the example exited ({proc.returncode}) before "
                                     f"iteration 2: {err.read_text()[-3000:]}")
            return mid_iteration_2.exists()

        wait_until(started_iteration_2, timeout=600, what=str(mid_iteration_2),
                   interval=0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=scaled(60))
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    assert not (out / "errors_by_iteration.json").exists()
    assert not (out / "iter_02" / "model_gap").exists()

    # 2. the rerun resumes where the kill struck: nothing before it is computed again
    resumed = _run(out, scaled(600))
    steps = _step_lines(resumed)
    assert len(steps) == STEPS_BEFORE + 3 * STEPS_PER_ITERATION, steps
    # the demo, iteration 0, iteration 1, MD at 300 K
    finished = STEPS_BEFORE + STEPS_PER_ITERATION + 1
    assert steps[finished - 1][0] == "2.1 MD at 300 K, GAP 1"
    computed = [name for name, state in steps[:finished] if state != "reused"]
    assert not computed, f"computed again after the kill: {computed}\n{resumed}"
    assert steps[-2:] == [("3.5 GAP fit", "done"), ("3.6 GAP 3 on the test set", "done")]

    # 3. the table: three iterations after the demo's model, on the fixed test set
    summary = json.loads((out / "errors_by_iteration.json").read_text())
    rows = summary["iterations"]
    assert [row["iteration"] for row in rows] == [1, 2, 3]
    assert summary["start"]["iteration"] == 0 and summary["start"]["training_frames"] == 40
    assert [row["training_frames"] for row in rows] == [48, 56, 64]  # 40 + 8 new each
    for row in [summary["start"]] + rows:
        assert row["test"]["count"] == 15  # the demo's --small test set, every time
        assert 0 < row["test"]["energy_rmse_meV_per_atom"] < 1000
        assert 0 < row["test"]["forces_rmse_meV_per_A"] < 10000
    assert all(row["new_frames_before"]["count"] == 8 for row in rows)
    # the demo's own model is reported beside, on the same test set
    assert summary["demo_model"]["test"]["count"] == 15
    assert summary["demo_model"]["test"] != summary["start"]["test"]
    assert len({row["test"]["forces_rmse_meV_per_A"] for row in rows}) == 3  # 3 models
    printed = resumed[resumed.index("GAP test-set errors by iteration"):].splitlines()
    assert [ln.split()[0] for ln in printed[3:7]] == ["0", "1", "2", "3"]
    assert (out / "errors_by_iteration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # 4. every step has a record; each MD ran with the model of the iteration before
    # iteration 0 refits the demo's training set (with this example's GAP settings);
    # iteration 1's MD runs with that model
    model_record = {0: out / "iter_00" / "model_gap" / "record.json"}
    assert (out / "iter_00" / "test.gap.xyz.record.json").exists()
    for n in (1, 2, 3):
        folder = out / f"iter_0{n}"
        for name in OUTPUTS:
            assert (folder / (name + ".record.json")).exists(), folder / name
        model_record[n] = folder / "model_gap" / "record.json"
        assert model_record[n].exists()
        md_params = json.loads((folder / "md_600K.xyz.record.json").read_text())["parameters"]
        used = md_params["calculator"]["kwargs"]["param_filename"]["provenance"]["sha256"]
        assert used == json.loads(model_record[n - 1].read_text())["model"]["digests"]
        cur = json.loads((folder / "new.xyz.record.json").read_text())["parameters"]
        assert cur["exclude"]  # the training set so far, described in the record

    # the SOAP sparse points grow with the training set from the demo's 60 for 40
    # frames; every model, iteration 0's too, has the same SOAP delta
    soaps = []
    for n in (0, 1, 2, 3):
        params = json.loads(model_record[n].read_text())["parameters"]["params"]
        soaps += [d for d in params["descriptors"] if d["type"] == "soap"]
    assert [d["n_sparse"] for d in soaps] == [60, 72, 84, 96]  # 60 x 40/40 ... 60 x 64/40
    assert {d["delta"] for d in soaps} == {1.0}

    # the last model was fitted to the demo's training set, every iteration's new frames
    # and the isolated atoms
    traced = subprocess.run([sys.executable, "-m", "wflp.cli", "lineage",
                             str(out / "iter_03" / "model_gap"), "--format", "json"],
                            capture_output=True, text=True, timeout=scaled(120))
    assert traced.returncode == 0, traced.stderr
    links = json.loads(traced.stdout)["links"]
    fitted_from = {"/".join(Path(e["source"]).parts[-2:]) for e in links
                   if Path(e["target"]).parts[-2:] == ("iter_03", "model_gap")}
    assert fitted_from == {"demo-small/05_train.xyz", "demo-small/01_isolated.xtb.xyz",
                           "iter_01/new.xtb.xyz", "iter_02/new.xtb.xyz",
                           "iter_03/new.xtb.xyz"}

    # 5. a second run reuses every step and gives the same table
    again = _run(out, scaled(300))
    steps = _step_lines(again)
    assert len(steps) == STEPS_BEFORE + 3 * STEPS_PER_ITERATION
    assert all(state == "reused" for _name, state in steps), steps
    assert "every step reused its output" in again
    assert json.loads((out / "errors_by_iteration.json").read_text()) == summary


@pytest.mark.parametrize("argv,message", [
    (["--processes", "0"], "--processes must be >= 1, got 0"),
    (["--out", "{file}"], "--out '{file}' is a file; name a folder"),
], ids=["processes-0", "out-is-a-file"])
def test_bad_arguments_exit_2_naming_the_argument_before_any_work(tmp_path, argv, message):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    argv = [a.format(file=taken) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, str(EXAMPLE), "--small", *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message.format(file=taken) in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing written
