"""Helpers for stand-in programs in tests of file-based calculator plugins.

A plugin whose program cannot be installed (VASP, ORCA, CASTEP, FHI-aims) is tested with
a stand-in executable that reads the real input files, computes energies with a simple
potential and writes the program's real output format. What every stand-in shares is
here (numpy only, so stand-ins start fast): the potential, and the failure modes tests
ask for through ``$WFLP_STANDIN_FAIL``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable

import numpy as np

SIGMA, EPSILON, CUTOFF = 2.3, 0.4, 5.0   # the stand-ins' Lennard-Jones potential (eV, Å)


def lennard_jones(positions, cell, pbc, sigma=SIGMA, epsilon=EPSILON, rc=CUTOFF):
    """Energy, forces and stress (ASE's sign, Voigt order) of a truncated, shifted
    Lennard-Jones potential over periodic images: ASE's LennardJones(smooth=False)."""
    pos = np.asarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float)
    reps = []
    volume = abs(np.linalg.det(cell))  # used along periodic directions only
    for k in range(3):
        if pbc[k]:
            other = np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])
            height = volume / np.linalg.norm(other)
            reps.append(range(-int(np.ceil(rc / height)), int(np.ceil(rc / height)) + 1))
        else:
            reps.append(range(1))
    e0 = 4 * epsilon * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    energy, forces, virial = 0.0, np.zeros_like(pos), np.zeros((3, 3))
    for shift in itertools.product(*reps):
        d = pos[None, :, :] + np.array(shift, dtype=float) @ cell - pos[:, None, :]
        r2 = (d ** 2).sum(-1)
        mask = (r2 < rc * rc) & (r2 > 1e-12)
        r2 = np.where(mask, r2, 1.0)
        c6 = (sigma * sigma / r2) ** 3
        energy += 0.5 * np.sum(np.where(mask, 4 * epsilon * (c6 * c6 - c6) - e0, 0.0))
        fmag = np.where(mask, 24 * epsilon * (2 * c6 * c6 - c6) / r2, 0.0)
        forces -= (fmag[..., None] * d).sum(axis=1)
        virial += 0.5 * np.einsum("ij,ija,ijb->ab", fmag, d, d)
    stress = None
    if volume:
        s = -virial / volume
        stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    return energy, forces, stress


def failure_mode(symbols: Iterable[str]) -> str:
    """The failure mode asked for structures with these elements: ``$WFLP_STANDIN_FAIL``
    is "mode:Element,..." (e.g. "crash:Ar,unconverged:Cu"); "ok" when none applies."""
    mode = "ok"
    present = set(symbols)
    for item in filter(None, os.environ.get("WFLP_STANDIN_FAIL", "").split(",")):
        what, _, element = item.partition(":")
        if element in present:
            mode = what
    return mode


def pause() -> None:
    """Take as long as ``$WFLP_STANDIN_SLEEP`` seconds (default 0.05), as a program would."""
    time.sleep(float(os.environ.get("WFLP_STANDIN_SLEEP", "0.05")))


__all__ = ["CUTOFF", "EPSILON", "SIGMA", "failure_mode", "lennard_jones", "pause"]
