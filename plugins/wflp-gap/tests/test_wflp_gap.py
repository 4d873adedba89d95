"""The gap plugin against the real gap_fit and quippy: a fit that predicts held-out cells,
reuse without running gap_fit again, mismatches, failures quoting gap_fit, molecules
without a cell, and discovery that imports nothing heavy."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from wflp.testing import require_module, require_program, scaled

require_module("quippy", "pip install quippy-ase (or pip install -e plugins/wflp-gap[test])")
require_module("wflp_gap", "pip install -e plugins/wflp-gap[test]")

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
from wflp_gap.fit import _check, command_line, find_program  # noqa: E402

# a small GAP: a pair term and SOAP, a few seconds on 30 cells of 4 atoms
DESCRIPTORS = [
    {"type": "distance_2b", "cutoff": 5.0, "covariance_type": "ard_se", "delta": 0.5,
     "theta_uniform": 1.0, "n_sparse": 10, "sparse_method": "uniform"},
    {"type": "soap", "l_max": 3, "n_max": 4, "cutoff": 4.5, "atom_sigma": 0.5, "delta": 0.1,
     "covariance_type": "dot_product", "zeta": 2, "n_sparse": 40,
     "sparse_method": "cur_points"},
]
PARAMS = {"descriptors": DESCRIPTORS, "default_sigma": [0.001, 0.03, 0.03, 0.0],
          "ref_prefix": "ref_"}
# measured: 4.4 meV/atom and 104 meV/A on the test cells; the data's own spread is
# 108 meV/atom (energy per atom) and 1368 meV/A (force components)
ENERGY_BOUND, FORCE_BOUND = 0.015, 0.300


@pytest.fixture
def counted_gap_fit(tmp_path):
    """gap_fit behind a script that counts its runs: (program path, runs())."""
    real = find_program("gap_fit")
    log = tmp_path / "gap_fit_runs.log"
    shim = tmp_path / "bin" / "gap_fit"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\necho run >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return str(shim), lambda: len(log.read_text().split()) if log.exists() else 0


def test_discovered_without_importing_quippy():
    reset_plugin_manager()
    [record] = [r for r in plugin_report() if r.distribution == "wflp-gap"]
    assert record.status == "ok", record.error
    # panels register no names: the model panel is listed as a kind with none
    assert record.registered == {"calculators": ["gap"], "fitters": ["gap"], "panels": []}
    code = ("import sys\nfrom wflp.plugins import get_fitter, get_calculator, plugin_report\n"
            "plugin_report(); get_fitter('gap'); get_calculator('gap')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'quippy', 'ase', 'numpy',"
            " 'pyace', 'torch', 'matplotlib'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert "quippy" not in out.stdout and "torch" not in out.stdout


def test_parameters_become_gap_fit_arguments():
    options = _check(DESCRIPTORS[:1], [0.002, 0.05, 0.05, 0], {"H": -13.6, "O": -2000.0},
                     {"isolated_atom": [1e-4, 1e-4, 0, 0]}, "xtb_", 1e-8,
                     {"openmp_chunk_size": 1000, "core_ip_args": "IP Glue"})
    args = command_line(options, seed=7, virials=True)
    assert args == [
        "at_file=gap_train.xyz",
        "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=0.5 theta_uniform=1.0 "
        "n_sparse=10 sparse_method=uniform}",
        "default_sigma={0.002 0.05 0.05 0.0}",
        "e0={H:-13.6:O:-2000.0}",
        "config_type_sigma={isolated_atom:0.0001:0.0001:0.0:0.0}",
        "energy_parameter_name=wflp_energy", "force_parameter_name=wflp_forces",
        "virial_parameter_name=wflp_virial", "sparse_jitter=1e-08", "gp_file=gap.xml",
        "rnd_seed=7", "do_copy_at_file=F", "openmp_chunk_size=1000", "core_ip_args={IP Glue}"]
    two = command_line(_check(DESCRIPTORS, [0.001, 0.03, 0.03, 0], "isolated", None, "", 0,
                              None), seed=None, virials=False)
    assert two[1].count(" : ") == 1 and "e0_method=isolated" in two
    assert not any(a.startswith(("rnd_seed", "virial_parameter_name")) for a in two)
    three = command_line(_check(DESCRIPTORS, [0.001, 0.03, 0.03, 0], None, None, "", 0, None),
                         seed=None, virials=False)
    assert "e0_method=average" in three   # None is average (gap_fit's default is isolated)
    for bad, message in (([], "non-empty list"), ([{"l_max": 3}], "with a 'type'"),
                         ([{"type": "soap", "a b": 1}], "not a gap_fit option")):
        with pytest.raises(ParameterError, match=message):
            _check(bad, [0.001, 0.03, 0.03, 0], None, None, "", 0, None)
    with pytest.raises(ParameterError, match="default_sigma"):
        _check(DESCRIPTORS, [0.001, 0.03], None, None, "", 0, None)
    with pytest.raises(ParameterError, match="'gp_file' is set by the fitter"):
        _check(DESCRIPTORS, [0.001, 0.03, 0.03, 0], None, None, "", 0, {"gp_file": "x.xml"})


def test_fit_predicts_held_out_cells_and_is_reused(tmp_path, counted_gap_fit):
    require_program("gap_fit", "pip install quippy-ase (it installs gap_fit)")
    program, runs = counted_gap_fit
    train, test = labelled_cu(30, seed=1), labelled_cu(20, seed=2)
    params = {**PARAMS, "program": program}
    model = fit(train, OutputModel(tmp_path / "gap"), fitter="gap", params=params, seed=1,
                autopara_info=AutoparaInfo(num_python_subprocesses=2))
    assert runs() == 1
    # every file gap.xml names is kept beside it, and only the model's files
    names = sorted(p.name for p in model.directory.iterdir())
    sparse = sorted(set(re.findall(r"gap\.xml\.sparseX\.[\w.]+",
                                   model.main_file.read_text())))
    assert len(sparse) == 2 and names == sorted(["gap.xml", "gap_fit.out", "record.json",
                                                 *sparse])
    # wflp browse shows the model's panel from gap.xml: a row per descriptor, with the
    # sparse points asked for, and the file it was fitted to (no absolute path)
    from wflp.plugins import get_plugin_manager
    from wflp.records import query

    given = dict(get_plugin_manager().call_each(
        "wflp_panels", output=model.directory, record=query.status(model.directory).record))
    (panel,) = given["wflp-gap"] if "wflp-gap" in given else given["gap"]
    assert panel["title"] == "GAP model"
    assert [row[0].split()[0] for row in panel["table"][1:]] == ["distance_2b", "soap"]
    assert [row[1] for row in panel["table"][1:]] == ["10", "40"]
    assert "gap.xml (" in panel["text"] and str(tmp_path) not in panel["text"]
    # and only for GAP folders: nothing for a file or a missing record
    assert dict(get_plugin_manager().call_each("wflp_panels", output=model.main_file,
                                               record=None)).get("wflp-gap", []) == []
    # evaluated in two worker processes, each building its own quippy Potential
    out = calculate(test, OutputSpec(tmp_path / "test.gap.xyz"), calculator=model.calculator,
                    prefix="gap_", autopara_info=AutoparaInfo(num_python_subprocesses=2))
    report = error_report(out, "ref_", "gap_")
    assert report.rmse("energy_per_atom") < ENERGY_BOUND
    assert report.rmse("forces") < FORCE_BOUND
    assert report.rmse("virial_per_atom") < 0.3   # stresses were fitted as virials
    # the same record: reused, gap_fit not run again
    again = fit(train, OutputModel(tmp_path / "gap"), fitter="gap", params=params, seed=1)
    assert again == model and runs() == 1
    # a changed parameter, seed or training configuration is a mismatch
    with pytest.raises(RecordMismatchError, match=r"parameters\.params\.default_sigma"):
        fit(train, OutputModel(tmp_path / "gap"), fitter="gap", seed=1,
            params={**params, "default_sigma": [0.002, 0.03, 0.03, 0.0]})
    with pytest.raises(RecordMismatchError, match=r"parameters\.seed"):
        fit(train, OutputModel(tmp_path / "gap"), fitter="gap", params=params, seed=2)
    moved = [a.copy() for a in train]
    moved[3].positions[0, 0] += 0.01
    with pytest.raises(RecordMismatchError, match=r"inputs\.sha256"):
        fit(moved, OutputModel(tmp_path / "gap"), fitter="gap", params=params, seed=1)
    assert runs() == 1


def test_molecules_without_a_cell_and_isolated_atom_e0(tmp_path):
    require_program("gap_fit", "pip install quippy-ase (it installs gap_fit)")
    rng = np.random.default_rng(5)
    frames = []
    for i in range(12):
        mol = molecule(("H2O", "H2")[i % 2])
        mol.positions += rng.normal(scale=0.05, size=mol.positions.shape)
        frames.append(mol)
    isolated = [Atoms(s, cell=[20] * 3, info={"config_type": "isolated_atom"})
                for s in ("H", "O")]
    data = list(calculate(frames + isolated, OutputSpec(), calculator=EMT(), prefix="ref_"))
    assert frames[0].cell.rank == 0
    params = {"descriptors": [dict(DESCRIPTORS[1], cutoff=3.0, n_sparse=10)],
              "default_sigma": [0.005, 0.1, 0.1, 0.0], "e0": "isolated", "ref_prefix": "ref_",
              "config_type_sigma": {"isolated_atom": [1e-4, 0.1, 0.1, 0.0]}}
    with pytest.raises(FitError, match="e0='isolated' needs an isolated atom .* none for O"):
        fit(data[:-1], OutputModel(tmp_path / "no_o"), fitter="gap", params=params)
    model = fit(data, OutputModel(tmp_path / "mol"), fitter="gap", params=params)
    [free] = calculate([frames[0]], OutputSpec(), calculator=model.calculator, prefix="gap_")
    boxed = frames[0].copy()
    boxed.center(vacuum=6.0)
    [inbox] = calculate([boxed], OutputSpec(), calculator=model.calculator, prefix="gap_")
    assert np.isfinite(free.info["gap_energy"])
    assert free.info["gap_energy"] == pytest.approx(inbox.info["gap_energy"], abs=1e-8)
    # the isolated atoms' energies are the E0s: the model gives them back
    iso = calculate(isolated, OutputSpec(), calculator=model.calculator, prefix="gap_")
    ref = [a.info["ref_energy"] for a in data[-2:]]
    assert [a.info["gap_energy"] for a in iso] == pytest.approx(ref, abs=1e-3)


def test_a_failing_fit_quotes_gap_fit_and_keeps_its_run_directory(tmp_path):
    require_program("gap_fit", "pip install quippy-ase (it installs gap_fit)")
    bad = {**PARAMS, "descriptors": [dict(DESCRIPTORS[1], covariance_type="nonsense")]}
    with pytest.raises(FitError) as err:
        fit(labelled_cu(4, seed=3), OutputModel(tmp_path / "bad"), fitter="gap", params=bad)
    message = str(err.value)
    assert "gap_fit exited with status" in message
    assert "unknown covariance type" in message and "nonsense" in message
    assert not (tmp_path / "bad").exists()
    [rundir] = [p for p in tmp_path.iterdir() if ".wflp-fit-" in p.name]
    assert "SYSTEM ABORT" in (rundir / "fit" / "gap_fit.err").read_text()
    with pytest.raises(FitError, match="no configuration in the training set has "
                                       "xtb_energy"):
        fit(labelled_cu(4, seed=3), OutputModel(tmp_path / "nokeys"), fitter="gap",
            params={**PARAMS, "ref_prefix": "xtb_"})
    with pytest.raises(FitError, match="cannot find 'no_such_gap_fit'"):
        fit(labelled_cu(4, seed=3), OutputModel(tmp_path / "noprog"), fitter="gap",
            params={**PARAMS, "program": "no_such_gap_fit"})


def test_gap_fit_threads_are_set_for_it_alone(tmp_path, monkeypatch):
    """cores becomes OMP_NUM_THREADS of gap_fit; this process's environment is unchanged."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fake = tmp_path / "fake_gap_fit"
    fake.write_text("#!/bin/sh\necho \"threads=$OMP_NUM_THREADS\" > seen.txt\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(FitError, match="exited with status 3"):
        fit(labelled_cu(2, seed=4), OutputModel(tmp_path / "m"), fitter="gap",
            params={**PARAMS, "program": str(fake)},
            autopara_info=AutoparaInfo(num_python_subprocesses=2))
    [rundir] = [p for p in tmp_path.iterdir() if ".wflp-fit-" in p.name]
    assert (rundir / "fit" / "seen.txt").read_text() == "threads=2\n"
    assert "OMP_NUM_THREADS" not in os.environ
    assert Path(rundir / "fit" / "gap_train.xyz").exists()
