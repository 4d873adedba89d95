"""Fitted models are outputs with records: fit, reuse, mismatch, a fresh run directory,
every model file kept, the calculator straight from the model, and a fit as a queued job."""

from __future__ import annotations

import json
import os
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from remote_helpers import write_systems
from wflp import (
    AutoparaInfo,
    CalculatorSpec,
    ConfigSet,
    FitterSpec,
    OutputSpec,
    RemoteInfo,
    hookimpl,
)
from wflp.errors import OutputError, ParameterError, RecordMismatchError
from wflp.ops import calculate
from wflp.ops.fit import FitError, FittedModel, ModelFiles, OutputModel, fit

CALLS = Path(os.environ.get("WFLP_TEST_FIT_LOG", "/nonexistent"))


def fit_per_atom(training, workdir, energy_key="ref_energy", shift=0.0, fail=False, seed=None):
    """Mean energy per atom, plus a companion file the model needs (as gap.xml has)."""
    log = Path(os.environ["WFLP_TEST_FIT_LOG"])
    with open(log, "a") as fd:
        fd.write(f"{Path(workdir).parent.name}\n")
    if fail:
        (Path(workdir) / "fit.log").write_text("iteration 1\nerror: singular matrix\n")
        raise FitError("per_atom fit failed: error: singular matrix")
    assert not list(Path(workdir).iterdir()), "the run directory must be fresh"
    frames = ase.io.read(training, ":")
    e0 = float(np.mean([a.info[energy_key] / len(a) for a in frames])) + shift
    main = Path(workdir) / "model.json"
    main.write_text(json.dumps({"e0_file": "model.json.e0"}))
    (Path(workdir) / "model.json.e0").write_text(repr(e0))
    (Path(workdir) / "scratch.tmp").write_text("not part of the model")
    return ModelFiles("model.json", ("model.json", "model.json.e0"), {"scale": 1.0})


class PerAtom(Calculator):
    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        data = json.loads(Path(model).read_text())
        self.e0 = float(Path(model).with_name(data["e0_file"]).read_text()) * scale

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy = self.e0 * len(self.atoms)
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": np.zeros((len(self.atoms), 3))}


class FitPlugin:
    @hookimpl
    def wflp_fitters(self):
        return [FitterSpec(name="per_atom", summary="mean energy per atom (test)",
                           fit=fit_per_atom, calculator="per_atom", model_argument="model")]

    @hookimpl
    def wflp_calculators(self):
        return [CalculatorSpec(name="per_atom", summary="evaluates per_atom models",
                               factory=PerAtom, properties=("energy", "forces"),
                               picklable=True)]


@pytest.fixture
def fitter(register_wflp_plugin, tmp_path, monkeypatch):
    log = tmp_path / "fit-calls.log"
    monkeypatch.setenv("WFLP_TEST_FIT_LOG", str(log))
    register_wflp_plugin(FitPlugin())
    return lambda: log.read_text().split() if log.exists() else []


def training_set(shift=0.0):
    out = []
    for name, e in (("H2", -2.0), ("H2O", -6.0), ("CH4", -10.0)):
        at = molecule(name)
        at.info["ref_energy"] = e + shift
        out.append(at)
    return out


def test_fit_writes_every_model_file_and_a_record_then_reuses(tmp_path, fitter):
    model = fit(training_set(), OutputModel(tmp_path / "m"), "per_atom", seed=3)
    assert isinstance(model, FittedModel)
    assert sorted(os.listdir(tmp_path / "m")) == ["model.json", "model.json.e0", "record.json"]
    record = json.loads((tmp_path / "m" / "record.json").read_text())
    assert record["kind"] == "fit" and record["name"] == "per_atom"
    assert record["parameters"] == {"params": {}, "seed": 3}
    assert record["inputs"]["count"] == 3
    assert {o["file"] for o in record["outputs"]} == {"model.json", "model.json.e0"}
    assert len(fitter()) == 1
    again = fit(training_set(), OutputModel(tmp_path / "m"), "per_atom", seed=3)
    assert len(fitter()) == 1 and again == model  # reused without running the fitter
    assert not [p for p in tmp_path.iterdir() if ".wflp-fit-" in p.name]  # run dir removed


def test_changed_parameter_or_training_data_is_a_mismatch(tmp_path, fitter):
    fit(training_set(), OutputModel(tmp_path / "m"), "per_atom", params={"shift": 0.0})
    with pytest.raises(RecordMismatchError, match=r"parameters\.params\.shift: 0\.0 -> 0\.5"):
        fit(training_set(), OutputModel(tmp_path / "m"), "per_atom", params={"shift": 0.5})
    with pytest.raises(RecordMismatchError, match=r"inputs\.sha256"):
        fit(training_set(1.0), OutputModel(tmp_path / "m"), "per_atom", params={"shift": 0.0})
    assert len(fitter()) == 1
    fit(training_set(1.0), OutputModel(tmp_path / "m", overwrite=True), "per_atom",
        params={"shift": 0.0})
    assert len(fitter()) == 2


def test_the_calculator_comes_from_the_model_and_a_refit_is_not_reused(tmp_path, fitter):
    test = [molecule("NH3"), molecule("C2H6")]
    model = fit(training_set(), OutputModel(tmp_path / "m"), "per_atom")
    out = tmp_path / "eval.xyz"
    got = list(calculate(test, OutputSpec(out), calculator=model.calculator, prefix="M_"))
    e0 = np.mean([-1.0, -2.0, -2.0])
    assert [a.info["M_energy"] for a in got] == pytest.approx([4 * e0, 8 * e0])
    # the same model: the evaluation is reused; a refitted model (same path!) is not
    calculate(test, OutputSpec(out), calculator=model.calculator, prefix="M_")
    refit = fit(training_set(3.0), OutputModel(tmp_path / "m", overwrite=True), "per_atom")
    assert refit.main_file == model.main_file
    with pytest.raises(RecordMismatchError, match=r"calculator\.kwargs\.model.*sha256"):
        calculate(test, OutputSpec(out), calculator=refit.calculator, prefix="M_")
    assert FittedModel.load(tmp_path / "m") == refit


def test_failed_fit_keeps_its_run_directory_and_writes_no_model(tmp_path, fitter):
    with pytest.raises(FitError, match="singular matrix"):
        fit(training_set(), OutputModel(tmp_path / "m"), "per_atom", params={"fail": True})
    assert not (tmp_path / "m").exists()
    [rundir] = [p for p in tmp_path.iterdir() if ".wflp-fit-" in p.name]
    assert (rundir / "fit" / "fit.log").read_text().endswith("singular matrix\n")
    assert (rundir / "training.xyz").exists()
    # the corrected rerun starts afresh (the leftover is removed, never reused)
    fit(training_set(), OutputModel(tmp_path / "m"), "per_atom")
    assert not rundir.exists()
    assert len(set(fitter())) == 2  # two different run directories


def test_bad_arguments_are_refused_before_fitting(tmp_path, fitter):
    with pytest.raises(ParameterError, match="unknown parameter 'shiftt'"):
        fit(training_set(), OutputModel(tmp_path / "m"), "per_atom", params={"shiftt": 1})
    with pytest.raises(ParameterError, match="'seed' is given by fit"):
        fit(training_set(), OutputModel(tmp_path / "m"), "per_atom", params={"seed": 1})
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file; a model is a folder"):
        fit(training_set(), OutputModel(tmp_path / "f"), "per_atom")
    assert fitter() == []


def test_fit_as_a_queued_job(tmp_path, fitter, remote_env):
    write_systems(remote_env, tmp_path)
    info = AutoparaInfo(remote_info=RemoteInfo(system="ws", job_name="fit",
                                               resources={"num_cores": 1, "max_time": "5m"}))
    ase.io.write("train.xyz", training_set())
    model = fit(ConfigSet("train.xyz"), OutputModel("remote_model"), "per_atom",
                autopara_info=info)
    local = fit(ConfigSet("train.xyz"), OutputModel("local_model"), "per_atom")
    for name in ("model.json", "model.json.e0"):
        assert (model.directory / name).read_bytes() == (local.directory / name).read_bytes()
    from wflp.remote import manager

    [row] = manager().store.select()
    assert row.state == "succeeded" and row.name.startswith("fit-")


def test_chain_with_a_fit_step_and_a_calculator_step_using_the_model(tmp_path, fitter):
    from test_cli import invoke
    from wflp.chain import run_chain

    ase.io.write(tmp_path / "train.xyz", training_set())
    chain = {"chain": {"inputs": "train.xyz", "seed": 4},
             "step": [{"kind": "fitter", "name": "per_atom", "output": "model",
                       "params": {"shift": 0.25}},
                      {"kind": "calculator", "model": "model", "output": "evaluated.xyz",
                       "prefix": "M_"}]}
    first = run_chain(chain, base_dir=tmp_path)
    assert [s.reused for s in first.steps] == [False, False]
    got = list(first.outputs)
    e0 = np.mean([-1.0, -2.0, -2.0]) + 0.25
    assert [a.info["M_energy"] for a in got] == pytest.approx([e0 * len(a) for a in got])
    again = run_chain(chain, base_dir=tmp_path)
    assert [s.reused for s in again.steps] == [True, True] and len(fitter()) == 1
    # the model is part of what the evaluation was made from
    chain["step"][0]["params"] = {"shift": 0.5}
    with pytest.raises(RecordMismatchError, match="step 1"):
        run_chain(chain, base_dir=tmp_path)
    again = run_chain(chain, base_dir=tmp_path, overwrite=True)
    assert [s.reused for s in again.steps] == [False, False]
    bad = {"chain": {"inputs": "train.xyz"},
           "step": [{"kind": "calculator", "model": "nowhere", "output": "e.xyz"}]}
    with pytest.raises(ParameterError, match="must be the output of an earlier fitter step"):
        run_chain(bad, base_dir=tmp_path)
    # and from the command line
    result = invoke("run", "fitter", "per_atom", "-i", str(tmp_path / "train.xyz"), "-o",
                    str(tmp_path / "cli_model"), "--set", "shift=0.1")
    assert result.exit_code == 0, result.stderr
    assert "-> " in result.stdout and ": model, done in" in result.stdout
    assert FittedModel.load(tmp_path / "cli_model").main == "model.json"
