"""The error report against values computed by hand on a tiny set: grouping (natural
order, overall last), a group without an element, atomization energies with each
method's own isolated-atom energies, stress and virial, failed configurations, streaming
from files, the command line, and one clear message for bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from test_cli import invoke
from wflp.analysis import compare, error_report, isolated_energies, natural_key
from wflp.errors import InputError, ParameterError
from wflp.testing import scaled


def with_results(atoms, config_type, e_ref, e_model, df, stress=None):
    """atoms with ref_ results (forces zero) and mod_ results (forces = df)."""
    atoms = atoms.copy()
    if config_type is not None:
        atoms.info["config_type"] = config_type
    atoms.info["ref_energy"] = e_ref
    atoms.info["mod_energy"] = e_model
    atoms.arrays["ref_forces"] = np.zeros((len(atoms), 3))
    atoms.arrays["mod_forces"] = np.array(df, dtype=float)
    if stress is not None:
        atoms.info["ref_stress"] = np.zeros(6)
        atoms.info["mod_stress"] = np.array(stress, dtype=float)
    return atoms


def tiny_set():
    h2o = with_results(molecule("H2O"), "md_1000K", -10.0, -9.7,   # O, H, H
                       [[0.1, 0, 0], [0, 0.2, 0], [0, 0, -0.2]])
    ch4 = with_results(molecule("CH4"), "md_300K", -20.0, -21.0,   # C, H, H, H, H
                       [[0.3, 0, 0]] + [[0, 0, 0]] * 4)
    h2 = with_results(molecule("H2"), "md_1000K", -5.0, -5.2, [[0.1, 0.1, 0.1], [0, 0, 0]])
    failed = with_results(molecule("H2"), "md_300K", -5.0, 99.0, [[9, 9, 9], [9, 9, 9]])
    failed.info["mod_calc_failed"] = True
    return [h2o, ch4, h2, failed]


def rmse(values):
    return math.sqrt(sum(v * v for v in values) / len(values))


def mae(values):
    return sum(abs(v) for v in values) / len(values)


def test_energies_and_forces_by_group_against_hand_computed_values():
    report = error_report(tiny_set(), "ref_", "mod_")
    e = report.data["properties"]["energy_per_atom"]
    # per-atom differences: H2O 0.3/3, CH4 -1.0/5, H2 -0.2/2; the failed one left out
    assert e["groups"]["md_1000K"] == pytest.approx(
        {"count": 2, "rmse": 0.1, "mae": 0.1, "max": 0.1})
    assert e["groups"]["md_300K"] == pytest.approx(
        {"count": 1, "rmse": 0.2, "mae": 0.2, "max": 0.2})
    assert e["all"] == pytest.approx(
        {"count": 3, "rmse": rmse([0.1, 0.1, 0.2]), "mae": 0.4 / 3, "max": 0.2})
    f = report.data["properties"]["forces"]
    hot = [0.1, 0.2, 0.2] + [0.1, 0.1, 0.1] + [0] * 9          # 15 components
    assert f["groups"]["md_1000K"] == pytest.approx(
        {"count": 15, "rmse": rmse(hot), "mae": mae(hot), "max": 0.2})
    assert f["all"]["count"] == 30 and f["all"]["rmse"] == pytest.approx(
        rmse(hot + [0.3] + [0] * 14))
    # per element; md_1000K has no C atom, md_300K no O atom: no entry, not a zero
    fh = report.data["properties"]["forces[H]"]["groups"]["md_1000K"]
    assert fh == pytest.approx({"count": 12, "rmse": rmse([0.2, 0.2, 0.1, 0.1, 0.1] + [0] * 7),
                                "mae": 0.7 / 12, "max": 0.2})
    assert report.stats("forces[C]", "md_300K") == pytest.approx(
        {"count": 3, "rmse": rmse([0.3, 0, 0]), "mae": 0.1, "max": 0.3})
    assert report.stats("forces[C]", "md_1000K") is None
    assert report.stats("forces[O]", "md_300K") is None
    assert report.data["configurations"] == {"read": 4, "compared": 3, "model_failed": 1}
    # order: properties as documented, elements by atomic number; groups natural
    assert report.properties == ["energy_per_atom", "forces", "forces[H]", "forces[C]",
                                 "forces[O]"]
    assert report.groups("energy_per_atom") == ["md_300K", "md_1000K"]
    json.dumps(report.to_dict())  # plain data


def test_the_table_lists_groups_naturally_with_the_overall_row_last():
    text = error_report(tiny_set(), "ref_", "mod_").table()
    lines = text.splitlines()
    assert lines[0] == "mod_ against ref_: 3 configurations, 1 left out (the model failed)"
    assert lines[1].split() == ["property", "group", "count", "RMSE", "MAE", "max", "unit"]
    energy = lines[2:5]
    assert [ln.split()[0 if i else 1] for i, ln in enumerate(energy)] == [
        "md_300K", "md_1000K", "all"]
    assert energy[0].split() == ["energy_per_atom", "md_300K", "1", "200", "200", "200",
                                 "meV/atom"]
    assert energy[2].split()[:4] == ["all", "3", f"{rmse([0.1, 0.1, 0.2]) * 1000:.0f}",
                                     "133"]
    c_rows = [ln for ln in lines if ln.startswith("forces[C]")]
    assert len(c_rows) == 1 and "md_300K" in c_rows[0]  # only the group that has C


def test_atomization_energies_use_each_methods_isolated_atoms():
    isolated = []
    for symbol, e_ref, e_model in (("H", -1.0, -1.1), ("O", -2.0, -2.0), ("C", -3.0, -2.9)):
        at = Atoms(symbol, cell=[20] * 3)
        at.info.update(ref_energy=e_ref, mod_energy=e_model, config_type="isolated_atom")
        isolated.append(at)
    assert isolated_energies(isolated, "mod_") == {"H": -1.1, "O": -2.0, "C": -2.9}
    report = error_report(tiny_set() + isolated, "ref_", "mod_", group_by=None,
                          properties=["energy", "atomization_energy"],
                          isolated_atoms=isolated)
    # (dE - dE0 sum) / n: H2O (0.3 + 0.2)/3, CH4 (-1.0 + 0.3)/5, H2 (-0.2 + 0.2)/2
    diffs = [0.5 / 3, 0.7 / 5, 0.0]
    assert report.stats("atomization_energy_per_atom") == pytest.approx(
        {"count": 3, "rmse": rmse(diffs), "mae": mae(diffs), "max": 0.5 / 3})
    # the isolated atoms count for energies per atom, not for atomization energies
    assert report.stats("energy_per_atom")["count"] == 6
    assert report.groups() == ["all"] and report.properties == [
        "energy_per_atom", "atomization_energy_per_atom"]
    # one dict of E0s serves both methods: atomization errors equal energy errors
    same = error_report(tiny_set(), "ref_", "mod_", properties=["atomization_energy"],
                        isolated_atoms={"H": -1.0, "O": -2.0, "C": -3.0})
    assert same.rmse("atomization_energy_per_atom") == pytest.approx(rmse([0.1, 0.2, 0.1]))
    with pytest.raises(InputError, match="no isolated-atom energy for C"):
        error_report(tiny_set(), "ref_", "mod_", isolated_atoms=isolated[:2])


def test_stress_and_virial_of_periodic_cells():
    cu = bulk("Cu", cubic=True)   # 4 atoms, volume 3.61**3
    a = with_results(cu, "bulk", -14.0, -14.0, np.zeros((4, 3)),
                     stress=[0.01, 0, 0, 0, 0, -0.02])
    b = with_results(cu, "bulk", -14.0, -14.0, np.zeros((4, 3)),
                     stress=np.diag([0.0, 0.03, 0.0]).ravel())  # 3x3 form
    report = error_report([a, b], "ref_", "mod_", properties=["stress", "virial"])
    diffs = [0.01, 0, 0, 0, 0, 0.02, 0, 0.03, 0, 0, 0, 0]
    assert report.stats("stress") == pytest.approx(
        {"count": 12, "rmse": rmse(diffs), "mae": mae(diffs), "max": 0.03})
    volume = cu.get_volume()
    assert report.rmse("virial_per_atom") == pytest.approx(rmse(diffs) * volume / 4)
    # molecules have no stress: those rows simply do not appear
    assert "stress" not in error_report(tiny_set(), "ref_", "mod_").properties


def test_streams_files_and_labels_sets(tmp_path):
    configs = tiny_set()
    ase.io.write(tmp_path / "train.xyz", configs[:2])
    ase.io.write(tmp_path / "test.xyz", configs[2:])
    report = error_report({"train": tmp_path / "train.xyz", "test": tmp_path / "test.xyz"},
                          "ref_", "mod_", properties=["energy"])
    assert report.groups() == ["test / md_1000K", "train / md_300K", "train / md_1000K"]
    assert report.rmse("energy_per_atom", "test / md_1000K") == pytest.approx(0.1)
    assert report.rmse("energy_per_atom") == pytest.approx(rmse([0.1, 0.1, 0.2]))
    items = list(compare(tmp_path / "test.xyz", "ref_", "mod_", properties=["forces"]))
    assert [(c.property, c.group, c.elements) for c in items] == [
        ("forces", "md_1000K", ("H", "H"))]


def test_bad_input_gets_one_clear_message(tmp_path):
    with pytest.raises(InputError, match=r"both prefixes 'xtb_' and 'mod_'.*found: 'mod_', "
                                         r"'ref_'"):
        error_report(tiny_set(), "xtb_", "mod_")
    with pytest.raises(ParameterError, match="same prefix"):
        error_report(tiny_set(), "ref_", "ref_")
    with pytest.raises(ParameterError, match="unknown properties 'force'"):
        error_report(tiny_set(), "ref_", "mod_", properties=["force"])
    with pytest.raises(ParameterError, match="atomization energies need isolated_atoms"):
        error_report(tiny_set(), "ref_", "mod_", properties=["atomization_energy"])
    with pytest.raises(InputError, match="inputs are empty"):
        error_report([], "ref_", "mod_")


def test_natural_order():
    names = ["md_1000K", "md_300K", "b10", "b9", "B1", "-"]
    assert sorted(names, key=natural_key) == ["-", "B1", "b9", "b10", "md_300K", "md_1000K"]


def test_command_line(tmp_path):
    ase.io.write(tmp_path / "a.xyz", tiny_set())
    result = invoke("errors", "ref_", "mod_", str(tmp_path / "a.xyz"), "--json",
                    str(tmp_path / "e.json"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("mod_ against ref_: 3 configurations")
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["properties"]["energy_per_atom"]["all"]["rmse"] == pytest.approx(
        rmse([0.1, 0.1, 0.2]))
    result = invoke("errors", "ref_", "mod_", str(tmp_path / "a.xyz"), "--no-groups",
                    "--no-elements", "-p", "forces", "--json", "-")
    assert list(json.loads(result.stdout)["properties"]) == ["forces"]
    # a wrong prefix: one line on stderr, exit status 2, as every wflp error
    out = subprocess.run([sys.executable, "-m", "wflp.cli", "errors", "xtb_", "mod_",
                          str(tmp_path / "a.xyz")], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("wflp: error: no configuration has results under both")
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_mlip_example_runs_and_its_rerun_reuses_every_step(tmp_path):
    """examples/mlip_from_smiles.py --small (about 25 s here): xTB, SMILES, MD, SOAP, CUR,
    GAP, evaluation, errors and plots; the second run reuses every step."""
    from pathlib import Path

    from wflp.testing import require_module, require_program

    for module in ("wflp_xtb", "wflp_smiles", "wflp_soap", "wflp_gap", "wflp_plots"):
        require_module(module, "bash scripts/dev-install.sh (installs every plugin)")
    require_module("quippy", "pip install quippy-ase")
    require_program("gap_fit", "pip install quippy-ase")
    example = Path(__file__).resolve().parent.parent / "examples" / "mlip_from_smiles.py"
    out = tmp_path / "out"

    def run():
        done = subprocess.run([sys.executable, str(example), "--small", "--out", str(out)],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    first = run()
    steps = [ln for ln in first.splitlines() if ln.startswith("  ") and " s   " in ln]
    assert len(steps) == 12 and all(" done " in ln for ln in steps)
    errors = json.loads((out / "08_errors_gap.json").read_text())["by_set"]["properties"]
    test_e = errors["energy_per_atom"]["groups"]["test"]
    test_f = errors["forces"]["groups"]["test"]
    # measured 7.3 meV/atom and 395 meV/A on this reduced set (the full example: 4.4, 235)
    assert test_e["count"] == 15 and test_e["rmse"] < 0.025
    assert test_f["rmse"] < 0.8
    assert (out / "08_parity_gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("03_md_300K.xyz", "05_train.xyz", "07_test.gap.xyz"):
        assert (out / (name + ".record.json")).exists()
    assert (out / "06_model_gap" / "record.json").exists()
    second = run()
    again = [ln for ln in second.splitlines() if ln.startswith("  ") and " s   " in ln]
    assert all(" reused " in ln for ln in again[:-1]), again
    assert "every step reused its output" in second
    # "which settings made the training set of this model?": its lineage answers
    traced = subprocess.run([sys.executable, "-m", "wflp.cli", "lineage",
                             str(out / "06_model_gap"), "--format", "json"],
                            capture_output=True, text=True, timeout=120)
    assert traced.returncode == 0, traced.stderr
    graph = json.loads(traced.stdout)
    nodes = {Path(n["path"]).name if n["path"] else n["id"]: n for n in graph["nodes"]}
    assert nodes["06_model_gap"]["operation"] == "gap"
    assert nodes["06_model_gap"]["parameters"]["params"]["descriptors"]  # hyperparameters
    temperatures = sorted(n["parameters"]["temperature"] for n in graph["nodes"]
                          if n.get("operation") == "md")
    assert len(temperatures) == 3 and len(set(temperatures)) == 3
    md_calc = next(n for n in graph["nodes"] if n.get("operation") == "md")
    assert md_calc["parameters"]["calculator"]["kwargs"] == {"method": "GFN2-xTB"}
    assert any(n.get("operation") == "soap" and n["parameters"]["l_max"]
               for n in graph["nodes"])
    assert any(n.get("operation") == "select_cur" and n["parameters"]["n_select"]
               for n in graph["nodes"])
    smiles = [n for n in graph["nodes"] if "CCO" in (n.get("detail") or "")]
    assert smiles and smiles[0]["state"] == "source"
    edges = {(Path(e["source"]).name, Path(e["target"]).name) for e in graph["links"]}
    assert ("05_train.xyz", "06_model_gap") in edges
