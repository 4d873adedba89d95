"""wflp plugin: the "vasp" calculator (VASP through ASE's Vasp calculator).

Discovering this plugin imports only this module; ASE's Vasp calculator is imported when
the first calculation runs (see wflp_vasp.calculator).
"""

from __future__ import annotations

from wflp import CalculatorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [
        CalculatorSpec(
            name="vasp",
            summary="VASP (plane-wave PAW DFT), one private run directory per calculation",
            factory="wflp_vasp.calculator:VaspCalculator",
            properties=("energy", "free_energy", "forces", "stress"),
            picklable=True,
        ),
    ]
