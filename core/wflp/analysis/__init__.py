"""Analysis of results: how far a model is from its reference (numpy only, streaming).

``error_report(inputs, "xtb_", "gap_")`` gives RMSE, MAE and largest errors of energies
per atom, atomization energies, forces (per component and per element), stress and
virial, grouped by info keys; ``wflp errors REF MODEL FILE...`` prints the same table.
``compare`` yields the paired values one configuration at a time, for plots.

Names are imported on first use, so that the command line (``wflp.analysis.cli``)
stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OVERALL", "PROPERTIES", "Comparison", "ErrorReport", "compare", "error_report",
           "isolated_energies", "natural_key", "reference_value", "unit_of"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
