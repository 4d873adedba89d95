"""atoms_and_dimers: isolated atoms and dimer curves for every pair of elements.

A potential should know the energy of each isolated atom (E0) and the short-range
repulsion of each pair of elements, which configurations near equilibrium never show.
As wfl.generate.atoms_and_dimers, this generator makes, for a list of elements:

- one isolated atom per element (unless ``isolated_atoms=False``), exactly as
  wflp's ``isolated_atoms`` makes it (ground-state multiplicity in
  ``info["multiplicity"]`` and the initial magnetic moment, ``multiplicity=`` overrides),
  ``config_type`` "isolated_atom";
- for every unordered pair (A, B), A <= B by atomic number, ``dimer_n_steps`` dimers at
  distances evenly spaced from ``dimer_factor_range[0]`` to ``dimer_factor_range[1]``
  times the pair's bond length (``bond_lengths[A] + bond_lengths[B]`` halves, by default
  the sum of ASE's covalent radii), along x at the centre of a cubic box of edge ``box``,
  ``config_type`` "dimer", ``info["dimer_distance"]`` in Angstrom. A dimer's initial
  magnetic moments are those of its isolated atoms (the state it dissociates to).

The elements are those of the inputs (configurations or chemical symbols) or
``elements=``; the output lists the atoms (by atomic number), then the pairs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Optional

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from ..engine.operation import Operation
from ..errors import ParameterError
from .isolated import DEFAULT_BOX, _symbol, elements_to_generate, isolated_atom

PAIR_SEPARATOR = "-"


def bond_length(symbol: str, bond_lengths: Optional[Mapping[str, float]]) -> float:
    """The element's bond length: bond_lengths[symbol], else twice its covalent radius."""
    given = {_symbol(k, "bond_lengths"): float(v) for k, v in (bond_lengths or {}).items()}
    if symbol in given:
        return given[symbol]
    return 2.0 * float(covalent_radii[atomic_numbers[symbol]])


def _check(params: dict, seed: Optional[int]) -> None:
    elements = params["elements"]
    if elements is not None:
        if isinstance(elements, (str, bytes)) or not isinstance(elements, Sequence) \
                or not elements:
            raise ParameterError(f"atoms_and_dimers: elements must be a non-empty list of "
                                 f"chemical symbols (e.g. ['H', 'O']), got {elements!r}")
        for e in elements:
            _symbol(e, "elements")
    lengths = params["bond_lengths"]
    if lengths is not None:
        if not isinstance(lengths, Mapping):
            raise ParameterError(f"atoms_and_dimers: bond_lengths must map elements to "
                                 f"lengths in Angstrom, e.g. {{'O': 1.2}}, got {lengths!r}")
        for key, value in lengths.items():
            _symbol(key, "bond_lengths")
            if isinstance(value, bool) or not isinstance(value, Real) or not float(value) > 0:
                raise ParameterError(f"atoms_and_dimers: bond_lengths[{key!r}] must be > 0 "
                                     f"(Angstrom), got {value!r}")
    factors = params["dimer_factor_range"]
    try:
        low, high = (float(f) for f in factors)
        ok = 0 < low < high and not any(isinstance(f, bool) for f in factors)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(f"atoms_and_dimers: dimer_factor_range must be (low, high) with "
                             f"0 < low < high, factors of the bond length, got {factors!r}")
    steps = params["dimer_n_steps"]
    if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 2:
        raise ParameterError(f"atoms_and_dimers: dimer_n_steps must be a whole number >= 2, "
                             f"got {steps!r}")
    box = params["box"]
    if isinstance(box, bool) or not isinstance(box, Real) or not float(box) > 0:
        raise ParameterError(f"atoms_and_dimers: box must be the edge of the cubic box in "
                             f"Angstrom (> 0), got {box!r}")
    for name in ("isolated_atoms", "pbc"):
        if not isinstance(params[name], bool):
            raise ParameterError(f"atoms_and_dimers: {name} must be true or false, got "
                                 f"{params[name]!r}")


def atoms_or_dimers(item: str, elements: Optional[Sequence[str]] = None,
                    bond_lengths: Optional[Mapping[str, float]] = None,
                    dimer_factor_range: Sequence[float] = (0.65, 2.5), dimer_n_steps: int = 41,
                    box: float = DEFAULT_BOX, multiplicity: Optional[Mapping[str, int]] = None,
                    isolated_atoms: bool = True, pbc: bool = False) -> list[Atoms]:
    """The isolated atom of *item* ("O"), or the dimer curve of the pair *item* ("H-O")."""
    symbols = item.split(PAIR_SEPARATOR)
    atoms = [isolated_atom(s, box=box, multiplicity=multiplicity, pbc=pbc) for s in symbols]
    if len(symbols) == 1:
        return atoms
    first, second = atoms
    base = 0.5 * (bond_length(symbols[0], bond_lengths) + bond_length(symbols[1], bond_lengths))
    low, high = (float(f) for f in dimer_factor_range)
    out = []
    for distance in np.linspace(low * base, high * base, int(dimer_n_steps)):
        centre = box / 2.0
        dimer = Atoms(symbols, positions=[[centre - distance / 2, centre, centre],
                                          [centre + distance / 2, centre, centre]],
                      cell=[box] * 3, pbc=pbc)
        dimer.set_initial_magnetic_moments([first.get_initial_magnetic_moments()[0],
                                            second.get_initial_magnetic_moments()[0]])
        dimer.info["config_type"] = "dimer"
        dimer.info["dimer_distance"] = float(distance)
        out.append(dimer)
    return out


class AtomsAndDimers(Operation):
    """The atoms_and_dimers generator: the items are the elements, then the pairs."""

    def __call__(self, inputs: Any, outputs: Any, *args: Any, autopara_info: Any = None,
                 seed: int | None = None, **kwargs: Any) -> Any:
        from ..configset import ConfigSet

        params = self.validate(args, kwargs, seed)
        elements = elements_to_generate(self.name, params["elements"], inputs)
        params["elements"] = elements  # recorded: the output depends on this list only
        items = list(elements) if params["isolated_atoms"] else []
        items += [f"{a}{PAIR_SEPARATOR}{b}"
                  for a, b in itertools.combinations_with_replacement(elements, 2)]
        return super().__call__(ConfigSet.from_items(items), outputs,
                                autopara_info=autopara_info, **params)

    def __reduce__(self):
        return (_rebuild, (self.func, self.name, self.version, self.summary, self.check))


def _rebuild(func, name, version, summary, check):
    return AtomsAndDimers(func, name, version=version, summary=summary, check=check)


atoms_and_dimers = AtomsAndDimers(atoms_or_dimers, "atoms_and_dimers", version="1",
                                  check=_check,
                                  summary="isolated atoms and dimer curves for every pair of "
                                          "elements")

__all__ = ["AtomsAndDimers", "atoms_and_dimers", "atoms_or_dimers", "bond_length"]
