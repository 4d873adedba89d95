"""A plugin whose registration hook raises."""

from wflp import hookimpl


@hookimpl
def wflp_calculators():
    raise RuntimeError("license server unreachable")
