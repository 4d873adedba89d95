"""wflp plugin: the "aims" calculator (FHI-aims through ASE's Aims calculator).

Discovering this plugin imports only this module; ASE's Aims calculator is imported when
the first calculation runs (see wflp_aims.calculator).
"""

from __future__ import annotations

from wflp import CalculatorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [
        CalculatorSpec(
            name="aims",
            summary="FHI-aims (all-electron DFT, numeric atom-centred orbitals), one private "
                    "run directory per calculation",
            factory="wflp_aims.calculator:AimsCalculator",
            properties=("energy", "free_energy", "forces", "stress"),
            picklable=True,
        ),
    ]
