"""wflp plugin: the "espresso" calculator (Quantum ESPRESSO pw.x through ASE).

Discovering this plugin imports only this module; ASE's Espresso calculator is imported
when the first calculation runs (see wflp_espresso.calculator).
"""

from __future__ import annotations

from wflp import CalculatorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [
        CalculatorSpec(
            name="espresso",
            summary="Quantum ESPRESSO pw.x (plane-wave DFT), one private run directory per "
                    "calculation",
            factory="wflp_espresso.calculator:EspressoCalculator",
            properties=("energy", "free_energy", "forces", "stress"),
            picklable=True,
        ),
    ]
