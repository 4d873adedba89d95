"""The smiles plugin, installed: discovered without importing RDKit, real RDKit geometries,
per-item failures, and the same geometry for a seed in 1 and 2 processes."""

from __future__ import annotations

import logging
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list
from wflp.testing import require_module, scaled

require_module("rdkit", "pip install rdkit (or pip install -e 'plugins/wflp-smiles[test]')")

from wflp import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool  # noqa: E402
from wflp.chain import run_chain  # noqa: E402
from wflp.errors import OperationError, ParameterError  # noqa: E402
from wflp.plugins import get_generator, plugin_report, reset_plugin_manager  # noqa: E402
from wflp.records import read_record, record_path  # noqa: E402

# typical bond lengths (Angstrom) by element pair and, for C-C, C-O and C-N, bond order
TYPICAL = {("C", "H"): [1.09], ("H", "O"): [0.96], ("H", "N"): [1.01],
           ("C", "C"): [1.53, 1.39, 1.34], ("C", "O"): [1.43, 1.36, 1.21],
           ("C", "N"): [1.47, 1.34]}


@pytest.fixture
def fresh_registry():
    reset_plugin_manager()
    yield
    reset_plugin_manager()


def smiles_op():
    return get_generator("smiles").load()


def bonds(atoms: Atoms) -> list[tuple[tuple[str, str], float]]:
    i, j, d = neighbor_list("ijd", atoms, natural_cutoffs(atoms, mult=1.1))
    symbols = atoms.get_chemical_symbols()
    return [(tuple(sorted((symbols[a], symbols[b]))), float(dist))
            for a, b, dist in zip(i, j, d) if a < b]


def test_report_lists_the_plugin_as_ok(fresh_registry):
    [record] = [r for r in plugin_report() if r.distribution == "wflp-smiles"]
    assert record.status == "ok", record.error
    assert record.entry_point == "smiles = wflp_smiles"
    assert record.registered == {"generators": ["smiles"]}


def test_discovery_does_not_import_rdkit():
    code = ("import sys\n"
            "from wflp.plugins import get_generator, plugin_report\n"
            "assert [r.status for r in plugin_report() if r.distribution == 'wflp-smiles'] "
            "== ['ok']\n"
            "get_generator('smiles')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rdkit'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text, formula, n_bonds", [
    ("CCO", "C2H6O", 8), ("c1ccccc1", "C6H6", 12), ("CC(=O)O", "C2H4O2", 7)])
def test_formulas_and_bond_lengths_are_those_of_the_molecules(text, formula, n_bonds):
    [mol] = list(smiles_op()(ConfigSet.from_items([text]), OutputSpec(), seed=1))
    assert mol.get_chemical_formula(mode="hill") == formula
    assert mol.info["smiles"] == text and mol.info["conformer"] == 0
    assert mol.info["charge"] == 0 and mol.info["multiplicity"] == 1
    assert mol.info["optimizer_converged"] is True
    assert not mol.pbc.any()
    found = bonds(mol)
    assert len(found) == n_bonds  # nothing closer than a bond that should not be one
    for pair, length in found:
        nearest = min(abs(length - ref) for ref in TYPICAL[pair])
        assert nearest < 0.1, (pair, length)
    if text == "CC(=O)O":  # one double and one single C-O bond
        co = sorted(length for pair, length in found if pair == ("C", "O"))
        assert abs(co[0] - 1.21) < 0.1 and abs(co[1] - 1.36) < 0.1


def test_charge_multiplicity_conformers_and_config_type():
    out = list(smiles_op()(ConfigSet.from_items(["[NH4+]", "[CH3]", "CCCCO"]), OutputSpec(),
                           n_conformers=3, config_type="molecule", seed=3))
    by = {}
    for at in out:
        by.setdefault(at.info["smiles"], []).append(at)
    assert [a.info["conformer"] for a in by["CCCCO"]] == [0, 1, 2]
    assert by["[NH4+]"][0].info["charge"] == 1 and by["[NH4+]"][0].info["multiplicity"] == 1
    assert by["[CH3]"][0].info["charge"] == 0 and by["[CH3]"][0].info["multiplicity"] == 2
    assert all(a.info["config_type"] == "molecule" for a in out)
    butanol = by["CCCCO"]
    assert not np.allclose(butanol[0].positions, butanol[1].positions)


def test_a_bad_smiles_fails_alone_naming_the_string(caplog):
    items = ConfigSet.from_items(["CCO", "C1CC", "c1ccccc1", "C(C)(C)(C)(C)C"])
    with pytest.raises(OperationError) as err:
        list(smiles_op()(items, OutputSpec(), seed=1))
    assert "item 1" in str(err.value) and "'C1CC'" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="wflp"):
        out = list(smiles_op()(items, OutputSpec(), seed=1,
                               autopara_info=AutoparaInfo(skip_failed=True)))
    assert [a.info["smiles"] for a in out] == ["CCO", "c1ccccc1"]
    text = caplog.text
    assert "'C1CC' is not a valid SMILES" in text
    assert "'C(C)(C)(C)(C)C' is not a valid molecule" in text and "valence" in text


@pytest.fixture
def pool_processes():
    shutdown_pool()
    yield
    shutdown_pool()


def test_same_seed_same_geometry_serial_and_parallel(tmp_path, pool_processes):
    items = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "OCC(O)CO", "C1CCCCC1"]
    for name, info in (("serial", AutoparaInfo()),
                       ("parallel", AutoparaInfo(num_python_subprocesses=2,
                                                 num_inputs_per_python_subprocess=1))):
        smiles_op()(ConfigSet.from_items(items), OutputSpec(tmp_path / f"{name}.xyz"),
                    n_conformers=2, seed=11, autopara_info=info)
    serial = (tmp_path / "serial.xyz").read_bytes()
    assert serial == (tmp_path / "parallel.xyz").read_bytes()
    other = list(smiles_op()(ConfigSet.from_items(items), OutputSpec(), n_conformers=2,
                             seed=12))
    same = ase.io.read(tmp_path / "serial.xyz", ":")
    assert len(same) == len(other) == 12
    assert any(not np.allclose(a.positions, b.positions, atol=1e-3)
               for a, b in zip(same, other))
    record = read_record(record_path(tmp_path / "serial.xyz"))
    assert record.parameters["seed"] == 11 and record.providers["operation"]["distribution"] \
        == "wflp-smiles"


def test_parameters_are_checked_before_anything_runs():
    items = ConfigSet.from_items(["CCO"])
    with pytest.raises(ParameterError, match="pass seed=<int>"):
        smiles_op()(items, OutputSpec())
    with pytest.raises(ParameterError, match="optimize must be 'mmff', 'uff' or None"):
        smiles_op()(items, OutputSpec(), optimize="amber", seed=1)
    with pytest.raises(ParameterError, match="n_conformers must be"):
        smiles_op()(items, OutputSpec(), n_conformers=0, seed=1)


def test_mmff_without_parameters_says_what_to_do():
    with pytest.raises(OperationError, match="MMFF94 has no parameters for 'O=O'"):
        list(smiles_op()(ConfigSet.from_items(["O=O"]), OutputSpec(), seed=1))
    [o2] = list(smiles_op()(ConfigSet.from_items(["O=O"]), OutputSpec(), optimize="uff",
                            seed=1))
    assert abs(o2.get_distance(0, 1) - 1.21) < 0.1


def test_from_a_file_of_smiles_in_a_chain(tmp_path):
    """Files work from the command line and chains: configurations carrying a SMILES."""
    ase.io.write(tmp_path / "molecules.xyz",
                 [Atoms(info={"smiles": s}) for s in ("CCO", "C#N", "CC=O")])
    chain = {"chain": {"inputs": "molecules.xyz", "seed": 5},
             "step": [{"kind": "generator", "name": "smiles", "output": "mols.xyz"}]}
    first = run_chain(chain, base_dir=tmp_path)
    assert first.steps[0].configs == 3
    made = ase.io.read(tmp_path / "mols.xyz", ":")
    assert [a.get_chemical_formula(mode="hill") for a in made] == ["C2H6O", "CHN", "C2H4O"]
    assert run_chain(chain, base_dir=tmp_path).steps[0].reused
