"""Things the Dask workers import by name (a test module's sys.path reaches them)."""

from __future__ import annotations

import os

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from wflp import operation


def rattled_cu(n: int, seed: int = 0) -> list:
    """n rattled 4-atom Cu cells, reproducible from seed."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        at = bulk("Cu", "fcc", a=3.6, cubic=True)
        at.positions += rng.normal(scale=0.05, size=at.positions.shape)
        at.info["i"] = i
        out.append(at)
    return out


class CountingEMT(EMT):
    """EMT that appends its process id to *log* each time it is built (reset every 32
    configurations, like EMT itself, so that its results match a serial EMT's bytes)."""

    wflp_reset_interval = 32

    def __init__(self, log: str, **kwargs):
        with open(log, "a") as fd:
            fd.write(f"{os.getpid()}\n")
        super().__init__(**kwargs)


@operation("logged_shift", version="1")
def logged_shift(at, index, log: str, work: int = 20000):
    """Shift item *index* by an amount it decides, after some arithmetic (its cost), and
    append "index pid" to *log* (how tests see which items were computed, and where)."""
    total = 0.0
    for k in range(work):
        total += (k % 7) * 1e-9
    at.positions += 0.001 * index + total * 0
    at.info["shifted"] = index
    with open(log, "a") as fd:
        fd.write(f"{index} {os.getpid()}\n")
    return at


def read_log(path) -> list[tuple[int, int]]:
    """(index, pid) lines of a log written by logged_shift."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as fd:
        for line in fd:
            parts = line.split()
            if len(parts) == 2:  # a line being written is not counted yet
                out.append((int(parts[0]), int(parts[1])))
    return out
