"""isolated_atoms: one isolated atom per element, for reference energies (E0).

Machine-learned potentials are fitted to energies relative to the isolated atoms,
so every element of a training set needs an E0 computed with the same reference
method. This generator makes those configurations: one atom per element, at the
centre of a large cubic box, with ``config_type`` set (``"isolated_atom"`` by
default) and its spin stated explicitly, so that any calculator computes the
intended state:

- ``info["multiplicity"]`` (2S+1) is the atom's ground-state spin multiplicity
  from its term symbol (NIST atomic spectra database, Z = 1-86), or the value
  given in ``multiplicity={"O": 1, ...}``;
- ``info["charge"]`` is 0;
- the initial magnetic moment of the atom is multiplicity - 1 (Bohr magnetons),
  which spin-polarized calculators (DFT codes, tblite) read as the spin state.

The elements are those of the inputs (each input is a configuration, whose
elements count, or a chemical symbol), or the ones given in ``elements=``;
either way the output has one configuration per element in order of atomic
number, and its record names them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Optional

from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from ..engine.operation import Operation
from ..errors import ParameterError

# ground-state spin multiplicities 2S+1 of the neutral atoms, Z = 1..86 (NIST ASD terms)
GROUND_STATE_MULTIPLICITY = (
    2, 1,                                                              # H He
    2, 1, 2, 3, 4, 3, 2, 1,                                            # Li - Ne
    2, 1, 2, 3, 4, 3, 2, 1,                                            # Na - Ar
    2, 1, 2, 3, 4, 7, 6, 5, 4, 3, 2, 1, 2, 3, 4, 3, 2, 1,              # K - Kr
    2, 1, 2, 3, 6, 7, 6, 5, 4, 1, 2, 1, 2, 3, 4, 3, 2, 1,              # Rb - Xe
    2, 1, 2, 1, 4, 5, 6, 7, 8, 9, 6, 5, 4, 3, 2, 1,                    # Cs - Yb
    2, 3, 4, 5, 6, 5, 4, 3, 2, 1, 2, 3, 4, 3, 2, 1,                    # Lu - Rn
)
DEFAULT_BOX = 20.0
DEFAULT_CONFIG_TYPE = "isolated_atom"


def ground_state_multiplicity(symbol: str) -> int:
    """2S+1 of the neutral atom's ground state; ParameterError beyond radon."""
    z = atomic_numbers[symbol]
    if z > len(GROUND_STATE_MULTIPLICITY):
        raise ParameterError(
            f"isolated_atoms: no tabulated ground-state multiplicity for {symbol} (Z={z}); "
            f"give it: multiplicity={{{symbol!r}: <2S+1>}}")
    return GROUND_STATE_MULTIPLICITY[z - 1]


def _symbol(value: Any, where: str) -> str:
    if isinstance(value, str) and value in atomic_numbers and value != "X":
        return chemical_symbols[atomic_numbers[value]]
    if isinstance(value, Integral) and not isinstance(value, bool) and \
            0 < int(value) < len(chemical_symbols):
        return chemical_symbols[int(value)]
    raise ParameterError(f"isolated_atoms: {where}: {value!r} is not a chemical element; use "
                         "symbols such as 'H', 'C', 'Fe' (or atomic numbers)")


def _sorted(symbols: Iterable[str]) -> list[str]:
    return sorted(set(symbols), key=lambda s: atomic_numbers[s])


def _check(params: dict, seed: Optional[int]) -> None:
    elements = params["elements"]
    if elements is not None:
        if isinstance(elements, (str, bytes)) or not isinstance(elements, Sequence) \
                or not elements:
            raise ParameterError(f"isolated_atoms: elements must be a non-empty list of "
                                 f"chemical symbols (e.g. ['H', 'O']), got {elements!r}")
        for e in elements:
            _symbol(e, "elements")
    box = params["box"]
    if isinstance(box, bool) or not isinstance(box, Real) or not float(box) > 0:
        raise ParameterError(f"isolated_atoms: box must be the edge of the cubic box in "
                             f"Angstrom (> 0), got {box!r}")
    multiplicity = params["multiplicity"]
    if multiplicity is not None:
        if not isinstance(multiplicity, Mapping):
            raise ParameterError(f"isolated_atoms: multiplicity must map elements to 2S+1, "
                                 f"e.g. {{'O': 3}}, got {multiplicity!r}")
        for key, value in multiplicity.items():
            _symbol(key, "multiplicity")
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ParameterError(f"isolated_atoms: multiplicity[{key!r}] must be a whole "
                                     f"number >= 1 (2S+1), got {value!r}")
    if params["config_type"] is not None and not isinstance(params["config_type"], str):
        raise ParameterError(f"isolated_atoms: config_type must be a string or None, got "
                             f"{params['config_type']!r}")
    if not isinstance(params["pbc"], bool):
        raise ParameterError(f"isolated_atoms: pbc must be true or false, got "
                             f"{params['pbc']!r}")


def isolated_atom(symbol: str, elements: Optional[Sequence[str]] = None,
                  box: float = DEFAULT_BOX, multiplicity: Optional[Mapping[str, int]] = None,
                  config_type: Optional[str] = DEFAULT_CONFIG_TYPE,
                  pbc: bool = False) -> Atoms:
    """One atom of *symbol* at the centre of a cubic box of edge *box* (Angstrom).

    elements: the elements to make (default: those of the inputs). multiplicity:
    {element: 2S+1} overriding the ground state. pbc: True for plane-wave codes that
    need a periodic box (then make *box* large enough that images do not interact).
    """
    symbol = _symbol(symbol, "item")
    given = {_symbol(k, "multiplicity"): int(v) for k, v in (multiplicity or {}).items()}
    mult = given.get(symbol) or ground_state_multiplicity(symbol)
    unpaired = mult - 1
    z = atomic_numbers[symbol]
    if unpaired > z or (z - unpaired) % 2:
        raise ParameterError(
            f"isolated_atoms: multiplicity {mult} is impossible for a neutral {symbol} atom "
            f"({z} electrons): 2S+1 - 1 unpaired electrons must have the parity of {z} and "
            "not exceed it")
    atoms = Atoms(symbol, positions=[[box / 2.0] * 3], cell=[box] * 3, pbc=pbc)
    atoms.set_initial_magnetic_moments([float(unpaired)])
    atoms.info["charge"] = 0
    atoms.info["multiplicity"] = mult
    if config_type is not None:
        atoms.info["config_type"] = config_type
    return atoms


def elements_to_generate(name: str, elements: Any, inputs: Any) -> list[str]:
    """The sorted chemical symbols a generator of atoms works on: *elements* if given,
    else those of the input configurations (or symbols); ParameterError if none."""
    from ..configset import ConfigSet

    if elements is not None:
        return _sorted([_symbol(e, "elements") for e in elements])
    if inputs is None:
        raise ParameterError(f"{name}: give inputs (configurations or chemical symbols) or "
                             "elements=[...]")
    if not isinstance(inputs, ConfigSet):
        inputs = ConfigSet(inputs)
    found = _sorted(_elements_of(inputs))
    if not found:
        raise ParameterError(f"{name}: the inputs hold no atoms; give elements=[...]")
    return found


class IsolatedAtoms(Operation):
    """The isolated_atoms generator: the items are the elements (see the module docstring)."""

    def __call__(self, inputs: Any, outputs: Any, *args: Any, autopara_info: Any = None,
                 seed: int | None = None, **kwargs: Any) -> Any:
        from ..configset import ConfigSet

        params = self.validate(args, kwargs, seed)
        elements = elements_to_generate(self.name, params["elements"], inputs)
        params["elements"] = elements  # recorded: the output depends on this list only
        return super().__call__(ConfigSet.from_items(elements), outputs,
                                autopara_info=autopara_info, **params)

    def __reduce__(self):
        return (_rebuild, (self.func, self.name, self.version, self.summary, self.check))


def _rebuild(func, name, version, summary, check):
    return IsolatedAtoms(func, name, version=version, summary=summary, check=check)


def _elements_of(inputs: Any) -> set:
    found: set = set()
    for item in inputs:
        if isinstance(item, Atoms):
            found.update(item.get_chemical_symbols())
        else:
            found.add(_symbol(item, "input"))
    return found


isolated_atoms = IsolatedAtoms(isolated_atom, "isolated_atoms", version="1", check=_check,
                               summary="one isolated atom per element in a large box, "
                                       "spin multiplicity explicit, for reference energies")

__all__ = ["GROUND_STATE_MULTIPLICITY", "IsolatedAtoms", "ground_state_multiplicity",
           "isolated_atom", "isolated_atoms"]
