"""wflp plugin: GAP models, fitted with gap_fit and evaluated with quippy.

Registers the fitter "gap" (``wflp.ops.fit(..., fitter="gap", params={...})``) and the
calculator "gap" (a quippy Potential, built in each worker process). Discovering this
plugin imports only this module; quippy is imported when a model is evaluated, and
gap_fit runs as its own process.
"""

from __future__ import annotations

from typing import Any

from wflp import CalculatorSpec, FitterSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_fitters() -> list[FitterSpec]:
    return [FitterSpec(name="gap", summary="Gaussian approximation potentials with gap_fit "
                                           "(quippy-ase); descriptors as dicts",
                       fit="wflp_gap.fit:fit_gap", calculator="gap",
                       model_argument="param_filename")]


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [CalculatorSpec(name="gap", summary="a GAP model (gap.xml) through quippy's "
                                               "Potential",
                           factory="wflp_gap.calculator:gap_calculator",
                           properties=("energy", "free_energy", "forces", "stress"),
                           picklable=False)]


@hookimpl
def wflp_panels(output: Any, record: Any) -> list:
    """The model panel of a GAP folder in ``wflp browse``: descriptors, sparse points,
    isolated-atom energies, training files (read from gap.xml; no quippy needed)."""
    from pathlib import Path

    from .panel import model_panels

    folder = Path(output)
    return model_panels(folder, record) if folder.is_dir() else []
