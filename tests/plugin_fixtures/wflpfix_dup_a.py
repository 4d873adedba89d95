"""Registers calculator "shared-calc" (normalized "shared_calc"), as does wflpfix_dup_b."""

from wflp import CalculatorSpec, hookimpl


@hookimpl
def wflp_calculators():
    return [CalculatorSpec(name="shared-calc", summary="EMT under another name",
                           factory="ase.calculators.emt:EMT")]
