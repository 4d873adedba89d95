"""The factory behind the "ace" calculator; pyace is imported only here, when called."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional, Union

from ase.calculators.calculator import Calculator, all_changes
from wflp.errors import ParameterError, PluginError


class ACEWithE0(Calculator):
    """pyace's PyACECalculator plus the isolated-atom energies the model was fitted
    without (forces and stress are unchanged by them)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential: Union[str, os.PathLike], e0: Optional[Mapping] = None,
                 **kwargs: Any):
        super().__init__()
        try:
            from pyace import PyACECalculator
        except ImportError as err:
            raise PluginError(f"the ace calculator needs pyace, which cannot be imported "
                              f"({err}); install it with `pip install python-ace`") from err
        path = os.fspath(potential)
        if not os.path.isfile(path):
            raise ParameterError(f"ace: no ACE potential file {path!r}")
        self.ace = PyACECalculator(path, **kwargs)
        self.e0 = {str(k): float(v) for k, v in (e0 or {}).items()}

    def calculate(self, atoms: Any = None, properties: Any = ("energy",),
                  system_changes: Any = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        wanted = [p for p in properties if p != "free_energy"] or ["energy"]
        if "stress" in wanted and self.atoms.cell.rank < 3:
            wanted.remove("stress")
        self.ace.calculate(self.atoms, wanted, system_changes)
        shift = 0.0
        for symbol in self.atoms.get_chemical_symbols():
            if self.e0 and symbol not in self.e0:
                raise ParameterError(f"ace: the model has no E0 for {symbol}")
            shift += self.e0.get(symbol, 0.0)
        results = dict(self.ace.results)
        results["energy"] = float(results["energy"]) + shift
        results["free_energy"] = results["energy"]
        self.results = {k: v for k, v in results.items() if k in
                        ("energy", "free_energy", "forces", "stress")}


def ace_calculator(potential: Union[str, os.PathLike], e0: Optional[Mapping] = None,
                   **kwargs: Any) -> ACEWithE0:
    """An ACE potential (a B-basis ``.yaml`` or ``.yace`` file) with its E0s added to the
    energy. Other keyword arguments go to ``pyace.PyACECalculator``."""
    return ACEWithE0(potential, e0=e0, **kwargs)
