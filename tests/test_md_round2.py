"""md, round 2: temperatures over the real degrees of freedom, an exact initial temperature,
and stop conditions (minimum distance, maximum temperature, a user's function) in records."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from wflp import AutoparaInfo, OutputSpec
from wflp.errors import ParameterError, RecordMismatchError
from wflp.ops import md
from wflp.records import read_record, record_path


def cu_cell(repeat: int = 2, seed: int = 0) -> Atoms:
    at = bulk("Cu", "fcc", a=3.6, cubic=True) * (repeat, repeat, repeat)
    at.rattle(0.02, seed=seed)
    return at


def cu3() -> Atoms:
    """A small non-periodic cluster: where the degrees of freedom matter most."""
    return Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.25, 2.1, 0]])


def colliding_pair(speed_A_per_fs: float = 0.05, gap: float = 2.5) -> Atoms:
    at = Atoms("Cu2", positions=[[0, 0, 0], [gap, 0, 0]])
    m = at.get_masses()[0]
    at.set_momenta(np.array([[speed_A_per_fs, 0, 0], [-speed_A_per_fs, 0, 0]]) * m / units.fs)
    return at


def run(inputs, **kwargs) -> list[Atoms]:
    kwargs.setdefault("calculator", EMT())
    return list(md(inputs, OutputSpec(), **kwargs))


def kinetic_temperature(frame: Atoms, dof: int) -> float:
    return 2 * frame.get_kinetic_energy() / (dof * units.kB)


# -- degrees of freedom -------------------------------------------------------------------------

def test_langevin_temperature_counts_the_fixed_centre_of_mass():
    out = run([cu3()], steps=4, dt=2.0, temperature=300.0, initial_temperature=300, seed=1)
    for f in out:  # Langevin holds the centre of mass: 3N - 3 degrees of freedom
        assert f.info["md_temperature_K"] == pytest.approx(kinetic_temperature(f, 6))
        assert not f.constraints  # the frames do not keep the dynamics' FixCom

    nve = run([cu3()], steps=4, dt=2.0, integrator="velocityverlet",
              initial_temperature=300, seed=1)
    assert nve[-1].info["md_temperature_K"] == pytest.approx(kinetic_temperature(nve[-1], 9))

    fixed = cu_cell(1)
    fixed.set_constraint(FixAtoms(indices=[0]))  # the input's own constraint: no FixCom
    out = run([fixed], steps=3, dt=2.0, temperature=300.0, initial_temperature=300, seed=1)
    assert out[-1].info["md_temperature_K"] == pytest.approx(
        kinetic_temperature(out[-1], 3 * 4 - 3))


def test_a_small_cluster_under_langevin_averages_its_target():
    # counted over 3N = 9 degrees of freedom, a Cu3 cluster at 300 K read 200 K on average
    out = run([cu3()], steps=1000, dt=2.0, temperature=300.0, friction=0.1,
              initial_temperature=300, sample_interval=2, seed=4)
    mean = np.mean([f.info["md_temperature_K"] for f in out[50:]])
    assert 255 < mean < 345


# -- the initial temperature --------------------------------------------------------------------

@pytest.mark.parametrize("atoms, kwargs", [
    (cu3(), dict(integrator="velocityverlet")),
    (cu3(), dict(integrator="langevin", temperature=500.0)),
    (cu_cell(), dict(integrator="berendsen", temperature=500.0)),
    (cu_cell(), dict(integrator="langevin", temperature=500.0)),
])
def test_first_frame_is_at_the_initial_temperature(atoms, kwargs):
    exact = run([atoms], steps=0, dt=1.0, initial_temperature=500, seed=3, **kwargs)[0]
    assert exact.info["md_temperature_K"] == pytest.approx(500.0, rel=1e-12)
    np.testing.assert_allclose(exact.get_momenta().sum(axis=0), 0.0, atol=1e-10)
    if not atoms.pbc.any():
        np.testing.assert_allclose(exact.get_angular_momentum(), 0.0, atol=1e-10)

    drawn = run([atoms], steps=0, dt=1.0, initial_temperature=500, seed=3,
                exact_initial_temperature=False, **kwargs)[0]
    assert drawn.info["md_temperature_K"] != pytest.approx(500.0, rel=1e-3)
    np.testing.assert_allclose(drawn.get_momenta().sum(axis=0), 0.0, atol=1e-10)
    # the same draw, only scaled: the directions of the velocities agree
    scale = np.linalg.norm(exact.get_momenta()) / np.linalg.norm(drawn.get_momenta())
    np.testing.assert_allclose(exact.get_momenta(), scale * drawn.get_momenta(), atol=1e-12)


def test_the_initial_temperature_choice_is_part_of_the_record(tmp_path):
    out = tmp_path / "md.xyz"
    kw = dict(calculator=EMT(), steps=2, dt=1.0, integrator="velocityverlet",
              initial_temperature=300, seed=1)
    md([cu3()], OutputSpec(out), **kw)
    assert read_record(record_path(out)).version == "2"
    with pytest.raises(RecordMismatchError) as err:
        md([cu3()], OutputSpec(out), exact_initial_temperature=False, **kw)
    assert "parameters.exact_initial_temperature" in err.value.differences


# -- stop conditions ----------------------------------------------------------------------------

def test_min_distance_stop_names_its_reason():
    out = run([colliding_pair()], steps=20, dt=1.0, integrator="velocityverlet",
              sample_interval=4, abort_min_distance=1.6)
    assert out[-1].info["md_stop_reason"] == "min_distance < 1.6"
    assert all("md_stop_reason" not in f.info for f in out[:-1])


def test_max_temperature_stops_a_heating_run_at_the_first_frame_above():
    kw = dict(steps=40, dt=2.0, integrator="langevin", temperature=(100.0, 4000.0),
              friction=0.2, initial_temperature=100, seed=2)
    full = run([cu_cell()], **kw)
    temps = [f.info["md_temperature_K"] for f in full]
    first_above = next(i for i, t in enumerate(temps) if t > 1500.0)

    out = run([cu_cell()], stop_max_temperature=1500.0, **kw)
    assert len(out) == first_above + 1
    assert out[-1].info["md_aborted"] is True
    assert out[-1].info["md_stop_reason"] == "temperature > 1500"
    assert [f.info["md_temperature_K"] for f in out] == temps[:first_above + 1]
    np.testing.assert_array_equal(out[-1].positions, full[first_above].positions)


def far_apart(atoms: Atoms) -> bool:
    """Dissociated: the first two atoms more than 3.5 Å apart."""
    return atoms.get_distance(0, 1) > 3.5


def flying_apart() -> Atoms:
    at = colliding_pair(gap=2.6)
    at.set_momenta(-at.get_momenta())
    return at


def test_a_users_function_stops_the_trajectory_and_is_named():
    out = run([flying_apart(), cu_cell(1)], steps=30, dt=1.0, integrator="velocityverlet",
              sample_interval=5, stop_condition=far_apart)
    pair = [f for f in out if len(f) == 2]
    assert pair[-1].info["md_stop_reason"] == "stop_condition far_apart"
    assert pair[-1].get_distance(0, 1) > 3.5
    assert all(f.get_distance(0, 1) <= 3.5 for f in pair[:-1])
    assert pair[-1].info["md_step"] < 30 and "EMT_energy" in pair[-1].info
    cell = [f for f in out if len(f) == 4]  # nearest neighbours 2.55 Å: runs to the end
    assert len(cell) == 30 // 5 + 1 and "md_stop_reason" not in cell[-1].info


def closer_apart(atoms: Atoms) -> bool:
    return atoms.get_distance(0, 1) > 3.0


class CountingEMT(EMT):
    """EMT that counts its calculations (in this process) in a class attribute."""

    calls = 0

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        type(self).calls += 1


def test_the_stop_condition_is_part_of_the_record_and_reused(tmp_path):
    out = tmp_path / "md.xyz"
    kw = dict(calculator=CountingEMT(), steps=30, dt=1.0, integrator="velocityverlet")
    first = list(md([flying_apart()], OutputSpec(out), stop_condition=far_apart, **kw))
    before = out.read_bytes()
    record = read_record(record_path(out))
    assert "far_apart" in str(record.parameters["stop_condition"])

    CountingEMT.calls = 0
    again = list(md([flying_apart()], OutputSpec(out), stop_condition=far_apart, **kw))
    assert out.read_bytes() == before and len(again) == len(first)
    assert CountingEMT.calls == 0  # reused, not run again
    with pytest.raises(RecordMismatchError) as err:
        md([flying_apart()], OutputSpec(out), stop_condition=closer_apart, **kw)
    assert any(d.startswith("parameters.stop_condition") for d in err.value.differences)
    with pytest.raises(RecordMismatchError) as err:
        md([flying_apart()], OutputSpec(out), stop_condition=far_apart,
           stop_max_temperature=900.0, **kw)
    assert "parameters.stop_max_temperature" in err.value.differences
    shorter = list(md([flying_apart()], OutputSpec(out, overwrite=True),
                      stop_condition=closer_apart, **kw))
    assert len(shorter) < len(first)


def test_stopped_trajectories_are_the_same_bytes_in_two_processes(tmp_path):
    inputs = [flying_apart(), cu_cell(1), flying_apart(), cu_cell(1, seed=1)]
    kw = dict(calculator=EMT(), steps=25, dt=1.0, integrator="langevin",
              temperature=(300.0, 3000.0), initial_temperature=300, sample_interval=3,
              stop_condition=far_apart, stop_max_temperature=1200.0, seed=5)
    md(inputs, OutputSpec(tmp_path / "serial.xyz"), **kw)
    md(inputs, OutputSpec(tmp_path / "par.xyz"), **kw,
       autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                  num_inputs_per_python_subprocess=1))
    serial = (tmp_path / "serial.xyz").read_bytes()
    assert serial == (tmp_path / "par.xyz").read_bytes()
    assert b"md_stop_reason" in serial


@pytest.mark.parametrize("kwargs, message", [
    (dict(stop_condition="far_apart"), "stop_condition must be a function"),
    (dict(stop_max_temperature=-1.0), "stop_max_temperature must be"),
    (dict(exact_initial_temperature="yes"), "exact_initial_temperature must be"),
])
def test_bad_stop_parameters_raise_before_running(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        run([cu_cell()], steps=2, dt=1.0, integrator="velocityverlet", **kwargs)
