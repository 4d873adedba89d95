"""calculate: evaluate configurations with any ASE calculator, storing results under a prefix."""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
from ase import Atoms

from ..calculators import (
    calculate_properties,
    calculator_prefix,
    check_prefix,
    check_properties,
    clear_results,
    construct_calculator,
    extra_results,
    reset_interval,
)
from ..engine import item_time_limit, operation
from ..errors import ParameterError

log = logging.getLogger("wflp")

DEFAULT_PROPERTIES = ("energy", "free_energy", "forces", "stress")


def _check(params: dict, seed: Optional[int]) -> None:
    check_properties(params["properties"], params["calculator"], "calculate")
    check_prefix(params["prefix"], "calculate")
    if not isinstance(params["raise_errors"], bool):
        raise ParameterError(f"calculate: raise_errors must be True or False, got "
                             f"{params['raise_errors']!r}")


def _block(params: dict) -> int:
    return reset_interval(params["calculator"]) or 1


@operation("calculate", version="2", per="chunk", check=_check, block=_block)
def calculate(configs: list, calculator: Any, properties: Optional[list] = None,
              prefix: Optional[str] = None, raise_errors: bool = False,
              index: Optional[list] = None, block: int = 1) -> list:
    """Evaluate each configuration with an ASE calculator; results go to info/arrays.

    calculator: an ASE calculator, or (constructor, args, kwargs) for one that
    cannot be pickled (built once per worker process); the constructor may be the
    name of a registered calculator (e.g. "xtb"). A committee,
    ("committee", [], {"members": [calculator, ...]}), stores the members' mean under
    the prefix and their spread beside it (<prefix>energy_std, <prefix>forces_std per
    atom, <prefix>max_force_std ...; see wflp.calculators.committee).
    properties: which to store (default: energy, free_energy, forces, stress,
    whichever the calculator implements; stress only for periodic cells). All of
    them come from one calculation per configuration.
    prefix: key prefix (default: the registered name, or the class name, + "_"); ASCII
    letters, digits, '_', '-' and '.' only, or empty (ASE's own names: energy, forces).
    raise_errors: stop on the first failure instead of marking the configuration
    with <prefix>calc_failed=True and <prefix>calc_error.

    What a configuration carries under the prefix is this run's outcome only: every key
    under it (see wflp.calculators.clear_results: with a non-empty prefix, every info
    and arrays key that starts with it, except ASE's own arrays) is removed before the
    results, or the failure, are stored.

    The calculator is reset as often as it declares (see
    wflp.calculators.reset_interval): before each configuration whose index is a
    multiple of *block* (chunks start only there), so that results never depend on
    which configurations a process evaluated before. A failure leaves no trace on the
    others: a configuration whose positions or cell are not finite fails without
    reaching the calculator (EMT with a kept neighbour list gives a number for it), and
    after any failure the calculator is reset and given again the configurations its
    block had before, so that the next one finds the state it would have found had the
    failing one not been there. (A failure could leave EMT's neighbour list half-built,
    and every configuration after it in its block of 32 failed too.)
    """
    calc = construct_calculator(calculator)
    prefix = calculator_prefix(calculator, calc) if prefix is None else prefix
    implemented = set(getattr(calc, "implemented_properties", DEFAULT_PROPERTIES))
    wanted = list(properties) if properties is not None else [
        p for p in DEFAULT_PROPERTIES if p in implemented]
    every = reset_interval(calculator) and block  # 0: never (the interval the caller used)
    indices = index if index is not None else range(len(configs))
    reset = getattr(calc, "reset", None)
    start_item = getattr(calc, "__wflp_item__", None)  # file-based: one run directory per item
    out = []
    evaluated: list = []  # the configurations since the last reset that did not fail
    failed = False        # one did fail since then
    for pos, (atoms, i) in enumerate(zip(configs, indices)):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"calculate takes Atoms, got {type(atoms).__name__}")
        if every and (pos == 0 or i % every == 0):
            if callable(reset):
                reset()
            evaluated, failed = [], False
        elif failed:
            _restore(calc, reset, evaluated, wanted)
            failed = False
        if callable(start_item):
            start_item(i)
        with item_time_limit(i):
            ok = _evaluate(atoms, calc, wanted, prefix, raise_errors)
        if not ok:
            failed = True
        elif every > 1:
            evaluated.append(atoms)
        out.append(atoms)
    return out


def _names(atoms: Atoms, wanted: list) -> list:
    periodic = bool(np.all(atoms.pbc))
    return [p for p in wanted if p != "stress" or periodic]


def _restore(calc: Any, reset: Any, evaluated: list, wanted: list) -> None:
    """After a failure: reset calc, then evaluate again (results unused) what it evaluated
    since its last reset, which brings back the state those left (EMT's neighbour list).
    A calculator that is never reset (interval 0) declares that its state does not
    matter, so a reset is enough; one reset before every configuration has nothing to
    give again."""
    if not callable(reset):
        return
    reset()
    for atoms in evaluated:
        calculate_properties(calc, atoms.copy(), _names(atoms, wanted))


def _evaluate(atoms: Atoms, calc: Any, wanted: list, prefix: str, raise_errors: bool) -> bool:
    """Calculate atoms and store the outcome under prefix; False if it failed."""
    names = _names(atoms, wanted)
    atoms.calc = calc
    try:
        _check_finite(atoms)
        values = calculate_properties(calc, atoms, names)
        values.update(extra_results(calc, names))
        failure = None
    except Exception as err:
        if raise_errors:
            raise
        log.warning("calculate: %s failed on a configuration: %s: %s",
                    type(calc).__name__, type(err).__name__, err)
        values, failure = {}, _one_line(f"{type(err).__name__}: {err}")
    finally:
        atoms.calc = None
    clear_results(atoms, prefix)
    _store_rundir(atoms, calc, prefix)
    if failure is not None:
        atoms.info[f"{prefix}calc_failed"] = True
        atoms.info[f"{prefix}calc_error"] = failure
        return False
    store_results(atoms, values, prefix)
    return True


def _check_finite(atoms: Atoms) -> None:
    if not np.all(np.isfinite(atoms.positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(atoms.positions), axis=1))
        raise ValueError(f"positions are not finite (NaN or inf) for atom"
                         f"{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad[:5]))}"
                         f"{' ...' if len(bad) > 5 else ''}")
    if not np.all(np.isfinite(atoms.cell.array)):
        raise ValueError("the cell is not finite (NaN or inf)")


def _store_rundir(atoms: Atoms, calc: Any, prefix: str) -> None:
    """Where a file-based calculator kept this configuration's files (wflp.calculators.fileio)."""
    rundir = getattr(calc, "wflp_rundir", None)
    if isinstance(rundir, str) and rundir:
        atoms.info[f"{prefix}rundir"] = rundir


def _one_line(text: str) -> str:
    return " ".join(text.split())  # extended XYZ cannot hold line breaks


def store_results(atoms: Atoms, values: dict, prefix: str) -> None:
    """Put calculator results on atoms under prefix: per-atom ones in arrays, others in info.

    Shared with the md and optimize operations, so all store results alike.
    """
    natoms = len(atoms)
    for name, value in values.items():
        if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == natoms \
                and name not in ("stress", "stress_std"):
            atoms.arrays[prefix + name] = np.array(value)
        elif isinstance(value, np.ndarray):
            atoms.info[prefix + name] = np.array(value)
        else:
            atoms.info[prefix + name] = value
