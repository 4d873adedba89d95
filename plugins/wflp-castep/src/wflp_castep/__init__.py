"""wflp plugin: the "castep" calculator (CASTEP through ASE's Castep calculator).

Discovering this plugin imports only this module; ASE's Castep calculator is imported
when the first calculation runs (see wflp_castep.calculator).
"""

from __future__ import annotations

from wflp import CalculatorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [
        CalculatorSpec(
            name="castep",
            summary="CASTEP (plane-wave DFT), one private run directory per calculation",
            factory="wflp_castep.calculator:CastepCalculator",
            properties=("energy", "free_energy", "forces", "stress"),
            picklable=True,
        ),
    ]
