"""Results never depend on which configurations a process evaluated before.

A calculator keeps state between configurations (EMT and LennardJones a neighbour
list, which changes the last bits of the results). calculate resets it as often
as it declares: before every configuration (the default), every N (EMT, LJ: chunks
then start only at multiples of N), or never. Whatever the chunking and the number
of processes, the output bytes are the same.
"""

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from wflp import AutoparaInfo, ConfigSet, OutputSpec
from wflp.calculators import reset_interval
from wflp.ops import calculate


def snapshots(n, seed=0, repeat=1):
    """Rattled snapshots of one cell: a reused calculator keeps its neighbour list."""
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((repeat,) * 3)
    out = []
    for _ in range(n):
        atoms = base.copy()
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        out.append(atoms)
    return out


RUNS = [
    AutoparaInfo(),
    AutoparaInfo(num_inputs_per_python_subprocess=7),
    AutoparaInfo(num_python_subprocesses=2),
    AutoparaInfo(num_python_subprocesses=2, num_inputs_per_python_subprocess=5),
]


@pytest.mark.parametrize("calculator", [EMT(), "emt", LennardJones(sigma=2.3, rc=5.0),
                                        ("lj", [], {"sigma": 2.3, "rc": 5.0})],
                         ids=["EMT", "emt", "LJ", "lj"])
def test_bytes_do_not_depend_on_chunking_or_processes(tmp_path, calculator):
    configs = snapshots(150)
    source = tmp_path / "in.xyz"
    ase.io.write(source, configs)
    outputs = []
    for i, info in enumerate(RUNS):
        out = tmp_path / f"o{i}.xyz"
        calculate(ConfigSet(source), OutputSpec(out), calculator=calculator, prefix="C_",
                  autopara_info=info)
        outputs.append(out.read_bytes())
    assert all(o == outputs[0] for o in outputs[1:])


def test_emt_results_are_those_of_a_reset_every_32_configurations():
    configs = snapshots(150)
    assert reset_interval(EMT()) == reset_interval("emt") == 32
    got = list(calculate([a.copy() for a in configs], OutputSpec(), calculator=EMT(),
                         prefix="C_", autopara_info=AutoparaInfo(num_python_subprocesses=2)))
    calc = EMT()
    reused_differs = False
    for i, atoms in enumerate(configs):
        if i % 32 == 0:
            calc.reset()
        atoms = atoms.copy()
        atoms.calc = calc
        forces = atoms.get_forces()
        assert np.array_equal(got[i].arrays["C_forces"], forces)  # bit for bit
        fresh = atoms.copy()
        fresh.calc = EMT()
        # a kept neighbour list changes only the last bits
        np.testing.assert_allclose(forces, fresh.get_forces(), rtol=0, atol=1e-12)
        reused_differs |= not np.array_equal(forces, fresh.get_forces())
    assert reused_differs  # the state does matter, which is why the reset points are fixed


class _Counting(Calculator):
    """An in-process calculator counting how often calculate resets it."""

    implemented_properties = ["energy"]
    resets = 0

    def reset(self):
        type(self).resets += 1
        super().reset()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = {"energy": float(self.atoms.positions.sum())}


class _Stateless(_Counting):
    wflp_reset_interval = 0  # declares: what it computed before never matters


@pytest.mark.parametrize("cls,expected", [(_Counting, 10), (_Stateless, 0)])
def test_reset_as_often_as_the_calculator_declares(cls, expected):
    cls.resets = 0
    out = list(calculate(snapshots(10), OutputSpec(), calculator=cls()))
    assert len(out) == 10 and cls.resets == expected


def test_chunks_start_at_multiples_of_the_reset_interval(register_wflp_plugin):
    from wflp import ExecutorSpec, hookimpl
    from wflp.engine import run_chunk
    from wflp.exec import Executor

    starts = []

    class Recording(Executor):
        name, in_process, shares_files = "recording", True, True

        def map_chunks(self, tasks, info):
            for task in tasks:
                starts.append(task.start)
                yield run_chunk(task)

    class Plugin:
        @hookimpl
        def wflp_executors(self):
            return [ExecutorSpec(name="recording", summary="records where chunks start",
                                 factory=Recording)]

    register_wflp_plugin(Plugin())
    info = AutoparaInfo(executor="recording", num_inputs_per_python_subprocess=10)
    calculate(snapshots(150), OutputSpec(), calculator="emt", autopara_info=info)
    assert starts == [0, 32, 64, 96, 128]  # 10 rounded up to whole blocks of 32
    starts.clear()
    calculate(snapshots(25), OutputSpec(), calculator=_Counting(), autopara_info=info)
    assert starts == [0, 10, 20]  # reset before every configuration: chunks anywhere
