"""Chunks that travel to worker processes: their items arrive as private copies, once.

A pool (or Dask) worker unpickles a chunk's items into objects no one else holds, so it
hands them to the operation without the per-item Atoms.copy a serial run needs; and if a
per-chunk function changed them and then failed, the items it is rerun on one by one
are unpickled again, pristine.
"""

from __future__ import annotations

import pickle

import numpy as np
from ase.build import bulk
from wflp import AutoparaInfo, OutputSpec
from wflp.engine import operation
from wflp.engine.chunks import ChunkTask


def cells(n: int) -> list:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.info["i"] = i
        out.append(atoms)
    return out


def test_an_unpickled_task_hands_out_its_items_once_then_pristine_copies():
    items = cells(3)
    task = ChunkTask(b"", "d", 0, [0, 1, 2], items, 0)
    assert task.fresh_items() is None            # made here: the caller's objects
    received = pickle.loads(pickle.dumps(task))
    first = received.fresh_items()
    assert first is received.items               # no copy: they are this process's own
    first[0].positions += 1.0                    # an operation changes them ...
    first[1].info["changed"] = True
    again = received.fresh_items()               # ... then the chunk is rerun item by item
    assert again is not first
    assert np.array_equal(again[0].positions, items[0].positions)
    assert "changed" not in again[1].info
    # and a task that travels on (a retry elsewhere) carries the pristine items too
    forwarded = pickle.loads(pickle.dumps(received)).fresh_items()
    assert np.array_equal(forwarded[0].positions, items[0].positions)
    assert "changed" not in forwarded[1].info


@operation("rattle_then_fail_on_four", per="chunk")
def _rattle_then_fail(items, index):
    for atoms in items:               # changes every item in place first ...
        atoms.positions[0, 0] += 0.25
    if 4 in index:                    # ... then fails on one of them
        raise ValueError("item four is bad")
    return items


def test_a_per_chunk_failure_reruns_from_pristine_items_in_workers_as_in_serial(tmp_path):
    def run(nproc: int, name: str) -> bytes:
        out = tmp_path / name
        list(_rattle_then_fail(
            cells(8), OutputSpec(out),
            autopara_info=AutoparaInfo(num_python_subprocesses=nproc, skip_failed=True,
                                       num_inputs_per_python_subprocess=4)))
        return out.read_bytes()

    serial, pooled = run(1, "serial.xyz"), run(2, "pooled.xyz")
    assert pooled == serial
    # every kept item was rattled exactly once: rerun from pristine copies, not twice
    import ase.io

    kept = ase.io.read(tmp_path / "pooled.xyz", ":")
    assert [a.info["i"] for a in kept] == [0, 1, 2, 3, 5, 6, 7]
    for atoms, original in zip(kept, [c for c in cells(8) if c.info["i"] != 4]):
        assert np.isclose(atoms.positions[0, 0] - original.positions[0, 0], 0.25)
