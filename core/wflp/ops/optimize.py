"""optimize: relax geometries (optionally the cell too) with ASE's optimizers.

Each input yields its final configuration, or a sub-selection of its
trajectory. Every output frame carries the calculator's results at its geometry
(as calculate stores them) and info["optimize_step"], info["optimize_converged"]
and info["optimize_n_steps"]. Running out of steps is not an error: the result
is returned with optimize_converged=False, so that one hard case does not stop
a large batch.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
from ase import Atoms, units

from ..calculators import check_prefix, clear_results
from ..engine import operation
from ..errors import ParameterError
from .md import (
    check_count,
    check_positive,
    prepare_calculator,
    store_calculated,
)

OPTIMIZERS = {"bfgs": "BFGS", "lbfgs": "LBFGS", "fire": "FIRE"}

KeepTrajectory = Union[bool, str, int]


def _check_optimize(params: dict, seed: Optional[int] = None) -> tuple[str, Optional[int]]:
    """Validate optimize's parameters; return (optimizer class name, keep interval or None)."""
    check_positive("optimize", "fmax", params["fmax"])
    check_count("optimize", "steps", params["steps"], 0)
    name = params["optimizer"]
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ParameterError(
            f"optimize: unknown optimizer {name!r}; choose one of "
            f"{', '.join(OPTIMIZERS.values())}")
    if not isinstance(params["variable_cell"], bool):
        raise ParameterError(
            f"optimize: variable_cell must be True or False, got {params['variable_cell']!r}")
    pressure = params["pressure"]
    if isinstance(pressure, bool) or not isinstance(pressure, (int, float, np.number)):
        raise ParameterError(f"optimize: pressure (GPa) must be a number, got {pressure!r}")
    if pressure != 0 and not params["variable_cell"]:
        raise ParameterError(
            "optimize: pressure only acts on the cell; pass variable_cell=True with it, or "
            "leave pressure at 0")
    keep = params["keep_trajectory"]
    if keep is True or keep == "all":
        every: Optional[int] = 1
    elif keep is False or keep is None or keep == "last":
        every = None
    elif isinstance(keep, (int, np.integer)) and keep >= 1:
        every = int(keep)
    else:
        raise ParameterError(
            f"optimize: keep_trajectory must be False or 'last' (final configuration only), "
            f"'all' (every step), or a whole number N >= 1 (every Nth step plus the final "
            f"one); got {keep!r}")
    check_prefix(params["results_prefix"], "optimize", "results_prefix")
    extra = params["optimizer_kwargs"]
    if extra is not None and not isinstance(extra, dict):
        raise ParameterError(
            f"optimize: optimizer_kwargs must be a dict (e.g. {{'maxstep': 0.1}}), got {extra!r}")
    return OPTIMIZERS[name.lower()], every


@operation("optimize", version="1", check=_check_optimize)
def optimize(atoms: Atoms, calculator: Any, fmax: float = 0.05, steps: int = 1000,
             optimizer: str = "BFGS", variable_cell: bool = False, pressure: float = 0.0,
             keep_trajectory: KeepTrajectory = False, results_prefix: Optional[str] = None,
             optimizer_kwargs: Optional[dict] = None) -> list[Atoms]:
    """Relax each configuration until the largest force is below fmax (eV/Å), or steps run out.

    calculator: an ASE calculator, a (constructor, args, kwargs) tuple or a registered name.
    optimizer: "BFGS", "LBFGS" or "FIRE" (ase.optimize), built with optimizer_kwargs.
    variable_cell: relax the cell too (ase.filters.FrechetCellFilter); fmax then also
        bounds the cell gradient. pressure: external pressure in GPa for the cell.
    keep_trajectory: False or "last": only the final configuration; "all": every step;
        N: every Nth step (0, N, 2N ...) plus the final one.
    results_prefix: prefix of the stored calculator results (default: as calculate);
        what the input has under it is not carried into the frames.
    """
    opt_name, every = _check_optimize(dict(
        fmax=fmax, steps=steps, optimizer=optimizer, variable_cell=variable_cell,
        pressure=pressure, keep_trajectory=keep_trajectory, results_prefix=results_prefix,
        optimizer_kwargs=optimizer_kwargs))
    if not isinstance(atoms, Atoms):
        raise TypeError(f"optimize takes Atoms, got {type(atoms).__name__}")
    import ase.optimize

    calc, prefix, wanted = prepare_calculator(calculator, results_prefix)

    work = atoms.copy()
    clear_results(work, prefix)  # the frames carry this run's results only
    work.calc = calc
    target: Any = work
    if variable_cell:
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(work, scalar_pressure=float(pressure) * units.GPa)
    opt = getattr(ase.optimize, opt_name)(target, logfile=None, **(optimizer_kwargs or {}))

    def snapshot() -> Atoms:
        frame = work.copy()
        frame.info["optimize_step"] = opt.nsteps
        store_calculated(frame, calc, wanted, prefix)
        return frame

    kept: list[Atoms] = []
    converged = False
    try:
        for step_converged in opt.irun(fmax=float(fmax), steps=int(steps)):
            converged = bool(step_converged)
            if every is not None and opt.nsteps % every == 0:
                kept.append(snapshot())
        if not kept or kept[-1].info["optimize_step"] != opt.nsteps:
            kept.append(snapshot())
    finally:
        work.calc = None
    for frame in kept:
        frame.info["optimize_converged"] = bool(converged)
        frame.info["optimize_n_steps"] = int(opt.nsteps)
    return kept


__all__ = ["optimize"]
