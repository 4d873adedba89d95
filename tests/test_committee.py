"""A committee of calculators (the mean and spread of its members) and select_by_spread.

The committee's results are checked against numpy over the members run alone, with real
calculators (EMT and Lennard-Jones with different parameters); it runs in parallel, is
reused and recomputed by its record like any calculator, and fails a configuration alone
when a member fails on it.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.lj import LennardJones
from helpers import rattled_cu
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.calculators import committee_members, implemented_properties, reset_interval
from wflp.calculators.committee import Committee, combined_reset_interval
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import calculate, select_by_spread
from wflp.ops.selectors import largest_values
from wflp.plugins import get_calculator, get_selector
from wflp.records import read_record, record_path

TWO_PROCESSES = AutoparaInfo(num_python_subprocesses=2)
MEMBERS = ["emt", ("lj", [], {"sigma": 2.3, "rc": 5.0, "epsilon": 0.4}),
           (LennardJones, [], {"sigma": 2.35, "rc": 5.0, "epsilon": 0.35})]
COMMITTEE = ("committee", [], {"members": MEMBERS})


def with_sizes(n: int) -> list:
    """Rattled Cu cells of 4 and 32 atoms, alternating: per-atom spreads differ from totals."""
    small, large = rattled_cu(n, seed=1), rattled_cu(n, seed=2, repeat=2)
    return [small[i] if i % 2 else large[i] for i in range(n)]


# -- the committee ------------------------------------------------------------------------------

def test_mean_and_spread_are_numpys_over_the_members_run_alone():
    configs = rattled_cu(6)
    alone = [list(calculate(configs, OutputSpec(), calculator=m, prefix="m_")) for m in MEMBERS]
    together = list(calculate(configs, OutputSpec(), calculator=COMMITTEE))
    for i, at in enumerate(together):
        energies = np.array([run[i].info["m_energy"] for run in alone])
        forces = np.stack([run[i].arrays["m_forces"] for run in alone])
        stresses = np.stack([run[i].info["m_stress"] for run in alone])
        assert at.info["committee_energy"] == np.mean(energies)
        assert at.info["committee_energy_std"] == np.std(energies) > 0
        np.testing.assert_array_equal(at.arrays["committee_forces"], np.mean(forces, axis=0))
        per_atom = np.linalg.norm(np.std(forces, axis=0), axis=1)
        np.testing.assert_array_equal(at.arrays["committee_forces_std"], per_atom)
        assert at.info["committee_max_force_std"] == per_atom.max() > 0
        np.testing.assert_array_equal(at.info["committee_stress"], np.mean(stresses, axis=0))
        np.testing.assert_array_equal(at.info["committee_stress_std"], np.std(stresses, axis=0))


def test_parallel_bytes_reuse_and_a_changed_member(tmp_path, monkeypatch):
    configs = rattled_cu(40)  # two blocks of EMT's and LJ's reset interval (32)
    serial, parallel = tmp_path / "serial.xyz", tmp_path / "parallel.xyz"
    calculate(configs, OutputSpec(serial), calculator=COMMITTEE)
    calculate(configs, OutputSpec(parallel), calculator=COMMITTEE, autopara_info=TWO_PROCESSES)
    before = serial.read_bytes()
    assert before == parallel.read_bytes()
    described = read_record(record_path(serial)).parameters["calculator"]
    assert [m.get("registered") for m in described["members"]] == ["emt", "lj", None]
    assert described["members"][2]["kwargs"]["sigma"] == 2.35

    def no_calculation(*args, **kwargs):
        raise AssertionError("a matching record must be reused without calculating")

    with monkeypatch.context() as m:
        m.setattr(Committee, "calculate", no_calculation)
        calculate(configs, OutputSpec(serial), calculator=COMMITTEE)
    assert serial.read_bytes() == before

    changed = ("committee", [], {"members": MEMBERS[:2] + [
        (LennardJones, [], {"sigma": 2.4, "rc": 5.0, "epsilon": 0.35})]})
    with pytest.raises(RecordMismatchError) as err:
        calculate(configs, OutputSpec(serial), calculator=changed)
    assert any(k.startswith("parameters.calculator.members[2]") for k in err.value.differences)
    calculate(configs, OutputSpec(serial, overwrite=True), calculator=changed)
    again = list(ConfigSet(serial))
    assert [a.info["committee_energy"] for a in again] != [
        a.info["committee_energy"] for a in ConfigSet(parallel)]
    assert len(again) == 40


def test_a_failing_member_fails_that_configuration_alone():
    configs = rattled_cu(5)
    silicon = bulk("Si", "diamond", a=5.43)  # EMT has no parameters for Si; LJ does not care
    with_si = configs[:2] + [silicon] + configs[2:]
    results = list(calculate(with_si, OutputSpec(), calculator=COMMITTEE))
    failed = results[2].info
    assert failed["committee_calc_failed"] is True
    assert failed["committee_calc_error"].startswith(
        "CommitteeMemberError: committee member 0 (EMT) failed: NotImplementedError")
    assert "committee_energy" not in failed and "committee_energy_std" not in failed
    clean = list(calculate(configs, OutputSpec(), calculator=COMMITTEE))
    kept = results[:2] + results[3:]
    for at, ref in zip(kept, clean):
        assert "committee_calc_failed" not in at.info
        assert at.info["committee_energy_std"] == ref.info["committee_energy_std"]
        np.testing.assert_array_equal(at.arrays["committee_forces"], ref.arrays["committee_forces"])


def test_a_committee_object_is_the_computation_of_its_spec(tmp_path):
    configs = rattled_cu(3)
    by_spec, by_object = tmp_path / "spec.xyz", tmp_path / "object.xyz"
    calculate(configs, OutputSpec(by_spec), calculator=COMMITTEE)
    calculate(configs, OutputSpec(by_object), calculator=Committee(MEMBERS))
    assert by_object.read_bytes() == by_spec.read_bytes()  # committee_ keys in both
    assert read_record(record_path(by_object)).parameters["calculator"] == read_record(
        record_path(by_spec)).parameters["calculator"]


@pytest.mark.parametrize("calculator, message", [
    (("committee", [], {"members": []}), "a committee needs members: a non-empty list"),
    (("committee", [], {"members": "emt"}), "a committee needs members: a non-empty list"),
    (("committee", [], {"member": ["emt"]}), "takes one parameter, members"),
    (("committee", [], {"members": ["emt", 42]}),
     "committee member 1: calculator must be an ASE calculator"),
    (("committee", [], {"members": ["emt", (dict, [], {})]}),
     "committee member 1: dict is not an ASE calculator class"),
    (("committee", [], {"members": ["emt", None]}), "committee member 1: None is not a calc"),
    (("committee", [], {"members": [("no_such_calculator", [], {})]}),
     "committee member 0: calculator 'no_such_calculator': no calculator named"),
    (("committee", [], {"members": [("lj", [], {"sigmaa": 2.3})]}),
     "committee member 0: unknown parameter 'sigmaa'"),
])
def test_a_bad_committee_is_one_clear_parameter_error(tmp_path, calculator, message):
    out = tmp_path / "out.xyz"
    with pytest.raises(ParameterError) as err:
        calculate(rattled_cu(2), OutputSpec(out), calculator=calculator)
    assert message in str(err.value)
    assert "parameter 'calculator'" in str(err.value)
    assert not out.exists() and not record_path(out).exists()


def test_members_decide_properties_reset_interval_and_spec_forms():
    assert get_calculator("committee").load() is Committee
    assert reset_interval(COMMITTEE) == 32

    class EverySixteen(LennardJones):
        wflp_reset_interval = 16

    class Never(LennardJones):
        wflp_reset_interval = 0

    assert reset_interval(("committee", [["emt", (EverySixteen, [], {})]])) == 16
    assert reset_interval((Committee, [], {"members": [(Never, [], {})]})) == 0
    assert combined_reset_interval([32, 0, 1]) == 1
    # what every member computes: EMT's magmom and LJ's stresses are not common
    assert implemented_properties(("committee", [["emt", "lj"]])) == [
        "energies", "energy", "forces", "free_energy", "stress"]
    assert Committee(["emt", "lj"]).implemented_properties == [
        "energy", "free_energy", "energies", "forces", "stress"]  # in EMT's order
    assert committee_members(Committee(MEMBERS)) == MEMBERS
    assert committee_members(("lj", [], {})) is None


# -- select_by_spread -----------------------------------------------------------------------------

def test_largest_values_ties_by_position_threshold_and_both():
    values = np.array([0.1, 0.5, 0.3, 0.5, 0.2, 0.9])
    assert largest_values(values, n_select=3) == [5, 1, 3]  # the two 0.5: the earlier first
    assert largest_values(values, threshold=0.25) == [5, 1, 3, 2]
    assert largest_values(values, n_select=2, threshold=0.6) == [5]
    assert largest_values(values, threshold=1.0) == []


def test_select_by_spread_keeps_the_largest_spread_per_atom(tmp_path):
    configs = with_sizes(8)
    source = tmp_path / "committee.xyz"
    calculate(configs, OutputSpec(source), calculator=COMMITTEE)
    evaluated = list(ConfigSet(source))
    per_atom = np.array([a.info["committee_energy_std"] / len(a) for a in evaluated])
    total = np.array([a.info["committee_energy_std"] for a in evaluated])
    assert np.argsort(-per_atom)[:3].tolist() != np.argsort(-total)[:3].tolist()

    serial, parallel = tmp_path / "sel.xyz", tmp_path / "sel2.xyz"
    chosen = select_by_spread(ConfigSet(source), OutputSpec(serial), n_select=3)
    select_by_spread(ConfigSet(source), OutputSpec(parallel), n_select=3,
                     autopara_info=TWO_PROCESSES)
    assert serial.read_bytes() == parallel.read_bytes()
    largest = sorted(np.argsort(-per_atom, kind="stable")[:3].tolist())
    assert [a.info["committee_energy"] for a in chosen] == [
        evaluated[i].info["committee_energy"] for i in largest]

    cut = float(np.sort(per_atom)[-5])  # exactly four lie above it
    above = select_by_spread.indices(ConfigSet(source), threshold=cut).tolist()
    assert sorted(above) == sorted(np.flatnonzero(per_atom > cut).tolist()) and len(above) == 4
    forces = select_by_spread.indices(ConfigSet(source), n_select=2,
                                      key="committee_max_force_std").tolist()
    spread = [a.info["committee_max_force_std"] for a in evaluated]  # not per atom
    assert forces == np.argsort(-np.array(spread), kind="stable")[:2].tolist()
    assert get_selector("select_by_spread").load() is select_by_spread


def test_select_by_spread_names_the_missing_key_and_its_file(tmp_path):
    evaluated = list(calculate(rattled_cu(3), OutputSpec(), calculator=COMMITTEE))
    first, second = tmp_path / "labelled.xyz", tmp_path / "unlabelled.xyz"
    ase.io.write(first, evaluated)
    ase.io.write(second, evaluated[:1] + rattled_cu(2))
    with pytest.raises(ParameterError) as err:
        select_by_spread(ConfigSet([first, second]), OutputSpec(tmp_path / "o.xyz"), n_select=1)
    text = str(err.value)
    assert f"configuration 4 (frame 1 of {str(second)!r})" in text
    assert "Atoms.info['committee_energy_std']" in text
    assert not (tmp_path / "o.xyz").exists()
    with pytest.raises(ParameterError, match="give n_select"):
        select_by_spread(evaluated, OutputSpec())
    with pytest.raises(ParameterError, match="threshold must be a number"):
        select_by_spread(evaluated, OutputSpec(), threshold="0.1")
