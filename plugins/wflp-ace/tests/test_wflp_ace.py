"""The ace plugin against the real python-ace: a linear ACE fit that predicts held-out
cells, E0s added back, reuse without running the fit again, mismatches, failures quoting
the fit's output, pacemaker's nonlinear fit, and discovery that imports nothing heavy."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest
from wflp.testing import require_module, scaled

require_module("pyace", "pip install python-ace (or pip install -e plugins/wflp-ace[test])")
require_module("wflp_ace", "pip install -e plugins/wflp-ace[test]")

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
from wflp_ace.fit import basis_config  # noqa: E402

# measured: 0.44 meV/atom and 13 meV/A on the test cells, whose own spread is 108 meV/atom
# (energy per atom) and 1368 meV/A (force components)
ENERGY_BOUND, FORCE_BOUND = 0.003, 0.060


@pytest.fixture
def fit_runs(monkeypatch):
    """Count the programs the fitter runs (the fit's own Python process, pacemaker)."""
    calls = []
    core_fit = importlib.import_module("wflp.ops.fit")  # the module (wflp.ops.fit is also
    real = core_fit.run_program                        # the name of the function)

    def counting(argv, *args, **kwargs):
        calls.append([str(a) for a in argv])
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(core_fit, "run_program", counting)
    return calls


def test_discovered_without_importing_pyace():
    reset_plugin_manager()
    [record] = [r for r in plugin_report() if r.distribution == "wflp-ace"]
    assert record.status == "ok", record.error
    assert record.registered == {"calculators": ["ace"], "fitters": ["ace"]}
    code = ("import sys\nfrom wflp.plugins import get_fitter, get_calculator, plugin_report\n"
            "plugin_report(); get_fitter('ace'); get_calculator('ace')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyace', 'pandas', "
            "'sklearn', 'torch', 'quippy', 'matplotlib'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_linear_fit_predicts_held_out_cells_and_is_reused(tmp_path, fit_runs):
    train, test = labelled_cu(30, seed=1), labelled_cu(20, seed=2)
    params = {"ref_prefix": "ref_", "e0": "average", "cutoff": 5.0}
    model = fit(train, OutputModel(tmp_path / "ace"), fitter="ace", params=params,
                autopara_info=AutoparaInfo(num_python_subprocesses=2))
    assert len(fit_runs) == 1
    assert sorted(p.name for p in model.directory.iterdir()) == [
        "ace.yaml", "ace_fit.out", "record.json"]
    assert "training errors" in (model.directory / "ace_fit.out").read_text()
    [e0] = model.calculator_kwargs["e0"].values()
    # evaluated in two worker processes, each building its own PyACECalculator
    out = calculate(test, OutputSpec(tmp_path / "test.ace.xyz"), calculator=model.calculator,
                    prefix="ace_", autopara_info=AutoparaInfo(num_python_subprocesses=2))
    report = error_report(out, "ref_", "ace_")
    assert report.rmse("energy_per_atom") < ENERGY_BOUND
    assert report.rmse("forces") < FORCE_BOUND
    # without its E0 the model would be off by exactly E0 per atom
    [first] = out.to_list()[:1]
    raw = calculate([first], OutputSpec(), prefix="raw_",
                    calculator=("ace", [], {"potential": model.main_file}))
    assert first.info["ace_energy"] - next(iter(raw)).info["raw_energy"] == pytest.approx(
        4 * e0)
    # the same record: reused without running anything
    assert fit(train, OutputModel(tmp_path / "ace"), fitter="ace", params=params) == model
    assert len(fit_runs) == 1
    with pytest.raises(RecordMismatchError, match=r"parameters\.params\.ridge"):
        fit(train, OutputModel(tmp_path / "ace"), fitter="ace", params={**params, "ridge": 1e-3})
    moved = [a.copy() for a in train]
    moved[0].info["ref_energy"] += 0.01
    with pytest.raises(RecordMismatchError, match=r"inputs\.sha256"):
        fit(moved, OutputModel(tmp_path / "ace"), fitter="ace", params=params)
    assert len(fit_runs) == 1


def test_isolated_atom_energies_come_back_exactly(tmp_path):
    rng = np.random.default_rng(4)
    frames = []
    for i in range(24):
        mol = molecule(("H2O", "CH4", "CO2", "C2H4")[i % 4])
        mol.positions += rng.normal(scale=0.05, size=mol.positions.shape)
        frames.append(mol)
    isolated = [Atoms(s, cell=[20] * 3, info={"config_type": "isolated_atom"})
                for s in ("H", "C", "O")]
    data = list(calculate(frames + isolated, OutputSpec(), calculator=EMT(), prefix="ref_"))
    params = {"ref_prefix": "ref_", "cutoff": 4.0}   # e0: the isolated atoms (the default)
    with pytest.raises(FitError, match="no E0 for O; add isolated atoms"):
        fit(data[:-1], OutputModel(tmp_path / "no_o"), fitter="ace", params=params)
    model = fit(data, OutputModel(tmp_path / "mol"), fitter="ace", params=params)
    expected = {a.get_chemical_symbols()[0]: a.info["ref_energy"] for a in data[-3:]}
    assert model.calculator_kwargs["e0"] == pytest.approx(expected)
    iso = calculate(isolated, OutputSpec(), calculator=model.calculator, prefix="ace_")
    assert [a.info["ace_energy"] for a in iso] == pytest.approx(
        [expected[s] for s in ("H", "C", "O")], abs=1e-9)
    report = error_report(calculate(data[:-3], OutputSpec(), calculator=model.calculator,
                                    prefix="ace_"), "ref_", "ace_")
    assert report.rmse("energy_per_atom") < 0.01   # the training set itself


def test_a_failing_fit_quotes_its_output(tmp_path):
    basis = basis_config(["Cu"], 5.0, [4], [0])
    basis["bonds"]["ALL"]["radbase"] = "NoSuchBasis"
    with pytest.raises(FitError, match="exited with status 1; last lines of stderr: .*"
                                       "Unknown radial basis function name: NoSuchBasis"):
        fit(labelled_cu(3, seed=3), OutputModel(tmp_path / "bad"), fitter="ace",
            params={"ref_prefix": "ref_", "e0": {"Cu": 0.0}, "basis": basis})
    [rundir] = [p for p in tmp_path.iterdir() if ".wflp-fit-" in p.name]
    assert "NoSuchBasis" in (rundir / "fit" / "ace_fit.err").read_text()
    with pytest.raises(FitError, match="has both xtb_energy and xtb_forces"):
        fit(labelled_cu(3, seed=3), OutputModel(tmp_path / "nokeys"), fitter="ace",
            params={"ref_prefix": "xtb_"})
    for bad, message in (({"method": "nonlinear"}, "method must be one of linear, "
                                                    "pacemaker"),
                         ({"nradmax_by_orders": [8, 3], "lmax_by_orders": [0]},
                          "one entry per body order"),
                         ({"e0": "mean"}, "e0 must be 'isolated', 'average'")):
        with pytest.raises(ParameterError, match=message):
            fit(labelled_cu(3, seed=3), OutputModel(tmp_path / "x"), fitter="ace",
                params={"ref_prefix": "ref_", **bad})


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed: the tensorpot backend would run")
def test_pacemaker_with_tensorpot_needs_tensorflow(tmp_path):
    with pytest.raises(ParameterError, match="needs TensorFlow.*backend='pyace'"):
        fit(labelled_cu(3, seed=3), OutputModel(tmp_path / "p"), fitter="ace",
            params={"ref_prefix": "ref_", "method": "pacemaker"})


@pytest.mark.slow
def test_pacemaker_nonlinear_fit_with_the_pyace_backend(tmp_path, fit_runs):
    """pacemaker's BFGS for real (3 iterations, pyace backend: about 15 s here): the loss
    goes down, and the model it writes evaluates."""
    train = labelled_cu(10, seed=1)
    model = fit(train, OutputModel(tmp_path / "pace"), fitter="ace",
                params={"ref_prefix": "ref_", "e0": "average", "method": "pacemaker",
                        "backend": "pyace", "max_iterations": 3,
                        "nradmax_by_orders": [4, 2], "lmax_by_orders": [0, 1]})
    assert [c[0].rsplit("/", 1)[-1] for c in fit_runs][-1] == "pacemaker"
    log = (model.directory / "pacemaker.out").read_text().replace("\r", "\n")
    losses = [float(x) for x in re.findall(r"Eval \d+: loss=([0-9.eE+-]+)", log)]
    final = float(re.search(r"Current function value: ([0-9.eE+-]+)", log).group(1))
    assert re.search(r"Iterations: 3\b", log)
    assert final < losses[0] / 2
    [at] = calculate(train[:1], OutputSpec(), calculator=model.calculator, prefix="ace_")
    assert np.isfinite(at.info["ace_energy"]) and np.isfinite(at.arrays["ace_forces"]).all()
