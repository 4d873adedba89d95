"""A working plugin: ASE's Morse potential as calculator "fix_morse"."""

from wflp import CalculatorSpec, hookimpl


@hookimpl
def wflp_calculators():
    return [CalculatorSpec(name="fix_morse", summary="Morse pair potential (ASE)",
                           factory="ase.calculators.morse:MorsePotential", picklable=True)]
