"""wflp plugin: the "xtb" calculator (GFN2-xTB or GFN1-xTB through tblite).

Discovering this plugin imports only this module; tblite is imported when the
first calculator is built (see wflp_xtb.calculator).
"""

from __future__ import annotations

from wflp import CalculatorSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [
        CalculatorSpec(
            name="xtb",
            summary="GFN2-xTB (default) or GFN1-xTB tight binding through tblite; "
                    "method='GFN1-xTB' to choose",
            factory="wflp_xtb.calculator:xtb_calculator",
            properties=("energy", "free_energy", "forces", "stress"),
            picklable=False,  # a TBLite object that has computed cannot be pickled
        ),
    ]
