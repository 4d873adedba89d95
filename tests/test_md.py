"""The md operation: sampling, thermostats, reproducibility, early abort, parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from wflp import AutoparaInfo, OutputSpec
from wflp.errors import ParameterError
from wflp.ops import md


def cu_cell(repeat: int = 2, seed: int = 0) -> Atoms:
    at = bulk("Cu", "fcc", a=3.6, cubic=True) * (repeat, repeat, repeat)
    at.rattle(0.02, seed=seed)
    return at


def colliding_pair(speed_A_per_fs: float = 0.05, gap: float = 2.5) -> Atoms:
    """Two Cu atoms flying head-on at each other (non-periodic)."""
    at = Atoms("Cu2", positions=[[0, 0, 0], [gap, 0, 0]])
    m = at.get_masses()[0]
    at.set_momenta(np.array([[speed_A_per_fs, 0, 0], [-speed_A_per_fs, 0, 0]]) * m / units.fs)
    return at


def run(inputs, **kwargs) -> list[Atoms]:
    kwargs.setdefault("calculator", EMT())
    return list(md(inputs, OutputSpec(), **kwargs))


def test_frames_sampled_every_nth_step_with_step_time_and_results():
    out = run([cu_cell()], steps=10, dt=2.0, integrator="velocityverlet",
              initial_temperature=300, sample_interval=3, seed=1)
    assert len(out) == 10 // 3 + 1
    assert [f.info["md_step"] for f in out] == [0, 3, 6, 9]
    assert [f.info["md_time_fs"] for f in out] == [0.0, 6.0, 12.0, 18.0]
    for f in out:
        assert f.info["md_temperature_K"] == pytest.approx(f.get_temperature())
        ref = f.copy()
        ref.calc = EMT()
        assert f.info["EMT_energy"] == pytest.approx(ref.get_potential_energy())
        np.testing.assert_allclose(f.arrays["EMT_forces"], ref.get_forces(), atol=1e-10)
        np.testing.assert_allclose(f.info["EMT_stress"], ref.get_stress(), atol=1e-10)
        assert "md_aborted" not in f.info and f.calc is None
    assert not np.allclose(out[0].positions, out[-1].positions)


def test_each_input_gives_its_own_trajectory_and_no_stress_without_pbc():
    cluster = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]])
    out = run([cu_cell(1), cluster], steps=4, dt=1.0, integrator="velocityverlet",
              results_prefix="ref_")
    assert [f.info["md_step"] for f in out] == [0, 1, 2, 3, 4] * 2
    assert [len(f) for f in out] == [4] * 5 + [3] * 5
    assert "ref_stress" in out[0].info and "ref_stress" not in out[-1].info
    assert "ref_energy" in out[-1].info and "ref_forces" in out[-1].arrays


def test_dt_is_in_femtoseconds():
    at = Atoms("Cu", positions=[[0, 0, 0]])  # a lone atom feels no force: straight line
    at.set_momenta([[0.01 * at.get_masses()[0] / units.fs, 0, 0]])  # 0.01 Å/fs
    out = run([at], steps=5, dt=2.0, integrator="velocityverlet")
    assert out[-1].positions[0, 0] == pytest.approx(0.1)
    assert out[-1].info["md_time_fs"] == 10.0


@pytest.mark.parametrize("integrator", ["langevin", "berendsen"])
def test_temperature_ramp_moves_the_thermostat_target(integrator):
    out = run([cu_cell()], steps=10, dt=2.0, integrator=integrator,
              temperature=(100.0, 1100.0), initial_temperature=100, seed=3)
    # read back from the integrator: the step that made frame n ran at 100 + 100 n
    targets = [f.info["md_target_temperature_K"] for f in out]
    assert targets == pytest.approx([100.0 + 100.0 * n for n in range(11)])


def test_temperature_ramp_heats_the_system_against_constant_target():
    common = dict(steps=30, dt=2.0, integrator="langevin", friction=0.1,
                  initial_temperature=100, seed=5)
    flat = run([cu_cell()], temperature=100.0, **common)
    ramp = run([cu_cell()], temperature=(100.0, 3000.0), **common)
    np.testing.assert_array_equal(flat[0].positions, ramp[0].positions)
    assert [f.info["md_target_temperature_K"] for f in flat] == pytest.approx([100.0] * 31)
    assert ramp[-1].info["md_temperature_K"] > 3 * flat[-1].info["md_temperature_K"]


def test_langevin_same_seed_same_trajectory_other_seed_different():
    kw = dict(steps=8, dt=2.0, temperature=500.0, initial_temperature=500)
    a = run([cu_cell()], seed=11, **kw)
    b = run([cu_cell()], seed=11, **kw)
    c = run([cu_cell()], seed=12, **kw)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
        np.testing.assert_array_equal(x.get_momenta(), y.get_momenta())
    assert not np.allclose(a[-1].positions, c[-1].positions)


def test_langevin_noise_alone_comes_from_the_seed():
    # no initial velocities: any motion difference between seeds is the Langevin noise
    kw = dict(steps=3, dt=2.0, temperature=300.0)
    a = run([cu_cell()], seed=1, **kw)
    b = run([cu_cell()], seed=2, **kw)
    np.testing.assert_array_equal(a[0].positions, b[0].positions)
    assert not np.allclose(a[-1].positions, b[-1].positions)


def test_serial_and_two_processes_write_identical_files(tmp_path):
    inputs = [cu_cell(seed=s) for s in range(4)]
    kw = dict(calculator=EMT(), steps=6, dt=2.0, temperature=(300.0, 600.0),
              initial_temperature=300, sample_interval=2, seed=7)
    md(inputs, OutputSpec(tmp_path / "serial.xyz"), **kw)
    md(inputs, OutputSpec(tmp_path / "par.xyz"), **kw,
       autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                  num_inputs_per_python_subprocess=1))
    serial = (tmp_path / "serial.xyz").read_bytes()
    assert serial == (tmp_path / "par.xyz").read_bytes()
    assert serial.count(b"md_step=0 ") == 4


def test_a_trajectory_does_not_depend_on_the_items_run_before_it(tmp_path):
    # the shared calculator must not carry state (e.g. a neighbour list) from one item to
    # the next, else the items a process happened to run first would change the last
    # digits of the results. Item 1 (same random stream in both runs) follows a 32-atom
    # cell in one run and a 4-atom cell, which makes EMT start afresh, in the other.
    kw = dict(calculator=EMT(), steps=6, dt=2.0, temperature=300.0, initial_temperature=300,
              sample_interval=2, seed=7)
    md([cu_cell(seed=0), cu_cell(seed=1)], OutputSpec(tmp_path / "after_big.xyz"), **kw)
    md([cu_cell(1), cu_cell(seed=1)], OutputSpec(tmp_path / "after_small.xyz"), **kw)
    after_big = (tmp_path / "after_big.xyz").read_bytes()
    after_small = (tmp_path / "after_small.xyz").read_bytes()
    item1 = after_small[after_small.index(b"32\n"):]
    assert len(item1) > 1000 and after_big.endswith(item1)


def test_abort_min_distance_stops_and_marks_the_last_frame():
    full = run([colliding_pair()], steps=20, dt=1.0, integrator="velocityverlet",
               sample_interval=4)
    assert len(full) == 20 // 4 + 1
    assert min(f.get_distance(0, 1) for f in full) < 1.6  # they do come that close

    out = run([colliding_pair()], steps=20, dt=1.0, integrator="velocityverlet",
              sample_interval=4, abort_min_distance=1.6)
    last = out[-1]
    assert last.info["md_aborted"] is True
    assert last.get_distance(0, 1) < 1.6
    assert last.info["md_step"] % 4 != 0  # stored although off the sampling grid
    assert last.info["md_step"] < 20
    assert all("md_aborted" not in f.info and f.get_distance(0, 1) >= 1.6 for f in out[:-1])
    assert [f.info["md_step"] for f in out[:-1]] == list(range(0, last.info["md_step"], 4))
    assert "EMT_energy" in last.info


def test_abort_at_the_start_gives_one_marked_frame():
    out = run([colliding_pair(gap=1.0)], steps=10, dt=1.0, integrator="velocityverlet",
              abort_min_distance=1.5)
    assert len(out) == 1
    assert out[0].info["md_step"] == 0 and out[0].info["md_aborted"] is True


def test_initial_temperature_draws_stationary_velocities_input_momenta_kept_otherwise():
    out = run([cu_cell()], steps=0, dt=1.0, integrator="velocityverlet",
              initial_temperature=600, seed=2)
    assert len(out) == 1
    p = out[0].get_momenta()
    np.testing.assert_allclose(p.sum(axis=0), 0.0, atol=1e-10)
    assert 100 < out[0].info["md_temperature_K"] < 2000

    given = cu_cell()
    given.set_momenta(np.full((len(given), 3), 0.5))
    kept = run([given], steps=0, dt=1.0, integrator="velocityverlet")
    np.testing.assert_array_equal(kept[0].get_momenta(), given.get_momenta())


@pytest.mark.parametrize("kwargs", [
    dict(integrator="velocityverlet", initial_temperature=300),
    dict(integrator="langevin", temperature=300.0),
    dict(integrator="berendsen", temperature=300.0, initial_temperature=300),
])
def test_randomness_without_seed_is_a_parameter_error(kwargs):
    with pytest.raises(ParameterError, match=r"seed=<int>"):
        run([cu_cell()], steps=2, dt=1.0, **kwargs)


def test_deterministic_runs_need_no_seed():
    out = run([cu_cell()], steps=2, dt=1.0, integrator="nose_hoover", temperature=300.0)
    assert len(out) == 3 and out[-1].info["md_target_temperature_K"] == 300.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(integrator="npt"), "unknown integrator"),
    (dict(integrator="velocityverlet", temperature=300.0), "takes no temperature"),
    (dict(integrator="langevin"), "needs temperature"),
    (dict(integrator="nose_hoover", temperature=(100.0, 200.0)), "ramps are not supported"),
    (dict(integrator="langevin", temperature=(1.0, 2.0, 3.0)), r"\(T_start, T_end\)"),
    (dict(integrator="langevin", temperature=-5.0), "temperature must be"),
    (dict(integrator="langevin", temperature=300.0, temperature_tau=10.0), "use friction"),
    (dict(integrator="berendsen", temperature=300.0, friction=0.1), "friction applies"),
    (dict(integrator="velocityverlet", sample_interval=0), "sample_interval"),
    (dict(integrator="velocityverlet", abort_min_distance=0.0), "abort_min_distance"),
])
def test_bad_parameters_raise_before_running(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        run([cu_cell()], steps=2, dt=1.0, seed=1, **kwargs)


def test_inputs_are_not_modified():
    at = cu_cell()
    at.info["config_type"] = "bulk"
    before = at.copy()
    out = run([at], steps=3, dt=2.0, temperature=300.0, initial_temperature=300, seed=1)
    np.testing.assert_array_equal(at.positions, before.positions)
    assert at.info == {"config_type": "bulk"}
    assert set(at.arrays) == set(before.arrays) and not at.has("momenta")
    assert at.calc is None and not at.constraints
    assert out[-1].info["config_type"] == "bulk"  # the input's info travels with the frames


def test_langevin_keeps_the_inputs_constraints_and_adds_none():
    free = run([cu_cell()], steps=3, dt=2.0, temperature=300.0, seed=1)
    assert all(not f.constraints for f in free)

    at = cu_cell()
    at.set_constraint(FixAtoms(indices=[0]))
    out = run([at], steps=3, dt=2.0, temperature=300.0, initial_temperature=300, seed=1)
    np.testing.assert_array_equal(out[-1].positions[0], at.positions[0])
    assert not np.allclose(out[-1].positions[1:], at.positions[1:])
    assert [type(c).__name__ for c in out[-1].constraints] == ["FixAtoms"]


class CountingEMT(EMT):
    """EMT that counts its calculations (in this process) in a class attribute."""

    calls = 0

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        type(self).calls += 1


def test_storing_every_frame_costs_no_extra_calculation():
    CountingEMT.calls = 0
    out = run([cu_cell()], calculator=CountingEMT(), steps=10, dt=1.0,
              integrator="velocityverlet")
    assert len(out) == 11 and "CountingEMT_stress" in out[-1].info
    assert CountingEMT.calls == 11  # one per step and the start: results come from the cache


def test_calculator_as_constructor_tuple():
    out = run([cu_cell(1)], calculator=(EMT, [], {}), steps=2, dt=1.0,
              integrator="velocityverlet")
    assert len(out) == 3 and "EMT_energy" in out[-1].info
