"""supercells: each input repeated by an integer matrix (ase.build.make_supercell).

``matrix`` is a whole number n (an n x n x n repeat), three whole numbers (n1, n2, n3)
(a diagonal repeat), or a 3 x 3 integer matrix P whose rows give the new cell vectors in
terms of the old ones (new cell = P @ old cell), e.g. the conventional cubic cell of a
primitive fcc cell with P = [[-1, 1, 1], [1, -1, 1], [1, 1, -1]]. det(P) must be positive:
the supercell holds det(P) times the atoms. Per-atom arrays are repeated with the
atoms; info is kept (calculator results stored there describe the input, not the
supercell) and ``info["supercell_matrix"]`` records P. Inputs need a full 3D cell.
"""

from __future__ import annotations

import copy
from numbers import Integral
from typing import Any, Optional

import numpy as np
from ase import Atoms

from ..engine import operation
from ..errors import ParameterError


def supercell_matrix(matrix: Any, where: str = "supercells") -> np.ndarray:
    """The 3 x 3 integer matrix that *matrix* (n, (n1, n2, n3) or 3 x 3) stands for."""
    def bad() -> ParameterError:
        return ParameterError(
            f"{where}: matrix must be a whole number n, three whole numbers (n1, n2, n3) or a "
            f"3 x 3 integer matrix with a positive determinant, got {matrix!r}")

    if isinstance(matrix, bool):
        raise bad()
    if isinstance(matrix, Integral):
        p = np.eye(3, dtype=int) * int(matrix)
    else:
        try:
            values = np.asarray(matrix)
        except Exception:  # noqa: BLE001 - a ragged list
            raise bad() from None
        if values.dtype == bool or values.dtype.kind not in "iuf" or \
                values.shape not in ((3,), (3, 3)) or not np.all(values == np.round(values)):
            raise bad()
        values = np.round(values).astype(int)
        p = np.diag(values) if values.shape == (3,) else values
    if round(np.linalg.det(p)) <= 0:
        raise bad()
    return p


def _check(params: dict, seed: Optional[int]) -> None:
    supercell_matrix(params["matrix"])
    if not isinstance(params["wrap"], bool):
        raise ParameterError(f"supercells: wrap must be true or false, got {params['wrap']!r}")


@operation("supercells", version="1", check=_check)
def supercells(atoms: Atoms, matrix: Any, wrap: bool = True) -> Atoms:
    """The supercell of each input given by *matrix* (n, (n1, n2, n3) or 3 x 3 integers).

    wrap: put the atoms back inside the new cell (as ase.build.make_supercell).
    """
    from ase.build import make_supercell

    p = supercell_matrix(matrix)
    if not isinstance(atoms, Atoms):
        raise TypeError(f"supercells takes Atoms, got {type(atoms).__name__}")
    if atoms.cell.rank < 3 or abs(atoms.cell.volume) < 1e-9:
        raise ValueError("supercells: this configuration has no full 3D cell "
                         f"(cell lengths {np.round(atoms.cell.lengths(), 6).tolist()}); give "
                         "it one (atoms.cell) or leave it out")
    out = make_supercell(atoms, p, wrap=wrap)
    out.calc = None
    out.info.update(copy.deepcopy(atoms.info))
    out.info["supercell_matrix"] = p
    return out


__all__ = ["supercell_matrix", "supercells"]
