"""wflp's plugin system: look up calculators, operations and executors by name.

Everything that can be named is registered through the hooks in
``wflp.plugins.hookspecs``, by wflp itself (``wflp.plugins.builtin``) and by
installed plugins (entry-point group ``wflp``); the kinds of extension are listed
once, in ``wflp.plugins.kinds``. The functions here use one process-wide plugin
manager, created on first use. See docs/plugins.md for writing a plugin.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Optional

from ..errors import PluginError, UnknownNameError
from .hookspecs import hookimpl, hookspec
from .kinds import KINDS, TABLE, Kind, find_kind
from .manager import (
    DISABLED,
    ENTRY_POINT_GROUP,
    ENV_ALLOW,
    ENV_STRICT,
    FAILED,
    OK,
    PluginRecord,
    WflpPluginManager,
    iter_entry_points,
    normalize_kind,
)
from .types import (
    CalculatorSpec,
    DescriptorSpec,
    ExecutorSpec,
    FitterSpec,
    GeneratorSpec,
    SchedulerSpec,
    SelectorSpec,
    load_target,
    normalize_name,
)

_manager: Optional[WflpPluginManager] = None
_lock = threading.Lock()


def get_plugin_manager() -> WflpPluginManager:
    """The process-wide plugin manager, discovering installed plugins on first use."""
    global _manager
    pm = _manager
    if pm is not None:
        return pm
    with _lock:
        if _manager is None:
            # kept only once loaded: in strict mode a failing plugin raises every time
            _manager = WflpPluginManager().load()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager, so the next lookup discovers plugins afresh
    (after installing a plugin, or changing $WFLP_LOAD_PLUGINS, e.g. in tests)."""
    global _manager
    with _lock:
        _manager = None


@contextlib.contextmanager
def use_plugin_manager(pm: WflpPluginManager) -> Iterator[WflpPluginManager]:
    """Make *pm* the process-wide manager inside the ``with`` block, then restore the
    previous one. Worker processes forked before the block keep the old one."""
    global _manager
    with _lock:
        previous, _manager = _manager, pm.load()
    try:
        yield pm
    finally:
        with _lock:
            _manager = previous


def get_spec(kind: str, name: str) -> Any:
    """The spec registered as *name* for *kind* ("calculator", "executors", ...);
    UnknownNameError lists what is available."""
    return get_plugin_manager().get_spec(kind, name)


def list_specs(kind: str) -> list:
    """Every registered spec of *kind*, sorted by name."""
    return get_plugin_manager().list_specs(kind)


def get_calculator(name: str) -> CalculatorSpec:
    """The CalculatorSpec registered as *name*; ``.load()`` gives its factory."""
    return get_spec("calculators", name)


def get_generator(name: str) -> GeneratorSpec:
    """The GeneratorSpec registered as *name*; ``.load()`` gives its operation."""
    return get_spec("generators", name)


def get_selector(name: str) -> SelectorSpec:
    """The SelectorSpec registered as *name*; ``.load()`` gives its operation."""
    return get_spec("selectors", name)


def get_descriptor(name: str) -> DescriptorSpec:
    """The DescriptorSpec registered as *name*; ``.load()`` gives its operation, and
    ``.key`` the ``Atoms.info`` key it writes (what ``select_cur(key=...)`` reads)."""
    return get_spec("descriptors", name)


def get_fitter(name: str) -> FitterSpec:
    """The FitterSpec registered as *name*; ``.load()`` gives its fit function."""
    return get_spec("fitters", name)


def get_scheduler(name: str) -> SchedulerSpec:
    """The SchedulerSpec registered as *name*; ``.load()()`` gives the dialect."""
    return get_spec("schedulers", name)


def get_executor(name: str, **options: Any) -> Any:
    """A new instance of the executor registered as *name*, built with *options*."""
    return get_plugin_manager().get_executor(name, **options)


def plugin_report() -> list[PluginRecord]:
    """One record per plugin: distribution, version, entry point, status
    ("ok", "failed", "disabled"), error, and {kind: [names]} it registered."""
    return get_plugin_manager().report()


__all__ = [
    "DISABLED", "ENTRY_POINT_GROUP", "ENV_ALLOW", "ENV_STRICT", "FAILED", "KINDS", "OK",
    "TABLE", "CalculatorSpec", "DescriptorSpec", "ExecutorSpec", "FitterSpec",
    "GeneratorSpec", "Kind", "PluginError", "PluginRecord", "SchedulerSpec", "SelectorSpec",
    "UnknownNameError", "WflpPluginManager", "find_kind", "get_calculator", "get_descriptor",
    "get_executor", "get_fitter", "get_generator", "get_plugin_manager", "get_scheduler",
    "get_selector", "get_spec", "hookimpl", "hookspec", "iter_entry_points", "list_specs",
    "load_target", "normalize_kind", "normalize_name", "plugin_report",
    "reset_plugin_manager", "use_plugin_manager",
]
