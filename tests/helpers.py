"""Small builders shared by the core tests."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk


def rattled_cu(n: int, seed: int = 0, repeat: int = 1) -> list[Atoms]:
    """n rattled fcc Cu cells (4 atoms, or 4*repeat**3), reproducible from seed."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", "fcc", a=3.6, cubic=True) * (repeat, repeat, repeat)
        at.positions += rng.normal(scale=0.05, size=at.positions.shape)
        out.append(at)
    return out
