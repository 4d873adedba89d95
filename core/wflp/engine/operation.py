"""Operations: a per-item (or per-chunk) function made into a chunked, resumable operation.

``@operation`` turns ``f(item, ...) -> Atoms | None | list`` (or, with
``per="chunk"``, ``f(items, ...) -> list``) into
``op(inputs, outputs, *args, autopara_info=None, seed=None, **kwargs) -> ConfigSet``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Optional

from ..errors import ParameterError

# parameters wflp supplies itself: the item's random stream, its index, and the block
# size chunks are aligned to (see Operation)
RESERVED = ("rng", "index", "block")


@dataclasses.dataclass(frozen=True)
class ParameterConvention:
    """What a parameter name means in every operation that has it (``calculator``).

    describe: ``describe(value, describer)``, its description in records (unless the
    operation gives its own). check: ``check(value, where)``, raises ParameterError
    for a bad value before anything runs; *where* names the operation and parameter.
    """

    describe: Callable[[Any, Any], Any]
    check: Callable[[Any, str], None]


_conventions: dict[str, ParameterConvention] = {}


def register_parameter_convention(name: str, convention: ParameterConvention) -> None:
    """Give the parameter *name* of every operation defined from now on this meaning.

    The engine knows no calculator: the layer that does registers its convention
    (:mod:`wflp._wiring` registers ``calculator`` when wflp is imported)."""
    _conventions[name] = convention


def parameter_conventions() -> dict[str, ParameterConvention]:
    """The registered conventions, by parameter name."""
    return dict(_conventions)


class Operation:
    """A function made into a chunked, parallel, resumable operation over a ConfigSet.

    Call it as ``op(inputs, outputs, *args, autopara_info=None, seed=None, **kwargs)``.

    check: ``check(parameters, seed)`` validates parameter *values* in the caller
        before anything runs (from Python, ``wflp run`` and chains alike).
    describe: {parameter: describe(value, describer)} for parameters whose record
        description needs more than the generic one.

    A parameter named ``calculator`` is a calculator by convention, whatever the
    operation: it is checked before anything runs (wflp.calculators.check_calculator:
    a registered name must exist, keyword arguments must fit its factory) and
    described with the plugin distribution that provides it (see
    :class:`ParameterConvention`).
    block: ``block(parameters) -> int``; chunks then start only at multiples of
        that many items, so a per-chunk function may keep state (a calculator)
        between the items of one block and still give the same bytes in any run.
        A function with a parameter named ``block`` is given that size (computed once,
        in the caller), as it is given ``rng`` and ``index``.
    """

    def __init__(self, func: Callable, name: str, version: str = "1", per: str = "item",
                 summary: str | None = None, check: Callable | None = None,
                 describe: Mapping[str, Callable] | None = None,
                 block: Callable[[dict], int] | None = None) -> None:
        if per not in ("item", "chunk"):
            raise ParameterError(f"operation per= must be 'item' or 'chunk', got {per!r}")
        self.func = func
        self.name = name
        self.version = str(version)
        self.per = per
        self.check = check
        self.signature = inspect.signature(func)
        self.describe = dict(describe or {})
        self.conventions = {key: conv for key, conv in _conventions.items()
                            if key in self.signature.parameters}
        for key, conv in self.conventions.items():
            self.describe.setdefault(key, conv.describe)
        self.block = block
        self.summary = summary or (inspect.getdoc(func) or "").split("\n")[0]
        self.wants_rng = "rng" in self.signature.parameters
        self.wants_index = "index" in self.signature.parameters
        self.wants_block = "block" in self.signature.parameters
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<wflp operation {self.name!r} v{self.version} ({self.per})>"

    def __reduce__(self) -> tuple[Any, tuple]:
        # pickled by reference to the module attribute when possible (cloudpickle does the rest)
        return (_rebuild_operation, (self.func, self.name, self.version, self.per, self.summary,
                                     self.check, self.describe, self.block))

    def __wflp_provenance__(self) -> dict:
        """How records describe an operation passed as a parameter (e.g. to a chain)."""
        return {"operation": self.name, "version": self.version, "function": self.func}

    @property
    def parameter_names(self) -> list[str]:
        """The parameters a caller passes (not the item, rng or index)."""
        return [p for p in list(self.signature.parameters)[1:] if p not in RESERVED]

    def bind_parameters(self, args: tuple, kwargs: dict) -> dict:
        """The parameters that define the result, with defaults filled in."""
        params = list(self.signature.parameters.values())
        if not params:
            raise ParameterError(f"operation {self.name!r}: its function takes no item argument")
        reserved = [k for k in RESERVED if k in kwargs]
        if reserved:
            raise ParameterError(
                f"operation {self.name!r}: {reserved[0]!r} is supplied by wflp for each item; "
                "do not pass it (use seed= for reproducible randomness)")
        filled = {k: None for k in RESERVED if k in self.signature.parameters}
        try:
            bound = self.signature.bind(None, *args, **kwargs, **filled)
        except TypeError as err:
            raise ParameterError(
                f"operation {self.name!r}: {err}; its parameters are "
                f"{self.name}(inputs, outputs{_sig_tail(self.signature)})") from None
        bound.apply_defaults()
        out = dict(bound.arguments)
        out.pop(params[0].name)
        for name in RESERVED:
            out.pop(name, None)
        return out

    def validate(self, args: tuple, kwargs: dict, seed: Optional[int] = None) -> dict:
        """Bind and check the parameters (names and values) without running anything."""
        if seed is not None and (isinstance(seed, bool) or not _is_int(seed) or seed < 0):
            raise ParameterError(f"operation {self.name!r}: seed must be an int >= 0, "
                                 f"got {seed!r}")
        params = self.bind_parameters(args, kwargs)
        for key, conv in self.conventions.items():
            if key in params:
                conv.check(params[key], f"{self.name}: parameter {key!r}")
        if self.check is not None:
            self.check(params, seed)  # raises ParameterError before anything runs
        return params

    def block_size(self, params: dict) -> int:
        """Chunks start at multiples of this many items (1: anywhere)."""
        if self.block is None:
            return 1
        return max(1, int(self.block(params)))

    def __call__(self, inputs: Any, outputs: Any, *args: Any,
                 autopara_info: Any = None, seed: int | None = None,
                 **kwargs: Any) -> Any:
        from ..configset import ConfigSet, OutputSpec
        from .info import AutoparaInfo
        from .run import run_operation

        if not isinstance(inputs, ConfigSet):
            inputs = ConfigSet(inputs)
        if not isinstance(outputs, OutputSpec):
            raise ParameterError(
                f"operation {self.name!r}: outputs must be an OutputSpec (OutputSpec() for "
                f"memory, OutputSpec('out.xyz') for a file), got {type(outputs).__name__}")
        info = (autopara_info or AutoparaInfo()).resolved()
        outputs.check_fits(inputs)
        params = self.validate(args, kwargs, seed)
        if self.wants_rng:
            params["seed"] = seed  # the per-item random streams decide the results
        return run_operation(self, inputs, outputs, args, kwargs, params, seed, info)


def _is_int(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer))


def _rebuild_operation(func: Callable, name: str, version: str, per: str,
                       summary: Optional[str], check: Optional[Callable] = None,
                       describe: Optional[Mapping[str, Callable]] = None,
                       block: Optional[Callable[[dict], int]] = None) -> Operation:
    return Operation(func, name, version, per, summary, check, describe, block)


def _sig_tail(sig: inspect.Signature) -> str:
    parts = [str(p) for p in list(sig.parameters.values())[1:] if p.name not in RESERVED]
    return (", " + ", ".join(parts)) if parts else ""


def operation(name: str | None = None, *, version: str = "1", per: str = "item",
              summary: str | None = None,
              check: Callable[[dict, Optional[int]], Any] | None = None,
              describe: Mapping[str, Callable] | None = None,
              block: Callable[[dict], int] | None = None,
              ) -> Callable[[Callable], Operation]:
    """Decorator: make a per-item (or per-chunk) function into an Operation.

    >>> @operation("scale_cell", version="1")
    ... def scale_cell(atoms, factor):
    ...     atoms.set_cell(atoms.cell * factor, scale_atoms=True)
    ...     return atoms

    Bump *version* whenever a change to the function changes its results: stored
    outputs made by the old version are then not reused (for code that is not
    installed, edits are detected from its source anyway). *check*, if given, is
    called as check(parameters, seed) in the caller before any item runs, so a bad
    value raises its own ParameterError at once instead of failing in every item.
    See :class:`Operation` for *describe* and *block*.
    """

    def wrap(func: Callable) -> Operation:
        return Operation(func, name or func.__name__, version=version, per=per, summary=summary,
                         check=check, describe=describe, block=block)

    return wrap


__all__ = ["Operation", "operation"]
