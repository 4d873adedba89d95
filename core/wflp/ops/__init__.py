"""Built-in operations: each takes (inputs, outputs, ...) and returns a ConfigSet."""

from .basic import map, select_by_bool, select_by_index
from .calculate import calculate
from .md import md
from .optimize import optimize

__all__ = ["calculate", "map", "md", "optimize", "select_by_bool", "select_by_index"]
