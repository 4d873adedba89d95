"""A plugin that imports fine but whose registration hook calls sys.exit()."""

import sys

from wflp import hookimpl


@hookimpl
def wflp_calculators():
    sys.exit("no licence for this calculator")
