"""Registers calculator "Shared_Calc" (normalized "shared_calc"), as does wflpfix_dup_a."""

from wflp import CalculatorSpec, hookimpl


@hookimpl
def wflp_calculators():
    return [CalculatorSpec(name="Shared_Calc", summary="LJ under another name",
                           factory="ase.calculators.lj:LennardJones")]
