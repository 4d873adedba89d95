"""A plugin implementing every registration hook, each with something that works."""

from __future__ import annotations

import json
from pathlib import Path

from wflp import (
    CalculatorSpec,
    ExecutorSpec,
    FitterSpec,
    GeneratorSpec,
    SelectorSpec,
    hookimpl,
    operation,
)
from wflp.engine import run_chunk
from wflp.exec import Executor

CHUNKS_RUN: list = []  # sizes of the chunks the executor ran, in order


@operation("fix_rattle", version="1")
def fix_rattle(atoms, n=2, stdev=0.02, rng=None):
    """n randomly displaced copies of each input."""
    out = []
    for _ in range(n):
        new = atoms.copy()
        new.positions += rng.normal(scale=stdev, size=new.positions.shape)
        out.append(new)
    return out


@operation("fix_small", version="1")
def fix_small(atoms, max_atoms=3):
    """Keep configurations with at most max_atoms atoms."""
    return atoms if len(atoms) <= max_atoms else None


def fit_mean_energy(training, workdir, energy_key="energy"):
    """Mean energy per atom of the training set, written as JSON."""
    per_atom = [at.info[energy_key] / len(at) for at in training]
    path = Path(workdir) / "mean_energy.json"
    path.write_text(json.dumps({"e0": sum(per_atom) / len(per_atom), "n": len(per_atom)}))
    return path


class CountingExecutor(Executor):
    name = "fix_counting"

    def map_chunks(self, tasks, autopara_info):
        for task in tasks:
            CHUNKS_RUN.append(len(task.items))
            yield run_chunk(task)


class NotAnExecutor:
    pass


@hookimpl
def wflp_calculators():
    return [CalculatorSpec(name="fix_lj", summary="Lennard-Jones (ASE)",
                           factory="ase.calculators.lj:LennardJones", picklable=True)]


@hookimpl
def wflp_generators():
    return [GeneratorSpec(name="fix_rattle", summary="rattled copies", operation=fix_rattle)]


@hookimpl
def wflp_selectors():
    return [SelectorSpec(name="fix_small", summary="small configurations",
                         operation="wflpfix_all_kinds:fix_small")]


@hookimpl
def wflp_fitters():
    return [FitterSpec(name="fix_mean", summary="mean energy per atom", fit=fit_mean_energy,
                       calculator="fix_lj")]


@hookimpl
def wflp_executors():
    return [
        ExecutorSpec(name="fix_counting", summary="in process, counting chunks",
                     factory=CountingExecutor),
        ExecutorSpec(name="fix_not_an_executor", summary="a broken factory",
                     factory=NotAnExecutor),
    ]
