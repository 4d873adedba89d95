"""wflp plugin: atomic cluster expansion (ACE) potentials with python-ace.

Registers the fitter "ace" (linear ACE with ``pyace.linearacefit`` by default, or
pacemaker's nonlinear fit) and the calculator "ace" (pyace's PyACECalculator plus the
isolated-atom energies, built in each worker). Discovering this plugin imports only this
module; pyace is imported by the fit's own process and when a model is evaluated.
"""

from __future__ import annotations

from wflp import CalculatorSpec, FitterSpec, hookimpl

__version__ = "0.1.0"


@hookimpl
def wflp_fitters() -> list[FitterSpec]:
    return [FitterSpec(name="ace", summary="atomic cluster expansion with python-ace: linear "
                                           "(default) or pacemaker's nonlinear fit",
                       fit="wflp_ace.fit:fit_ace", calculator="ace",
                       model_argument="potential")]


@hookimpl
def wflp_calculators() -> list[CalculatorSpec]:
    return [CalculatorSpec(name="ace", summary="an ACE potential through pyace, with its "
                                               "isolated-atom energies",
                           factory="wflp_ace.calculator:ace_calculator",
                           properties=("energy", "free_energy", "forces", "stress"),
                           picklable=False)]
