"""What registration hooks return: small frozen dataclasses, one per kind of extension.

A spec names its target either directly (a callable or Operation) or as an import
path "package.module:attribute", which is imported only when the thing is used,
so that discovering plugins never imports heavy packages.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from typing import Any, Union

from ..errors import PluginError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

Target = Union[str, Callable[..., Any]]


def normalize_name(name: str) -> str:
    """Names are case-insensitive, with '-' and '.' read as '_': "GAP-fit" -> "gap_fit"."""
    if not isinstance(name, str):
        raise PluginError(f"a registered name must be a string, got {name!r}")
    norm = re.sub(r"[-.\s]+", "_", name.strip()).lower()
    if not _NAME_RE.match(norm):
        raise PluginError(
            f"invalid registered name {name!r}: use letters, digits and '_' (starting with a "
            "letter)"
        )
    return norm


def _check_target(kind: str, name: str, field: str, target: Any) -> None:
    """A target is a callable (or Operation) or an import path "package.module:attribute"."""
    if isinstance(target, str):
        module, sep, attr = target.partition(":")
        if sep and module.strip() and attr.strip():
            return
        raise PluginError(
            f"{kind} {name!r}: {field}={target!r} is not an import path; write it as "
            "'package.module:attribute' (e.g. 'ase.calculators.emt:EMT') or pass the object"
        )
    if target is None or not callable(target):
        raise PluginError(
            f"{kind} {name!r}: {field} must be a callable or an import path "
            f"'package.module:attribute', got {target!r}"
        )


def load_target(target: Target) -> Any:
    """Resolve "pkg.module:attr" to the object (callables are returned unchanged).

    Any error while importing (a missing optional dependency, a broken module) is
    raised as PluginError naming the target, so that the caller sees which plugin
    to fix or which package to install.
    """
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as err:
        raise PluginError(
            f"cannot load {target!r}: {type(err).__name__}: {err}; install the package "
            "that provides it, or check the plugin that registered it"
        ) from err
    return obj


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    summary: str

    kind = ""
    target_field = ""  # the field naming what the spec stands for

    def __post_init__(self):
        object.__setattr__(self, "name", normalize_name(self.name))
        if not isinstance(self.summary, str) or not self.summary.strip():
            raise PluginError(f"{self.kind[:-1]} {self.name!r}: summary must be a non-empty "
                              "string (one line saying what it is)")
        if self.target_field:
            _check_target(self.kind[:-1], self.name, self.target_field,
                          getattr(self, self.target_field))

    @property
    def target(self) -> Target:
        """The callable, Operation or import path this spec stands for."""
        return getattr(self, self.target_field)

    def load(self) -> Any:
        """The target itself, importing it now if it was given as "pkg.module:attr"."""
        return load_target(self.target)


@dataclasses.dataclass(frozen=True)
class CalculatorSpec(_Spec):
    """An ASE calculator by name: factory(**kwargs) returns a calculator instance.

    properties: what the calculator can compute (energy, forces, stress ...).
    picklable: whether an instance may be sent to worker processes; when False
    wflp builds it in each worker from the factory.
    reset_interval: how often calculate resets it between configurations: 1 (the
    default) before each one; N before every Nth (its results then depend on the
    previous configurations of the same block of N only in the last bits, the same
    in every run); 0 never (its results do not depend on what it computed before).
    See wflp.calculators.reset_interval.
    result_version: the version of what the calculator computes, as its author declares
    it (default "1"): bump it when a change to the plugin changes its results. Records
    compare it, not the plugin's distribution version, so upgrading the plugin does not
    discard its outputs.
    """

    factory: Target  # required: a spec without its target is no spec
    properties: tuple = ("energy", "forces")
    picklable: bool = False
    reset_interval: int = 1
    result_version: str = "1"
    kind = "calculators"
    target_field = "factory"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.reset_interval, bool) or not isinstance(self.reset_interval, int) \
                or self.reset_interval < 0:
            raise PluginError(f"calculator {self.name!r}: reset_interval must be a whole "
                              f"number >= 0, got {self.reset_interval!r}")
        if isinstance(self.properties, str) or not all(
                isinstance(p, str) for p in self.properties):
            raise PluginError(f"calculator {self.name!r}: properties must be a sequence of "
                              f"property names like ('energy', 'forces'), got "
                              f"{self.properties!r}")
        object.__setattr__(self, "properties", tuple(self.properties))


@dataclasses.dataclass(frozen=True)
class GeneratorSpec(_Spec):
    """An operation that makes new configurations (from SMILES, by MD, by random search ...)."""

    operation: Target  # required: a spec without its target is no spec
    kind = "generators"
    target_field = "operation"


@dataclasses.dataclass(frozen=True)
class SelectorSpec(_Spec):
    """An operation that selects a subset of its input configurations."""

    operation: Target  # required: a spec without its target is no spec
    kind = "selectors"
    target_field = "operation"


@dataclasses.dataclass(frozen=True)
class FitterSpec(_Spec):
    """Fits a model: ``fit(training, workdir, **params)`` with *training* the path of an
    extended-XYZ file and *workdir* a fresh, empty run directory (``seed`` and ``cores``
    are passed when it takes them); returns the main model file, or a
    ``wflp.ops.fit.ModelFiles``. Used through ``wflp.ops.fit``, which records, reuses
    and places the model.

    calculator: name of the registered calculator that evaluates the fitted model.
    model_argument: the keyword of that calculator's factory that takes the model's
    main file (no guessing whether it is positional or which keyword).
    result_version: the version of what the fitter computes, as its author declares it
    (default "1"): bump it when a change to the plugin changes the models it fits. A
    model's record compares it, not the plugin's distribution version.
    """

    fit: Target  # required: a spec without its target is no spec
    calculator: str = ""
    model_argument: str = "model"
    result_version: str = "1"
    kind = "fitters"
    target_field = "fit"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.calculator, str):
            raise PluginError(f"fitter {self.name!r}: calculator must be the name of a "
                              f"registered calculator (a string), got {self.calculator!r}")
        if self.calculator:
            object.__setattr__(self, "calculator", normalize_name(self.calculator))
        if not isinstance(self.model_argument, str) or not self.model_argument.isidentifier():
            raise PluginError(f"fitter {self.name!r}: model_argument must be the keyword the "
                              f"calculator factory takes the model file by, got "
                              f"{self.model_argument!r}")


@dataclasses.dataclass(frozen=True)
class ExecutorSpec(_Spec):
    """Where chunks run: factory(**options) returns an object with
    map_chunks(tasks, autopara_info) -> iterator of ChunkResult, in task order."""

    factory: Target  # required: a spec without its target is no spec
    kind = "executors"
    target_field = "factory"


@dataclasses.dataclass(frozen=True)
class SchedulerSpec(_Spec):
    """A queueing system's dialect: factory() returns a wflp.remote.scheduler.Scheduler
    (render the job header, submit and read the id, one status call for all jobs and
    its parsing into the common states, accounting, cancel). Systems name it with
    ``scheduler = "<name>"``; the core does the rest (store, transport, polling)."""

    factory: Target  # required: a spec without its target is no spec
    kind = "schedulers"
    target_field = "factory"


@dataclasses.dataclass(frozen=True)
class DescriptorSpec(_Spec):
    """An operation that adds a descriptor to every configuration: one vector per
    configuration in ``Atoms.info[key]`` (what the global selectors select_cur and
    select_fps read), or one row per atom in ``Atoms.arrays[key]`` where it offers that.
    key: where it stores the descriptor unless told otherwise (default: its name), so
    that a selector's ``key=`` can be checked against what was computed."""

    operation: Target  # required: a spec without its target is no spec
    key: str = ""
    kind = "descriptors"
    target_field = "operation"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.key, str):
            raise PluginError(f"descriptor {self.name!r}: key must be the Atoms.info key it "
                              f"stores the descriptor under (a string), got {self.key!r}")
        object.__setattr__(self, "key", self.key or self.name)
