"""wflp: parallel, restartable, provenance-exact atomistic workflows on ASE."""

from __future__ import annotations

import logging

from .autopara import AutoparaInfo, Operation, operation, shutdown_pool
from .configset import ConfigSet, OutputSpec
from .errors import WflpError
from .plugins.hookspecs import hookimpl
from .plugins.types import CalculatorSpec, ExecutorSpec, FitterSpec, GeneratorSpec, SelectorSpec

__version__ = "0.1.0"

logging.getLogger("wflp").addHandler(logging.NullHandler())

__all__ = ["AutoparaInfo", "CalculatorSpec", "ConfigSet", "ExecutorSpec", "FitterSpec",
           "GeneratorSpec", "Operation", "OutputSpec", "SelectorSpec", "WflpError", "hookimpl",
           "operation", "shutdown_pool", "__version__"]
