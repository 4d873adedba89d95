"""The composition root: what the lower layers look up by name, registered from above.

The engine names no executor, plugin or calculator module (tests/test_layering.py checks
it); it exposes registration points instead, and this module, imported by ``wflp``
itself before any other part of it (so in every process that uses wflp: the driver,
pool workers, queued jobs), fills them:

- the built-in executors ("serial", "pool", "queue", from :mod:`wflp.exec`) and the
  plugin registry as the lookup for every other executor name
  (:mod:`wflp.engine.executor`);
- the ``calculator`` parameter convention: checked and described by
  :mod:`wflp.calculators` in every operation that has one (:mod:`wflp.engine.operation`).

Everything is imported on first use, so ``import wflp`` stays light.
"""

from __future__ import annotations

from typing import Any

from .engine.executor import Executor, register_executor, set_executor_lookup
from .engine.operation import ParameterConvention, register_parameter_convention
from .exec import BUILTIN_EXECUTORS


def plugin_executor(name: str, **options: Any) -> Executor:
    """The executor a plugin registers as *name*, built with *options*."""
    from .plugins import get_executor

    executor: Executor = get_executor(name, **options)
    return executor


def describe_calculator(calculator: Any, describer: Any) -> Any:
    """How records describe a ``calculator`` parameter (wflp.calculators)."""
    from .calculators import describe_calculator as describe

    return describe(calculator, describer)


def check_calculator(calculator: Any, where: str) -> None:
    """A ``calculator`` parameter checked before anything runs (wflp.calculators)."""
    from .calculators import check_calculator as check

    check(calculator, where)


def connect() -> None:
    """Fill the engine's registration points (idempotent)."""
    for name, factory in BUILTIN_EXECUTORS.items():
        register_executor(name, factory)
    set_executor_lookup(plugin_executor)
    register_parameter_convention(
        "calculator", ParameterConvention(describe=describe_calculator, check=check_calculator))


connect()
