"""calculate: evaluate configurations with any ASE calculator, storing results under a prefix."""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
from ase import Atoms

from ..autopara import operation
from ..calculators import calculator_prefix, construct_calculator

log = logging.getLogger("wflp")

DEFAULT_PROPERTIES = ("energy", "free_energy", "forces", "stress")


@operation("calculate", version="1", per="chunk")
def calculate(configs: list, calculator: Any, properties: Optional[list] = None,
              prefix: Optional[str] = None, raise_errors: bool = False) -> list:
    """Evaluate each configuration with an ASE calculator; results go to info/arrays.

    calculator: an ASE calculator, or (constructor, args, kwargs) for one that
    cannot be pickled (built once per worker process); the constructor may be the
    name of a registered calculator (e.g. "xtb").
    properties: which to store (default: energy, free_energy, forces, stress,
    whichever the calculator implements; stress only for periodic cells).
    prefix: key prefix (default: calculator class name + "_").
    raise_errors: stop on the first failure instead of marking the configuration
    with <prefix>calc_failed=True and <prefix>calc_error.
    """
    calc = construct_calculator(calculator)
    prefix = calculator_prefix(calculator, calc) if prefix is None else prefix
    implemented = set(getattr(calc, "implemented_properties", DEFAULT_PROPERTIES))
    wanted = list(properties) if properties is not None else [
        p for p in DEFAULT_PROPERTIES if p in implemented]
    out = []
    for atoms in configs:
        if not isinstance(atoms, Atoms):
            raise TypeError(f"calculate takes Atoms, got {type(atoms).__name__}")
        _evaluate(atoms, calc, wanted, prefix, raise_errors)
        out.append(atoms)
    return out


def _evaluate(atoms: Atoms, calc, wanted: list, prefix: str, raise_errors: bool) -> None:
    periodic = bool(np.all(atoms.pbc))
    names = [p for p in wanted if p != "stress" or periodic]
    # forget the previous configuration: results must not depend on what this calculator
    # (reused across items and runs in a process) evaluated before, or serial and parallel
    # runs would differ (EMT's neighbour list, for one, keeps state)
    if hasattr(calc, "reset"):
        calc.reset()
    atoms.calc = calc
    try:
        values = {}
        for name in names:
            values[name] = calc.get_property(name, atoms)
    except Exception as err:
        if raise_errors:
            raise
        log.warning("calculate: %s failed on a configuration: %s: %s",
                    type(calc).__name__, type(err).__name__, err)
        atoms.info[f"{prefix}calc_failed"] = True
        atoms.info[f"{prefix}calc_error"] = f"{type(err).__name__}: {err}"
        return
    finally:
        atoms.calc = None
    store_results(atoms, values, prefix)


def store_results(atoms: Atoms, values: dict, prefix: str) -> None:
    """Put calculator results on atoms under prefix: per-atom ones in arrays, others in info.

    Shared with the md and optimize operations, so all store results alike.
    """
    natoms = len(atoms)
    for name, value in values.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == natoms \
                and name != "stress":
            atoms.arrays[prefix + name] = np.array(value)
        elif isinstance(value, np.ndarray):
            atoms.info[prefix + name] = np.array(value)
        else:
            atoms.info[prefix + name] = value
