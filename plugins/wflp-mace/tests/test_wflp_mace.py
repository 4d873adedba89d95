"""The mace plugin against the real mace-torch (a few epochs on the CPU): a model that
predicts held-out cells, reuse without training again, mismatches, failures quoting
mace_run_train, E0 handling, and discovery that imports neither torch nor mace."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys

import pytest
from wflp.testing import require_module, scaled

require_module("mace", "pip install torch==2.13.0, then pip install -e plugins/wflp-mace[test]")
require_module("wflp_mace", "pip install -e plugins/wflp-mace[test]")

from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402
from wflp import AutoparaInfo, OutputSpec  # noqa: E402
from wflp.analysis import error_report  # noqa: E402
from wflp.errors import ParameterError, RecordMismatchError  # noqa: E402
from wflp.ops import OutputModel, calculate, fit  # noqa: E402
from wflp.ops.fit import FitError  # noqa: E402
from wflp.plugins import plugin_report, reset_plugin_manager  # noqa: E402
from wflp.testing import labelled_cu  # noqa: E402
from wflp_mace.fit import _check, command_line, find_program  # noqa: E402

PARAMS = {"ref_prefix": "ref_", "e0": "average", "max_num_epochs": 15, "r_max": 4.5}
# measured after 15 epochs: 15 meV/atom and 255 meV/A on the test cells, whose own spread
# is 108 meV/atom (energy per atom) and 1368 meV/A (force components)
ENERGY_BOUND, FORCE_BOUND = 0.050, 0.500


@pytest.fixture
def counted_mace(tmp_path):
    """mace_run_train behind a script that counts its runs: (program path, runs())."""
    real = find_program("mace_run_train")
    log = tmp_path / "mace_runs.log"
    shim = tmp_path / "bin" / "mace_run_train"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return str(shim), lambda: len(log.read_text().split()) if log.exists() else 0


def test_discovered_without_importing_torch():
    reset_plugin_manager()
    [record] = [r for r in plugin_report() if r.distribution == "wflp-mace"]
    assert record.status == "ok", record.error
    assert record.registered == {"calculators": ["mace"], "fitters": ["mace"]}
    code = ("import sys\nfrom wflp.plugins import get_fitter, get_calculator, plugin_report\n"
            "plugin_report(); get_fitter('mace'); get_calculator('mace')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mace', 'e3nn', "
            "'quippy', 'pyace', 'matplotlib'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_parameters_become_mace_run_train_arguments():
    options = _check("isolated", "xtb_", "MACE", 8, 1, 5.0, 2, 3, 7, 4, 10.0, 100.0, 0.005,
                     0.2, "float32", {"ema": True, "swa": False, "patience": 5})
    args = command_line(options, {"O": -2000.5, "H": -13.6}, seed=None)
    assert args == [
        "--name=mace", "--train_file=mace_train.xyz", "--valid_fraction=0.2",
        "--E0s={1: -13.6, 8: -2000.5}", "--energy_key=wflp_energy",
        "--forces_key=wflp_forces", "--model=MACE", "--num_channels=8", "--max_L=1",
        "--r_max=5.0", "--num_interactions=2", "--correlation=3", "--max_num_epochs=7",
        "--batch_size=4", "--energy_weight=10.0", "--forces_weight=100.0", "--lr=0.005",
        "--device=cpu", "--default_dtype=float32", "--seed=0", "--ema", "--patience=5"]
    assert "--E0s=average" in command_line(options, "average", seed=3)
    defaults = dict(e0="isolated", ref_prefix="", model="MACE", num_channels=16, max_L=0,
                    r_max=4.0, num_interactions=2, correlation=2, max_num_epochs=30,
                    batch_size=5, energy_weight=100.0, forces_weight=100.0, lr=0.01,
                    valid_fraction=0.1, default_dtype="float64", extra=None)
    for change, message in (({"e0": "mean"}, "e0 must be"),
                            ({"model": "MACE3"}, "model must be one of"),
                            ({"num_channels": 0}, "num_channels must be a whole number >= 1"),
                            ({"valid_fraction": 0.9}, "valid_fraction must be a number > 0"),
                            ({"extra": {"device": "cuda"}}, "'device' is set by the fitter")):
        with pytest.raises(ParameterError, match=message):
            _check(**{**defaults, **change})


@pytest.mark.slow
def test_a_few_epochs_predict_held_out_cells_and_the_model_is_reused(tmp_path, counted_mace):
    """15 epochs on 30 cells of 4 atoms: 20-45 s on 2 cores, plus loading torch."""
    program, runs = counted_mace
    train, test = labelled_cu(30, seed=1), labelled_cu(20, seed=2)
    params = {**PARAMS, "program": program}
    model = fit(train, OutputModel(tmp_path / "mace"), fitter="mace", params=params, seed=1,
                autopara_info=AutoparaInfo(num_python_subprocesses=2))
    assert runs() == 1
    assert sorted(p.name for p in model.directory.iterdir()) == [
        "mace.model", "mace_run_train.out", "record.json"]
    out = calculate(test, OutputSpec(tmp_path / "test.mace.xyz"), calculator=model.calculator,
                    prefix="mace_", autopara_info=AutoparaInfo(num_python_subprocesses=2))
    report = error_report(out, "ref_", "mace_")
    assert report.rmse("energy_per_atom") < ENERGY_BOUND
    assert report.rmse("forces") < FORCE_BOUND
    assert fit(train, OutputModel(tmp_path / "mace"), fitter="mace", params=params,
               seed=1) == model
    assert runs() == 1
    with pytest.raises(RecordMismatchError, match=r"parameters\.params\.energy_weight"):
        fit(train, OutputModel(tmp_path / "mace"), fitter="mace", seed=1,
            params={**params, "energy_weight": 1.0})
    moved = [a.copy() for a in train]
    moved[5].positions[1, 2] += 0.02
    with pytest.raises(RecordMismatchError, match=r"inputs\.sha256"):
        fit(moved, OutputModel(tmp_path / "mace"), fitter="mace", params=params, seed=1)
    assert runs() == 1
    # built in a process that had not imported mace: what importing it changes is put back
    code = ("import logging, os\nfrom wflp.calculators import construct_calculator\n"
            f"calc = construct_calculator(('mace', [], {{'model_paths': {str(model.main_file)!r}"
            "}))\nprint(type(calc).__name__, logging.getLogger().level, "
            "os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'))\n")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300, env={k: v for k, v in os.environ.items()
                                             if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"})
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split()[-3:] == ["MACECalculator", str(logging.WARNING), "None"]


def test_isolated_atoms_are_the_e0s_and_not_training_data(tmp_path, monkeypatch):
    """e0='isolated': the single-atom configurations become --E0s and stay out of the
    training file (checked with a stand-in that records its arguments and fails)."""
    fake = tmp_path / "fake_mace_run_train"
    fake.write_text('#!/bin/sh\necho "$@" > args.txt\necho "threads=$OMP_NUM_THREADS"\n'
                    'echo "training went wrong" >&2\nexit 4\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    mols = [molecule("H2O"), molecule("H2O"), molecule("H2")]
    mols[1].positions[0, 0] += 0.05
    isolated = [Atoms(s, cell=[20] * 3) for s in ("H", "O")]
    data = list(calculate(mols + isolated, OutputSpec(), calculator=EMT(), prefix="ref_"))
    with pytest.raises(FitError, match="exited with status 4; last lines of stdout: "
                                       "threads=2; stderr: training went wrong"):
        fit(data, OutputModel(tmp_path / "m"), fitter="mace",
            params={"ref_prefix": "ref_", "program": str(fake)},
            autopara_info=AutoparaInfo(num_python_subprocesses=2))
    [rundir] = [p for p in tmp_path.iterdir() if ".wflp-fit-" in p.name]
    args = (rundir / "fit" / "args.txt").read_text()
    e_h, e_o = (float(data[i].info["ref_energy"]) for i in (3, 4))
    assert f"--E0s={{1: {e_h!r}, 8: {e_o!r}}}" in args
    import ase.io

    written = ase.io.read(rundir / "fit" / "mace_train.xyz", ":")
    assert [len(a) for a in written] == [3, 3, 2]
    with pytest.raises(FitError, match="needs an isolated atom of every element; none for O"):
        fit(data[:-1], OutputModel(tmp_path / "m2"), fitter="mace",
            params={"ref_prefix": "ref_", "program": str(fake)})
    assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] != "2"


def test_a_failing_training_quotes_mace_run_train(tmp_path):
    with pytest.raises(FitError) as err:
        fit(labelled_cu(4, seed=3), OutputModel(tmp_path / "bad"), fitter="mace",
            params={**PARAMS, "max_num_epochs": 1, "extra": {"loss": "nonsense"}})
    message = str(err.value)
    assert "mace_run_train exited with status 2" in message
    assert "invalid choice: 'nonsense'" in message
    assert not (tmp_path / "bad").exists()
