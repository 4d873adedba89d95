"""wflp plugin: MACE models, trained with mace-torch's mace_run_train on the CPU.

Registers the fitter "mace" and the calculator "mace" (mace-torch's MACECalculator, built
in each worker). Discovering this plugin imports only this module; torch and mace are
imported when a model is evaluated, and training runs as its own process.
"""

from __future__ import annotations

from wflp import CalculatorSpec, FitterSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_fitters() -> list[FitterSpec]:
    return [FitterSpec(name="mace", summary="MACE equivariant message passing with "
                                            "mace_run_train (mace-torch), on the CPU",
                       fit="wflp_mace.fit:fit_mace", calculator="mace",
                       model_argument="model_paths")]


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [CalculatorSpec(name="mace", summary="a MACE model through mace-torch's "
                                                "MACECalculator",
                           factory="wflp_mace.calculator:mace_calculator",
                           properties=("energy", "free_energy", "forces", "stress"),
                           picklable=False)]
