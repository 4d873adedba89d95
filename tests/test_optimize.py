"""The optimize operation: convergence, variable cell, trajectory sub-selection, parameters."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from wflp import AutoparaInfo, OutputSpec
from wflp.errors import ParameterError
from wflp.ops import optimize


def rattled(a: float = 3.6, repeat: int = 2, seed: int = 0) -> Atoms:
    at = bulk("Cu", "fcc", a=a, cubic=True) * (repeat, repeat, repeat)
    at.rattle(0.08, seed=seed)
    return at


def run(inputs, **kwargs) -> list[Atoms]:
    kwargs.setdefault("calculator", EMT())
    return list(optimize(inputs, OutputSpec(), **kwargs))


def fresh_max_force(at: Atoms) -> float:
    ref = at.copy()
    ref.calc = EMT()
    return float(np.linalg.norm(ref.get_forces(), axis=1).max())


@pytest.mark.parametrize("optimizer", ["BFGS", "FIRE"])
def test_converges_below_fmax_and_stores_final_results(optimizer):
    start = rattled()
    assert fresh_max_force(start) > 0.5
    out = run([start], fmax=0.02, optimizer=optimizer)
    assert len(out) == 1
    final = out[0]
    assert final.info["optimize_converged"] is True
    assert 0 < final.info["optimize_n_steps"] == final.info["optimize_step"] < 1000
    assert fresh_max_force(final) < 0.02
    ref = final.copy()
    ref.calc = EMT()
    assert final.info["EMT_energy"] == pytest.approx(ref.get_potential_energy())
    np.testing.assert_allclose(final.arrays["EMT_forces"], ref.get_forces(), atol=1e-10)
    np.testing.assert_allclose(final.info["EMT_stress"], ref.get_stress(), atol=1e-10)
    np.testing.assert_array_equal(final.cell, start.cell)  # fixed cell by default


def test_bfgs_and_fire_reach_the_same_minimum():
    bfgs = run([rattled()], fmax=0.01, optimizer="BFGS")[0]
    fire = run([rattled()], fmax=0.01, optimizer="fire")[0]
    assert bfgs.info["EMT_energy"] == pytest.approx(fire.info["EMT_energy"], abs=2e-3)
    assert bfgs.info["optimize_n_steps"] != fire.info["optimize_n_steps"]


def test_variable_cell_relaxes_strained_cells_towards_the_same_volume():
    stretched, squeezed = rattled(a=3.75, repeat=1), rattled(a=3.45, repeat=1)
    out = run([stretched, squeezed], fmax=0.01, variable_cell=True)
    v_stretched, v_squeezed = (f.get_volume() for f in out)
    assert v_stretched < stretched.get_volume()
    assert v_squeezed > squeezed.get_volume()
    # both end at the EMT equilibrium volume, so close to each other
    assert v_stretched == pytest.approx(v_squeezed, rel=5e-3)
    assert all(f.info["optimize_converged"] for f in out)
    assert max(abs(np.asarray(f.info["EMT_stress"]))[:3].max() for f in out) < 0.01


def test_pressure_squeezes_the_cell():
    at = rattled(repeat=1)
    free = run([at], fmax=0.01, variable_cell=True)[0]
    pressed = run([at], fmax=0.01, variable_cell=True, pressure=10.0)[0]
    assert pressed.get_volume() < 0.99 * free.get_volume()


def test_trajectory_subselection():
    final_only = run([rattled(repeat=1)], keep_trajectory=False)
    n = final_only[0].info["optimize_n_steps"]
    assert n >= 5
    assert len(run([rattled(repeat=1)], keep_trajectory="last")) == 1

    every = run([rattled(repeat=1)], keep_trajectory="all")
    assert [f.info["optimize_step"] for f in every] == list(range(n + 1))
    np.testing.assert_allclose(every[-1].positions, final_only[0].positions)
    np.testing.assert_allclose(every[0].positions, rattled(repeat=1).positions)
    assert all(f.info["optimize_n_steps"] == n and f.info["optimize_converged"] for f in every)
    assert every[0].info["EMT_energy"] > every[-1].info["EMT_energy"]

    third = run([rattled(repeat=1)], keep_trajectory=3)
    expected = list(range(0, n + 1, 3))
    if expected[-1] != n:
        expected.append(n)
    assert [f.info["optimize_step"] for f in third] == expected


def test_keeping_every_step_costs_no_extra_calculation():
    from test_md import CountingEMT

    CountingEMT.calls = 0
    out = run([rattled(repeat=1)], calculator=CountingEMT(), keep_trajectory="all")
    assert len(out) == out[-1].info["optimize_n_steps"] + 1 > 3
    assert CountingEMT.calls == len(out)


def test_running_out_of_steps_is_marked_not_raised():
    out = run([rattled()], steps=2, keep_trajectory="all")
    assert [f.info["optimize_step"] for f in out] == [0, 1, 2]
    assert all(f.info["optimize_converged"] is False for f in out)
    assert all(f.info["optimize_n_steps"] == 2 for f in out)
    assert fresh_max_force(out[-1]) > 0.05


def test_already_relaxed_input_converges_in_zero_steps():
    out = run([bulk("Cu", "fcc", a=3.6, cubic=True)], results_prefix="ref_")
    assert out[0].info["optimize_converged"] is True
    assert out[0].info["optimize_n_steps"] == 0
    assert "ref_energy" in out[0].info and "EMT_energy" not in out[0].info


def test_inputs_are_not_modified_and_parallel_matches_serial(tmp_path):
    inputs = [rattled(repeat=1, seed=s) for s in range(3)]
    before = [at.positions.copy() for at in inputs]
    optimize(inputs, OutputSpec(tmp_path / "serial.xyz"), calculator=EMT(), keep_trajectory=2)
    optimize(inputs, OutputSpec(tmp_path / "par.xyz"), calculator=EMT(), keep_trajectory=2,
             autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                        num_inputs_per_python_subprocess=1))
    assert (tmp_path / "serial.xyz").read_bytes() == (tmp_path / "par.xyz").read_bytes()
    for at, pos in zip(inputs, before):
        np.testing.assert_array_equal(at.positions, pos)
        assert at.calc is None and not any(k.startswith("optimize") for k in at.info)


class StatefulEMT(EMT):
    """EMT whose energy drifts with every calculation since its last reset(): an exaggerated
    stand-in for calculators that keep state between configurations (neighbour lists,
    caches), following ASE's convention that reset() clears it."""

    def reset(self):
        super().reset()
        self.n_calcs = 0

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.n_calcs = getattr(self, "n_calcs", 0) + 1
        self.results["energy"] += 1e-6 * self.n_calcs


def test_a_result_does_not_depend_on_the_items_run_before_it():
    item = rattled(repeat=1, seed=5)
    alone = run([item], calculator=StatefulEMT())[-1]
    after_other = run([rattled(repeat=1, seed=2), item], calculator=StatefulEMT())[-1]
    assert after_other.info["StatefulEMT_energy"] == alone.info["StatefulEMT_energy"]
    assert after_other.positions.tobytes() == alone.positions.tobytes()


@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizer="GPMin"), "unknown optimizer"),
    (dict(pressure=1.0), "variable_cell=True"),
    (dict(keep_trajectory=0), "keep_trajectory"),
    (dict(keep_trajectory="some"), "keep_trajectory"),
    (dict(fmax=0.0), "fmax"),
    (dict(steps=-1), "steps"),
    (dict(optimizer_kwargs=[0.1]), "optimizer_kwargs"),
])
def test_bad_parameters_raise_before_running(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        run([rattled(repeat=1)], **kwargs)


def test_optimizer_kwargs_reach_the_optimizer():
    # a tiny maxstep makes BFGS take many more steps
    start = rattled(repeat=1)
    normal = run([start])[0].info["optimize_n_steps"]
    slow = run([start], optimizer_kwargs={"maxstep": 0.005})[0].info["optimize_n_steps"]
    assert slow > normal
