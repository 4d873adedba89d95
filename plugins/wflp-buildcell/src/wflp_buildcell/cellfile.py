"""buildcell's files: the ``.cell`` input it reads and the ``.cell`` structure it writes.

buildcell (AIRSS) reads a CASTEP ``.cell`` file on stdin in which lines starting
with one ``#`` are generation tags (``#MINSEP=1.5 Si-O=1.6``; ``##`` starts a
comment), and writes one random structure as a CASTEP ``.cell`` file on stdout:
a header of ``#`` comments (naming the space group), a ``LATTICE_ABC`` (or
``LATTICE_CART``) block and a ``POSITIONS_FRAC`` (or ``POSITIONS_ABS``) block.
See https://airss-docs.github.io/technical-reference/buildcell-manual.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any, Optional, Union

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from ase.geometry import cellpar_to_cell
from ase.units import Bohr

Range = Union[int, float, Sequence]
# tags this plugin writes from its parameters, and tags that would contradict them
# (VARVOL/VOL override TARGVOL, NATOM/FORMULA the composition): extra= may not set them
OWN_TAGS = ("SPECIES", "NFORM", "TARGVOL", "MINSEP", "SYMMOPS", "SEED", "VARVOL", "VOL",
            "NATOM", "FORMULA")


class CellFileError(ValueError):
    """buildcell's output is not a structure this reader understands."""


def _num(value: float) -> str:
    """A number as buildcell reads it: shortest repr, no exponent for usual sizes."""
    text = f"{float(value):.10g}"
    return text


def _range(value: Range) -> str:
    if isinstance(value, (list, tuple)):
        low, high = value
        return _num(low) if low == high else f"{_num(low)}-{_num(high)}"
    return _num(value)


def composition_counts(composition: Any, where: str = "composition") -> dict[str, int]:
    """{element: count} of one formula unit, from "SiO2", {"Si": 1, "O": 2} or Atoms."""
    from ase.formula import Formula

    if isinstance(composition, Atoms):
        symbols = composition.get_chemical_symbols()
        counts = {s: symbols.count(s) for s in dict.fromkeys(symbols)}
    elif isinstance(composition, str):
        try:
            counts = dict(Formula(composition.strip()).count())
        except Exception as err:  # ase raises ValueError and others for bad formulas
            raise ValueError(f"{where}: {composition!r} is not a chemical formula ({err}); "
                             "write it like 'SiO2' or {'Si': 1, 'O': 2}") from None
    elif isinstance(composition, Mapping):
        counts = dict(composition)
    else:
        raise ValueError(f"{where} must be a formula ('SiO2'), a dict {{'Si': 1, 'O': 2}} or "
                         f"a configuration, got {type(composition).__name__}")
    out = {}
    for symbol, count in counts.items():
        if not isinstance(symbol, str) or symbol not in atomic_numbers or symbol == "X":
            raise ValueError(f"{where}: {symbol!r} is not a chemical element")
        if isinstance(count, bool) or not isinstance(count, Integral) or count < 1:
            raise ValueError(f"{where}: the count of {symbol} must be a whole number >= 1, "
                             f"got {count!r}")
        out[chemical_symbols[atomic_numbers[symbol]]] = int(count)
    if not out:
        raise ValueError(f"{where} has no atoms")
    return out


def _pair(key: str, where: str) -> tuple[str, str]:
    parts = key.split("-")
    if len(parts) != 2 or any(p not in atomic_numbers or p == "X" for p in parts):
        raise ValueError(f"{where}: {key!r} is not a pair of elements like 'Si-O'")
    return parts[0], parts[1]


def minsep_text(min_separation: Any, elements: Sequence[str]) -> str:
    """The value of #MINSEP: a default distance, then element pairs ("1.5 Si-O=1.6")."""
    where = "min_separation"
    if isinstance(min_separation, Real) and not isinstance(min_separation, bool):
        if min_separation <= 0:
            raise ValueError(f"{where} must be > 0 (Angstrom), got {min_separation!r}")
        return _num(min_separation)
    if not isinstance(min_separation, Mapping) or not min_separation:
        raise ValueError(f"{where} must be a distance (Angstrom) or a dict of element pairs "
                         f"{{'Si-O': 1.6, 'O-O': 2.4, 'default': 1.0}}, got {min_separation!r}")
    pairs = []
    default = None
    for key, value in min_separation.items():
        if isinstance(value, bool) or not isinstance(value, Real) or value <= 0:
            raise ValueError(f"{where}[{key!r}] must be a distance > 0 (Angstrom), got "
                             f"{value!r}")
        if key == "default":
            default = float(value)
            continue
        a, b = _pair(key, where)
        for e in (a, b):
            if e not in elements:
                raise ValueError(f"{where}: {key!r} names {e}, which is not in the "
                                 f"composition ({', '.join(elements)})")
        pairs.append(f"{a}-{b}={_num(value)}")
    if default is None:  # buildcell needs one: the smallest pair distance
        default = min(float(v) for k, v in min_separation.items() if k != "default")
    return " ".join([_num(default)] + pairs)


def cell_input(composition: Mapping[str, int], *, volume_per_atom: Range,
               n_formula_units: Range = 1, min_separation: Any = None,
               symmetry_operations: Optional[Range] = None, extra: Any = "",
               seed: Optional[int] = None) -> str:
    """The text of a buildcell input from the parameters (checked; ValueError naming the bad
    one). The target volume is given per formula unit, as buildcell reads it."""
    counts = composition_counts(composition)
    per_unit = sum(counts.values())
    lines = ["#SPECIES=" + ",".join(f"{s}%NUM={n}" for s, n in counts.items())]
    lines.append("#NFORM=" + _range(_whole_range(n_formula_units, "n_formula_units")))
    low, high = _positive_range(volume_per_atom, "volume_per_atom")
    lines.append("#TARGVOL=" + _range((low * per_unit, high * per_unit)))
    if symmetry_operations is not None:
        lines.append("#SYMMOPS=" + _range(_whole_range(symmetry_operations,
                                                       "symmetry_operations")))
    if min_separation is not None:
        lines.append("#MINSEP=" + minsep_text(min_separation, list(counts)))
    lines.extend(extra_lines(extra))
    if seed is not None:
        lines.append(f"#SEED={int(seed)}")
    return "\n".join(lines) + "\n"


def _whole_range(value: Any, where: str) -> Range:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, Integral) or v < 1
                                  for v in value) or value[0] > value[1]:
            raise ValueError(f"{where} must be a whole number >= 1 or a range [low, high], "
                             f"got {value!r}")
        return (int(value[0]), int(value[1]))
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{where} must be a whole number >= 1 or a range [low, high], got "
                         f"{value!r}")
    return int(value)


def _positive_range(value: Any, where: str) -> tuple[float, float]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    else:
        low = high = value
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, Real) or not v > 0:
            raise ValueError(f"{where} must be a positive number or a range [low, high] "
                             f"(Angstrom^3 per atom), got {value!r}")
    if low > high:
        raise ValueError(f"{where}: the range {value!r} runs backwards")
    return float(low), float(high)


def extra_lines(extra: Any) -> list[str]:
    """The free-form lines of extra= (a string or a list of lines), checked: none may set a
    tag that a parameter sets."""
    if extra is None or extra == "":
        return []
    if isinstance(extra, str):
        lines = extra.splitlines()
    elif isinstance(extra, (list, tuple)) and all(isinstance(x, str) for x in extra):
        lines = [x for item in extra for x in item.splitlines()]
    else:
        raise ValueError(f"extra must be text (lines of the buildcell input) or a list of "
                         f"lines, got {extra!r}")
    out = []
    for line in lines:
        if "\0" in line:
            raise ValueError("extra contains a NUL character")
        match = re.match(r"^\s*#\s*([A-Za-z_]+)", line)
        if match and not line.lstrip().startswith("##") and match.group(1).upper() in OWN_TAGS:
            tag = match.group(1).upper()
            raise ValueError(f"extra sets #{tag}, which the parameters decide (composition, "
                             "n_formula_units, volume_per_atom, min_separation, "
                             "symmetry_operations; the seed comes from seed=): use them")
        out.append(line.rstrip())
    return out


# -- reading the structure ------------------------------------------------------------------

_BLOCK = re.compile(r"^\s*%block\s+(\w+)", re.I)
_END = re.compile(r"^\s*%endblock\s+(\w+)", re.I)
_SPACE_GROUP = re.compile(r"^\s*#.*space group:\s*(\S+)", re.I)


def read_cell(text: str) -> Atoms:
    """The structure in a CASTEP .cell text as buildcell writes it; CellFileError if there is
    none. info["buildcell_space_group"] holds the space group its header names."""
    blocks: dict[str, list[str]] = {}
    space_group = None
    current: Optional[str] = None
    for raw in text.splitlines():
        if current is None:
            match = _SPACE_GROUP.match(raw)
            if match and space_group is None:
                space_group = match.group(1)
            match = _BLOCK.match(raw)
            if match:
                current = match.group(1).upper()
                blocks[current] = []
            continue
        if _END.match(raw):
            current = None
            continue
        line = re.split(r"[#!]", raw, maxsplit=1)[0].strip()
        if line:
            blocks[current].append(line)
    if current is not None:
        raise CellFileError(f"the block {current} is not closed (%ENDBLOCK); the output was "
                            "cut off")
    cell = _lattice(blocks)
    symbols, coords, fractional = _positions(blocks)
    atoms = Atoms(symbols, cell=cell, pbc=True)
    if fractional:
        atoms.set_scaled_positions(coords)
    else:
        atoms.positions = coords
    if space_group is not None:
        atoms.info["buildcell_space_group"] = space_group
    return atoms


def _unit(lines: list[str]) -> tuple[float, list[str]]:
    if lines and lines[0].lower() in ("ang", "bohr", "nm"):
        return {"ang": 1.0, "bohr": Bohr, "nm": 10.0}[lines[0].lower()], lines[1:]
    return 1.0, lines


def _floats(line: str, n: int, what: str) -> list[float]:
    parts = line.split()
    try:
        values = [float(x) for x in parts[:n]]
    except ValueError:
        raise CellFileError(f"{what}: {line!r} does not start with {n} numbers") from None
    if len(values) != n:
        raise CellFileError(f"{what}: {line!r} does not start with {n} numbers")
    return values


def _lattice(blocks: dict) -> np.ndarray:
    if "LATTICE_ABC" in blocks:
        unit, lines = _unit(blocks["LATTICE_ABC"])
        if len(lines) != 2:
            raise CellFileError(f"LATTICE_ABC has {len(lines)} lines, not 2")
        abc = np.array(_floats(lines[0], 3, "LATTICE_ABC")) * unit
        angles = _floats(lines[1], 3, "LATTICE_ABC")
        return cellpar_to_cell(list(abc) + angles)
    if "LATTICE_CART" in blocks:
        unit, lines = _unit(blocks["LATTICE_CART"])
        if len(lines) != 3:
            raise CellFileError(f"LATTICE_CART has {len(lines)} lines, not 3")
        return np.array([_floats(x, 3, "LATTICE_CART") for x in lines]) * unit
    raise CellFileError("there is no LATTICE_ABC or LATTICE_CART block")


def _positions(blocks: dict) -> tuple[list[str], np.ndarray, bool]:
    for name, fractional in (("POSITIONS_FRAC", True), ("POSITIONS_ABS", False)):
        if name in blocks:
            unit, lines = _unit(blocks[name]) if not fractional else (1.0, blocks[name])
            if not lines:
                raise CellFileError(f"{name} holds no atoms")
            symbols, coords = [], []
            for line in lines:
                parts = line.split()
                element = parts[0].split(":")[0]
                if element not in atomic_numbers or element == "X":
                    raise CellFileError(f"{name}: {parts[0]!r} is not a chemical element")
                symbols.append(element)
                coords.append(_floats(" ".join(parts[1:]), 3, name))
            return symbols, np.array(coords) * unit, fractional
    raise CellFileError("there is no POSITIONS_FRAC or POSITIONS_ABS block")


__all__ = ["CellFileError", "OWN_TAGS", "cell_input", "composition_counts", "extra_lines",
           "minsep_text", "read_cell"]
