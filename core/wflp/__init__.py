"""wflp: parallel, restartable, provenance-exact atomistic workflows on ASE.

The public names below are imported on first use, so that ``import wflp`` (and
``wflp list-plugins``) does not pay for numpy and ASE.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

__version__ = "0.1.0"

logging.getLogger("wflp").addHandler(logging.NullHandler())

_LAZY = {
    "AutoparaInfo": "wflp.engine.info",
    "Operation": "wflp.engine.operation",
    "operation": "wflp.engine.operation",
    "ConfigSet": "wflp.configset",
    "OutputSpec": "wflp.configset",
    "OutputModel": "wflp.ops.fit",
    "WflpError": "wflp.errors",
    "hookimpl": "wflp.plugins.hookspecs",
    "CalculatorSpec": "wflp.plugins.types",
    "DescriptorSpec": "wflp.plugins.types",
    "ExecutorSpec": "wflp.plugins.types",
    "FitterSpec": "wflp.plugins.types",
    "GeneratorSpec": "wflp.plugins.types",
    "SchedulerSpec": "wflp.plugins.types",
    "SelectorSpec": "wflp.plugins.types",
    "RemoteInfo": "wflp.remote",
    "shutdown_pool": "wflp.exec.local",
}

__all__ = sorted(_LAZY) + ["__version__"]


# the composition root: fills the engine's registration points (executors by name, the
# calculator parameter), importing nothing heavy
from . import _wiring  # noqa: E402,F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wflp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
