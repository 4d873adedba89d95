"""The executor contract lives with the engine (:mod:`wflp.engine.executor`); this module
keeps its names where executors have always imported them from."""

from __future__ import annotations

from ..engine.executor import CAPABILITIES, Executor, capability

__all__ = ["CAPABILITIES", "Executor", "capability"]
