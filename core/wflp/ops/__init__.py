"""Built-in operations: each takes (inputs, outputs, ...) and returns a ConfigSet."""

from .basic import map, select_by_bool, select_by_index
from .calculate import calculate

__all__ = ["calculate", "map", "select_by_bool", "select_by_index"]
