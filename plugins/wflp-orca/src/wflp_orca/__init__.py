"""wflp plugin: the "orca" calculator (ORCA through ASE's ORCA calculator).

Discovering this plugin imports only this module; ASE's ORCA calculator is imported when
the first calculation runs (see wflp_orca.calculator).
"""

from __future__ import annotations

from wflp import CalculatorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [
        CalculatorSpec(
            name="orca",
            summary="ORCA (molecular quantum chemistry), one private run directory per "
                    "calculation",
            factory="wflp_orca.calculator:OrcaCalculator",
            properties=("energy", "free_energy", "forces"),
            picklable=True,
        ),
    ]
