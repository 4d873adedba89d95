"""A plugin with a misspelled hook name (singular instead of wflp_calculators)."""

from wflp import CalculatorSpec, hookimpl


@hookimpl
def wflp_calculator():
    return [CalculatorSpec(name="fix_never", summary="never registered",
                           factory="ase.calculators.emt:EMT")]
