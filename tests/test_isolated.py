"""isolated_atoms: one atom per element, its spin explicit, usable for E0 with any calculator."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.data import chemical_symbols
from wflp import ConfigSet, OutputSpec
from wflp.chain import run_chain
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate, isolated_atoms
from wflp.ops.isolated import GROUND_STATE_MULTIPLICITY, ground_state_multiplicity
from wflp.records import read_record, record_path
from wflp.testing import require_module


def test_one_atom_per_element_of_the_inputs_in_order_of_atomic_number():
    configs = [molecule("CH3CH2OH"), molecule("H2O"), bulk("Cu", cubic=True)]
    out = list(isolated_atoms(configs, OutputSpec()))
    assert [at.get_chemical_symbols() for at in out] == [["H"], ["C"], ["O"], ["Cu"]]
    for at in out:
        assert np.allclose(at.cell.lengths(), [20.0] * 3) and not at.pbc.any()
        assert np.allclose(at.positions[0], [10.0] * 3)
        assert at.info["config_type"] == "isolated_atom" and at.info["charge"] == 0
        mult = at.info["multiplicity"]
        assert at.get_initial_magnetic_moments()[0] == mult - 1
    assert [at.info["multiplicity"] for at in out] == [2, 3, 3, 2]


def test_elements_given_box_pbc_and_multiplicity_override():
    out = list(isolated_atoms(None, OutputSpec(), elements=["O", "Fe", 1], box=12.0, pbc=True,
                              multiplicity={"O": 1}, config_type="E0"))
    assert [at.get_chemical_symbols()[0] for at in out] == ["H", "O", "Fe"]
    assert [at.info["multiplicity"] for at in out] == [2, 1, 5]
    assert all(at.pbc.all() and at.info["config_type"] == "E0" for at in out)
    assert np.allclose(out[2].cell.lengths(), [12.0] * 3)


def test_the_ground_state_table_is_consistent_with_electron_counts():
    """2S+1 - 1 unpaired electrons must have the parity of Z and not exceed it; a typo in
    the table (Fe = 4) breaks this."""
    assert len(GROUND_STATE_MULTIPLICITY) == 86
    for z, mult in enumerate(GROUND_STATE_MULTIPLICITY, start=1):
        unpaired = mult - 1
        assert unpaired <= z and (z - unpaired) % 2 == 0, chemical_symbols[z]
    known = {"H": 2, "He": 1, "C": 3, "N": 4, "O": 3, "Si": 3, "Cr": 7, "Mn": 6, "Fe": 5,
             "Cu": 2, "Nb": 6, "Pd": 1, "Gd": 9, "Pt": 3, "Au": 2, "Rn": 1}
    assert {s: ground_state_multiplicity(s) for s in known} == known


@pytest.mark.parametrize("kwargs, message", [
    ({"elements": ["O", "Xx"]}, "'Xx' is not a chemical element"),
    ({"elements": "O"}, "elements must be a non-empty list"),
    ({"elements": ["O"], "box": 0}, "box must be the edge"),
    ({"elements": ["O"], "multiplicity": {"O": 0}}, "multiplicity['O'] must be"),
    ({"elements": ["O"], "multiplicity": {"O": 2}}, "multiplicity 2 is impossible"),
    ({"elements": ["U"]}, "no tabulated ground-state multiplicity for U"),
])
def test_bad_values_say_what_to_do(kwargs, message):
    with pytest.raises(Exception) as err:
        isolated_atoms(None, OutputSpec(), **kwargs)
    assert message in str(err.value)


def test_symbols_as_items_and_a_record_naming_the_elements(tmp_path):
    out = tmp_path / "e0.xyz"
    isolated_atoms(ConfigSet.from_items(["O", "H", "O"]), OutputSpec(out))
    record = read_record(record_path(out))
    assert record.name == "isolated_atoms" and record.parameters["elements"] == ["H", "O"]
    assert [a.info["multiplicity"] for a in ase.io.read(out, ":")] == [2, 3]
    # the same elements from configurations: the same computation, reused
    isolated_atoms([molecule("H2O")], OutputSpec(out))
    with pytest.raises(RecordMismatchError) as err:
        isolated_atoms([molecule("H2O")], OutputSpec(out), box=30.0)
    assert "parameters.box" in err.value.differences
    with pytest.raises(ParameterError, match="hold no atoms"):
        isolated_atoms([molecule("H2O")[:0]], OutputSpec())


def test_from_a_chain_on_a_training_set(tmp_path):
    ase.io.write(tmp_path / "train.xyz", [molecule("CH4"), molecule("NH3")])
    result = run_chain({"chain": {"inputs": "train.xyz"},
                        "step": [{"kind": "generator", "name": "isolated_atoms",
                                  "output": "e0.xyz"},
                                 {"kind": "calculator", "name": "emt", "output": "e0_emt.xyz"}]},
                       base_dir=tmp_path)
    assert [s.configs for s in result.steps] == [3, 3]
    atoms = ase.io.read(tmp_path / "e0_emt.xyz", ":")
    assert [a.get_chemical_symbols()[0] for a in atoms] == ["H", "C", "N"]
    assert all(np.isfinite(a.info["emt_energy"]) for a in atoms)


def test_the_spin_reaches_a_spin_polarized_calculator():
    """tblite takes the number of unpaired electrons from the initial magnetic moments: the
    triplet O atom made here computes as TBLite(multiplicity=3) does, and not as the
    singlet (GFN2-xTB, not being spin-polarized, puts the two close; DFT does not)."""
    require_module("wflp_xtb", "pip install -e plugins/wflp-xtb (which installs tblite)")
    from tblite.ase import TBLite

    energies = {}
    for mult in (3, 1):
        [at] = list(calculate(isolated_atoms(None, OutputSpec(), elements=["O"],
                                             multiplicity={"O": mult}), OutputSpec(),
                              calculator=("xtb", [], {})))
        assert at.info["multiplicity"] == mult
        energies[mult] = at.info["xtb_energy"]
        direct = at.copy()
        direct.set_initial_magnetic_moments(None)
        direct.calc = TBLite(method="GFN2-xTB", multiplicity=mult, verbosity=0)
        assert abs(direct.get_potential_energy() - energies[mult]) < 1e-8
    assert abs(energies[3] - energies[1]) > 1e-3
