"""Built-in operations: each takes (inputs, outputs, ...) and returns a ConfigSet."""

from .basic import map, select_by_bool, select_by_index
from .calculate import calculate
from .dimers import atoms_and_dimers
from .fit import FittedModel, ModelFiles, OutputModel, fit
from .isolated import isolated_atoms
from .md import md
from .minima_hopping import minima_hopping
from .normal_modes import normal_modes, sample_normal_modes
from .optimize import optimize
from .selection import GlobalSelector, global_selector
from .selectors import (
    select_by_distance,
    select_by_spread,
    select_convex_hull,
    select_cur,
    select_flat_histogram,
    select_fps,
)
from .supercells import supercells

__all__ = ["FittedModel", "GlobalSelector", "ModelFiles", "OutputModel", "atoms_and_dimers",
           "calculate", "fit",
           "global_selector", "isolated_atoms", "map", "md", "minima_hopping",
           "normal_modes",
           "optimize", "sample_normal_modes", "select_by_bool", "select_by_distance",
           "select_by_index", "select_by_spread", "select_convex_hull", "select_cur",
           "select_flat_histogram", "select_fps", "supercells"]
