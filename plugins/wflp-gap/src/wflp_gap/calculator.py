"""The factory behind the "gap" calculator; quippy is imported only here, when called."""

from __future__ import annotations

import os
from typing import Any, Union

from wflp.errors import ParameterError, PluginError


def gap_calculator(param_filename: Union[str, os.PathLike], **kwargs: Any) -> Any:
    """A quippy Potential evaluating the GAP in *param_filename* (``gap.xml``; its
    ``gap.xml.sparseX.*`` files must sit beside it). Other keyword arguments go to
    ``quippy.potential.Potential``. A Potential cannot be pickled: give the calculator
    as ``("gap", [], {"param_filename": ...})`` (or ``model.calculator``) so that each
    worker process builds its own."""
    path = os.fspath(param_filename)
    if not os.path.isfile(path):
        raise ParameterError(f"gap: no GAP model file {path!r}")
    try:
        from quippy.potential import Potential
    except ImportError as err:
        raise PluginError(f"the gap calculator needs quippy, which cannot be imported ({err}); "
                          "install it with `pip install quippy-ase`") from err
    return Potential(param_filename=path, **kwargs)
