"""The factory behind the "xtb" calculator; tblite is imported only here, when called."""

from __future__ import annotations

from typing import Any

from wflp.errors import ParameterError, PluginError

METHODS = ("GFN2-xTB", "GFN1-xTB")
DEFAULT_METHOD = "GFN2-xTB"


def xtb_calculator(method: str = DEFAULT_METHOD, **kwargs: Any) -> Any:
    """A tblite.ase.TBLite calculator for *method* ("GFN2-xTB" or "GFN1-xTB", any case).

    Other keyword arguments (charge, multiplicity, accuracy, electronic_temperature,
    max_iterations, ...) go to TBLite unchanged; verbosity defaults to 0 (silent).
    """
    by_lower = {m.lower(): m for m in METHODS}
    chosen = by_lower.get(method.lower()) if isinstance(method, str) else None
    if chosen is None:
        raise ParameterError(
            f"xtb: unknown method {method!r}; use one of {', '.join(METHODS)}"
        )
    try:
        from tblite.ase import TBLite
    except ImportError as err:
        raise PluginError(
            f"the xtb calculator needs tblite, which cannot be imported ({err}); install it "
            "with `pip install tblite` (or `conda install -c conda-forge tblite-python`)"
        ) from err
    kwargs.setdefault("verbosity", 0)
    return TBLite(method=chosen, **kwargs)
