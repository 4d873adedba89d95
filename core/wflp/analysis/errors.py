"""Errors of a model against a reference: RMSE, MAE and largest error, by group.

Both sets of results live on the same configurations under two key prefixes, as
``calculate`` stores them (``info["<prefix>energy"]``, ``arrays["<prefix>forces"]``,
``info["<prefix>stress"]``, ``info["<prefix>virial"]``). The configurations are read
once, one at a time (a file of any size streams): only running sums per property and
group are kept.

Properties (all in eV and Angstrom; the table shows meV):

====================================  ==============  ======================================
name                                  unit            one value per
====================================  ==============  ======================================
``energy_per_atom``                   eV/atom         configuration
``atomization_energy_per_atom``       eV/atom         configuration of 2 atoms or more, when
                                                      isolated-atom energies are given
``forces``                            eV/A            force component
``forces[H]``, ``forces[C]`` ...      eV/A            force component on atoms of one element
``stress``                            eV/A^3          Voigt component (xx yy zz yz xz xy)
``virial_per_atom``                   eV/atom         Voigt component of the virial / atoms
                                                      (``<prefix>virial``, or -stress x volume)
====================================  ==============  ======================================

Configurations are grouped by one or more ``info`` keys (``config_type`` by default; a
configuration without the key is in the group ``"-"``); groups are sorted naturally
(``md_300K`` before ``md_1000K``) and the overall row comes last. A configuration the
model failed on (``<model>calc_failed``) is left out and counted; one that lacks a
property in either result set is left out of that property only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from ..errors import InputError, ParameterError

PROPERTIES = ("energy", "atomization_energy", "forces", "stress", "virial")
NAMES = {"energy": "energy_per_atom", "atomization_energy": "atomization_energy_per_atom",
         "forces": "forces", "stress": "stress", "virial": "virial_per_atom"}
UNITS = {"energy_per_atom": "eV/atom", "atomization_energy_per_atom": "eV/atom",
         "forces": "eV/A", "stress": "eV/A^3", "virial_per_atom": "eV/atom"}
TABLE_UNITS = {"eV/atom": "meV/atom", "eV/A": "meV/A", "eV/A^3": "meV/A^3"}
OVERALL = "all"
NO_GROUP = "-"
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))

InputsLike = Any  # anything ConfigSet takes, or a mapping {label: such inputs}


@dataclass(frozen=True)
class Comparison:
    """One configuration's values of one property: reference and model, same shape.

    ``elements`` is set for forces: the element of each row.
    """

    property: str
    group: str
    reference: np.ndarray
    model: np.ndarray
    elements: Optional[tuple] = None


def unit_of(prop: str) -> str:
    """The unit of a property name (``forces[H]`` has the unit of ``forces``)."""
    return UNITS[prop.split("[", 1)[0]]


def natural_key(text: str) -> list:
    """Sort key putting ``md_300K`` before ``md_1000K`` (digits compare as numbers)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", str(text)) if part]


# -- reading values ------------------------------------------------------------------------

def _results(atoms: Any) -> dict:
    calc = getattr(atoms, "calc", None)
    return getattr(calc, "results", None) or {}


def reference_value(atoms: Any, prefix: str, name: str,
                    per_atom: bool) -> Optional[np.ndarray]:
    """The property *name* stored under *prefix* (``info``, or ``arrays`` when *per_atom*),
    as ``calculate`` stores it; with no prefix, also what ASE read back from a file (a
    SinglePointCalculator's results). None when absent. Fitters read their training
    labels with it, the error report its reference and model values."""
    key = prefix + name
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return np.asarray(store[key], dtype=float)
    if not prefix:  # energies read back by ASE sit on a SinglePointCalculator
        results = _results(atoms)
        if name in results:
            return np.asarray(results[name], dtype=float)
    return None


def _voigt(value: np.ndarray, what: str) -> np.ndarray:
    if value.shape == (6,):
        return value
    if value.size == 9:
        full = value.reshape(3, 3)
        return np.array([full[i, j] for i, j in VOIGT])
    raise InputError(f"{what} has {value.size} numbers; expected 6 (Voigt) or 9 (3x3)")


def _energy(atoms: Any, prefix: str) -> Optional[float]:
    value = reference_value(atoms, prefix, "energy", False)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(()))


def _virial(atoms: Any, prefix: str) -> Optional[np.ndarray]:
    value = reference_value(atoms, prefix, "virial", False)
    if value is not None:
        return _voigt(value, f"{prefix}virial")
    stress = reference_value(atoms, prefix, "stress", False)
    if stress is None or atoms.cell.rank < 3:
        return None
    return -_voigt(stress, f"{prefix}stress") * atoms.get_volume()


def isolated_energies(configs: InputsLike, prefix: str) -> dict:
    """{element: energy} from the single-atom configurations of *configs* (``prefix``
    energies): the E0s of atomization energies and of fitters. Two different energies
    for one element are an error."""
    from ..configset import ConfigSet

    found: dict = {}
    for atoms in _flatten(configs, ConfigSet):
        if len(atoms) != 1:
            continue
        energy = _energy(atoms, prefix)
        if energy is None:
            continue
        symbol = atoms.get_chemical_symbols()[0]
        if symbol in found and not math.isclose(found[symbol], energy, rel_tol=0, abs_tol=1e-8):
            raise InputError(f"two isolated {symbol} atoms with different {prefix}energy "
                             f"({found[symbol]} and {energy}); keep one per element")
        found[symbol] = energy
    return found


def _flatten(inputs: InputsLike, configset: Any) -> Iterator[Any]:
    if isinstance(inputs, Mapping):
        for value in inputs.values():
            yield from _flatten(value, configset)
        return
    yield from (inputs if isinstance(inputs, configset) else configset(inputs))


def _e0_pair(isolated_atoms: Any, ref: str, model: str) -> Optional[tuple]:
    """(reference E0s, model E0s): a dict serves both; configurations give each its own."""
    if isolated_atoms is None:
        return None
    if isinstance(isolated_atoms, Mapping) and all(
            isinstance(v, (int, float, np.floating, np.integer)) for v in isolated_atoms.values()):
        e0 = {str(k): float(v) for k, v in isolated_atoms.items()}
        return e0, e0
    ref_e0 = isolated_energies(isolated_atoms, ref)
    model_e0 = isolated_energies(isolated_atoms, model)
    if not ref_e0:
        raise InputError(f"the isolated atoms have no {ref}energy: give single-atom "
                         "configurations evaluated with both methods, or a dict "
                         "{element: E0}")
    missing = sorted(set(ref_e0) - set(model_e0))
    if missing:
        raise InputError(f"the isolated atoms {', '.join(missing)} have no {model}energy: "
                         f"evaluate them with the model too (or give a dict {{element: E0}} "
                         "used for both)")
    return ref_e0, model_e0


def _atomization(atoms: Any, energy: float, e0: dict, which: str) -> float:
    total = 0.0
    for symbol in atoms.get_chemical_symbols():
        if symbol not in e0:
            raise InputError(f"no isolated-atom energy for {symbol} ({which}); "
                             f"isolated atoms known: {', '.join(sorted(e0)) or 'none'}")
        total += e0[symbol]
    return (energy - total) / len(atoms)


def _group_of(atoms: Any, keys: Sequence[str], label: Optional[str]) -> str:
    parts = [label] if label is not None else []
    for key in keys:
        value = atoms.info.get(key)
        parts.append(NO_GROUP if value is None else str(value))
    return " / ".join(parts) if parts else OVERALL


def compare(inputs: InputsLike, ref_prefix: str, model_prefix: str,
            group_by: Union[str, Sequence[str], None] = "config_type",
            properties: Optional[Sequence[str]] = None, isolated_atoms: Any = None,
            counts: Optional[dict] = None) -> Iterator[Comparison]:
    """Reference and model values, one :class:`Comparison` per configuration and property.

    inputs: anything ConfigSet takes, or {label: inputs} (the label is then the first
    part of every group). properties: among ``energy``, ``atomization_energy``,
    ``forces``, ``stress``, ``virial`` (default: all; atomization energies only with
    *isolated_atoms*, configurations or a dict {element: E0}). counts, if given, is
    filled with ``configurations`` and ``model_failed``.
    """
    from ..configset import ConfigSet

    keys = _group_keys(group_by)
    wanted = _check_properties(properties, isolated_atoms)
    e0 = _e0_pair(isolated_atoms, ref_prefix, model_prefix) if "atomization_energy" in wanted \
        else None
    counts = counts if counts is not None else {}
    counts.setdefault("configurations", 0)
    counts.setdefault("model_failed", 0)
    sources = inputs.items() if isinstance(inputs, Mapping) else [(None, inputs)]
    for label, source in sources:
        configs = source if isinstance(source, ConfigSet) else ConfigSet(source)
        for atoms in configs:
            counts["configurations"] += 1
            if atoms.info.get(f"{model_prefix}calc_failed"):
                counts["model_failed"] += 1
                continue
            group = _group_of(atoms, keys, None if label is None else str(label))
            yield from _compare_one(atoms, group, ref_prefix, model_prefix, wanted, e0)


def _compare_one(atoms: Any, group: str, ref: str, model: str, wanted: Sequence[str],
                 e0: Optional[tuple]) -> Iterator[Comparison]:
    n = len(atoms)
    if n == 0:
        return
    e_ref, e_model = _energy(atoms, ref), _energy(atoms, model)
    if "energy" in wanted and e_ref is not None and e_model is not None:
        yield Comparison("energy_per_atom", group, np.array([e_ref / n]),
                         np.array([e_model / n]))
    if "atomization_energy" in wanted and e_ref is not None and e_model is not None \
            and e0 is not None and n > 1:
        yield Comparison("atomization_energy_per_atom", group,
                         np.array([_atomization(atoms, e_ref, e0[0], "reference")]),
                         np.array([_atomization(atoms, e_model, e0[1], "model")]))
    if "forces" in wanted:
        f_ref = reference_value(atoms, ref, "forces", True)
        f_model = reference_value(atoms, model, "forces", True)
        if f_ref is not None and f_model is not None:
            if f_ref.shape != (n, 3) or f_model.shape != (n, 3):
                raise InputError(f"forces of shape {f_ref.shape} and {f_model.shape} on a "
                                 f"configuration of {n} atoms ({ref}forces, {model}forces)")
            yield Comparison("forces", group, f_ref, f_model,
                             tuple(atoms.get_chemical_symbols()))
    if "stress" in wanted:
        s_ref = reference_value(atoms, ref, "stress", False)
        s_model = reference_value(atoms, model, "stress", False)
        if s_ref is not None and s_model is not None:
            yield Comparison("stress", group, _voigt(s_ref, f"{ref}stress"),
                             _voigt(s_model, f"{model}stress"))
    if "virial" in wanted:
        v_ref, v_model = _virial(atoms, ref), _virial(atoms, model)
        if v_ref is not None and v_model is not None:
            yield Comparison("virial_per_atom", group, v_ref / n, v_model / n)


def _group_keys(group_by: Union[str, Sequence[str], None]) -> tuple:
    if group_by is None:
        return ()
    keys = (group_by,) if isinstance(group_by, str) else tuple(group_by)
    for key in keys:
        if not isinstance(key, str) or not key:
            raise ParameterError(f"group_by must be info keys (strings), got {group_by!r}")
    return keys


def _check_properties(properties: Optional[Sequence[str]], isolated_atoms: Any) -> tuple:
    if properties is None:
        return tuple(p for p in PROPERTIES
                     if p != "atomization_energy" or isolated_atoms is not None)
    if isinstance(properties, str):
        properties = (properties,)
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown:
        raise ParameterError(f"unknown properties {', '.join(map(repr, unknown))}; choose "
                             f"from {', '.join(PROPERTIES)}")
    if "atomization_energy" in properties and isolated_atoms is None:
        raise ParameterError("atomization energies need isolated_atoms= (single-atom "
                             "configurations evaluated with both methods, or {element: E0})")
    return tuple(properties)


# -- accumulating ----------------------------------------------------------------------------

@dataclass
class _Sums:
    count: int = 0
    squares: float = 0.0
    absolute: float = 0.0
    largest: float = 0.0

    def add(self, diff: np.ndarray) -> None:
        diff = np.abs(np.ravel(diff))
        if diff.size == 0:
            return
        self.count += int(diff.size)
        self.squares += float(np.dot(diff, diff))
        self.absolute += float(diff.sum())
        self.largest = max(self.largest, float(diff.max()))

    def stats(self) -> dict:
        return {"count": self.count, "rmse": math.sqrt(self.squares / self.count),
                "mae": self.absolute / self.count, "max": self.largest}


@dataclass
class ErrorReport:
    """Errors of a model against a reference (see the module docstring).

    ``data`` is plain JSON: ``{"properties": {name: {"unit": ..., "groups": {group:
    {"count", "rmse", "mae", "max"}}, "all": {...}}}, ...}``; a group in which a
    property never occurs (say, no O atom) has no entry for it.
    """

    ref_prefix: str
    model_prefix: str
    group_by: tuple
    data: dict = field(default_factory=dict)

    @property
    def properties(self) -> list:
        """Property names in table order."""
        return list(self.data["properties"])

    def groups(self, prop: Optional[str] = None) -> list:
        """Group names in natural order (of one property, or of all)."""
        props = [prop] if prop is not None else self.properties
        names = {g for p in props for g in self.data["properties"][p]["groups"]}
        return sorted(names, key=natural_key)

    def stats(self, prop: str, group: Optional[str] = None) -> Optional[dict]:
        """{"count", "rmse", "mae", "max"} of a property in a group (None: overall)."""
        entry = self.data["properties"].get(prop)
        if entry is None:
            return None
        return entry["all"] if group is None else entry["groups"].get(group)

    def rmse(self, prop: str, group: Optional[str] = None) -> float:
        """The RMSE of a property (overall, or in a group), in eV units."""
        stats = self.stats(prop, group)
        if stats is None:
            raise KeyError(f"no {prop!r} errors" + (f" in group {group!r}" if group else ""))
        return stats["rmse"]

    def to_dict(self) -> dict:
        """The report as plain JSON-able data."""
        return json.loads(json.dumps(self.data))

    def to_json(self, indent: int = 2) -> str:
        """``data`` as indented JSON text (what ``wflp errors --json`` prints)."""
        return json.dumps(self.data, indent=indent)

    def table(self, title: Optional[str] = None) -> str:
        """The report as a text table: one block of rows per property, meV units."""
        head = title or f"{self.model_prefix or '(no prefix)'} against " \
                        f"{self.ref_prefix or '(no prefix)'}"
        counts = self.data.get("configurations", {})
        note = f"{counts.get('compared', 0)} configurations"
        if counts.get("model_failed"):
            note += f", {counts['model_failed']} left out (the model failed)"
        rows = [("property", "group", "count", "RMSE", "MAE", "max", "unit")]
        for prop in self.properties:
            entry = self.data["properties"][prop]
            unit = TABLE_UNITS.get(entry["unit"], entry["unit"])
            scale = 1000.0 if unit.startswith("meV") else 1.0
            names = sorted(entry["groups"], key=natural_key)
            show = names + [OVERALL] if names != [OVERALL] else [OVERALL]
            for i, group in enumerate(show):
                stats = entry["all"] if group == OVERALL else entry["groups"][group]
                rows.append((prop if i == 0 else "", group, str(stats["count"]),
                             _num(stats["rmse"] * scale), _num(stats["mae"] * scale),
                             _num(stats["max"] * scale), unit if i == 0 else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        right = {2, 3, 4, 5}
        lines = [f"{head}: {note}"]
        for row in rows:
            cells = [c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _num(value: float) -> str:
    """Three significant figures (no exponent for the usual sizes)."""
    if value == 0:
        return "0"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def error_report(inputs: InputsLike, ref_prefix: str, model_prefix: str,
                 group_by: Union[str, Sequence[str], None] = "config_type",
                 properties: Optional[Sequence[str]] = None, isolated_atoms: Any = None,
                 per_element: bool = True) -> ErrorReport:
    """RMSE, MAE and largest error of *model_prefix* results against *ref_prefix* ones.

    inputs: anything ConfigSet takes (files stream), or {label: inputs} to make the
    label the first part of every group (``{"train": ..., "test": ...}``).
    group_by: info key(s) grouping the configurations (None: overall only).
    properties: subset of ``energy``, ``atomization_energy``, ``forces``, ``stress``,
    ``virial`` (default: every one present). isolated_atoms: single-atom
    configurations with both results (or {element: E0}) for atomization energies.
    per_element: add force errors per element (``forces[H]`` ...).
    """
    for name, prefix in (("ref_prefix", ref_prefix), ("model_prefix", model_prefix)):
        if not isinstance(prefix, str):
            raise ParameterError(f"{name} must be a key prefix such as 'xtb_', got {prefix!r}")
    if ref_prefix == model_prefix:
        raise ParameterError(f"the reference and the model have the same prefix "
                             f"{ref_prefix!r}: nothing to compare")
    sums: dict = {}
    counts: dict = {}
    compared_configs = 0
    last_config = None
    for item in compare(inputs, ref_prefix, model_prefix, group_by, properties,
                        isolated_atoms, counts):
        if counts["configurations"] != last_config:
            last_config = counts["configurations"]
            compared_configs += 1
        diff = item.model - item.reference
        _sums(sums, item.property, item.group).add(diff)
        if item.property == "forces" and per_element:
            symbols = np.asarray(item.elements)
            for symbol in sorted(set(item.elements or ()), key=_atomic_number):
                _sums(sums, f"forces[{symbol}]", item.group).add(diff[symbols == symbol])
    if not sums:
        raise InputError(_nothing_compared(inputs, ref_prefix, model_prefix, counts))
    data: dict = {"ref_prefix": ref_prefix, "model_prefix": model_prefix,
                  "group_by": list(_group_keys(group_by)),
                  "configurations": {"read": counts["configurations"],
                                     "compared": compared_configs,
                                     "model_failed": counts["model_failed"]},
                  "properties": {}}
    for prop in _ordered(sums):
        groups = sums[prop]
        total = _Sums()
        for part in groups.values():
            total.count += part.count
            total.squares += part.squares
            total.absolute += part.absolute
            total.largest = max(total.largest, part.largest)
        data["properties"][prop] = {
            "unit": unit_of(prop),
            "groups": {g: groups[g].stats() for g in sorted(groups, key=natural_key)},
            "all": total.stats()}
    return ErrorReport(ref_prefix, model_prefix, _group_keys(group_by), data)


def _sums(sums: dict, prop: str, group: str) -> _Sums:
    return sums.setdefault(prop, {}).setdefault(group, _Sums())


def _atomic_number(symbol: str) -> int:
    from ase.data import atomic_numbers

    return atomic_numbers.get(symbol, 0)


def _ordered(sums: dict) -> list:
    order = [NAMES[p] for p in PROPERTIES]

    def key(prop: str) -> tuple:
        base, _, element = prop.partition("[")
        return (order.index(base), _atomic_number(element.rstrip("]")) if element else -1)

    return sorted(sums, key=key)


def _nothing_compared(inputs: Any, ref: str, model: str, counts: dict) -> str:
    if not counts.get("configurations"):
        return "no configurations to compare: the inputs are empty"
    if counts.get("model_failed") == counts.get("configurations"):
        return f"the model failed on every configuration ({model}calc_failed)"
    seen = _prefixes_seen(inputs)
    hint = f"; prefixes found: {', '.join(repr(p) for p in seen)}" if seen else ""
    return (f"no configuration has results under both prefixes {ref!r} and {model!r} "
            f"(e.g. {ref}energy and {model}energy){hint}")


def _prefixes_seen(inputs: Any) -> list:
    from ..configset import ConfigSet

    found: set = set()
    for i, atoms in enumerate(_flatten(inputs, ConfigSet)):
        if i >= 20:
            break
        for key in list(atoms.info) + list(atoms.arrays):
            for name in ("free_energy", "energy", "forces", "stress", "virial"):
                if key.endswith(name) and key != name:
                    found.add(key[: -len(name)])
                    break
        if "energy" in _results(atoms):
            found.add("")
    return sorted(found)

