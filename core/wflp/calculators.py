"""Calculators given as objects, constructor tuples, or registered names."""

from __future__ import annotations

from typing import Any

from . import records
from .errors import ParameterError

_built: dict[str, Any] = {}


def _is_spec(calculator: Any) -> bool:
    return isinstance(calculator, (tuple, list)) or isinstance(calculator, str)


def _split_spec(spec: Any) -> tuple[Any, tuple, dict]:
    if isinstance(spec, str):
        return spec, (), {}
    if not 1 <= len(spec) <= 3:
        raise ParameterError(
            f"a calculator tuple is (constructor, args, kwargs); got {len(spec)} elements"
        )
    ctor = spec[0]
    args = tuple(spec[1]) if len(spec) > 1 and spec[1] is not None else ()
    kwargs = dict(spec[2]) if len(spec) > 2 and spec[2] is not None else {}
    if len(spec) == 2 and isinstance(spec[1], dict):
        args, kwargs = (), dict(spec[1])
    return ctor, args, kwargs


def construct_calculator(calculator: Any) -> Any:
    """The calculator object for *calculator*, building a spec once per process.

    A (constructor, args, kwargs) tuple is built the first time a process needs it
    and reused afterwards; a string constructor names a registered calculator.
    """
    if not _is_spec(calculator):
        if not hasattr(calculator, "get_property"):
            raise ParameterError(
                f"calculator must be an ASE calculator, a (constructor, args, kwargs) tuple "
                f"or a registered calculator name; got {type(calculator).__name__}"
            )
        return calculator
    key = records.parameters_digest(records.canonical(calculator))
    calc = _built.get(key)
    if calc is None:
        ctor, args, kwargs = _split_spec(calculator)
        if isinstance(ctor, str):
            from .plugins import get_calculator

            ctor = get_calculator(ctor).load()
        if not callable(ctor):
            raise ParameterError(f"calculator constructor {ctor!r} is not callable")
        calc = ctor(*args, **kwargs)
        _built[key] = calc
    return calc


def calculator_prefix(calculator: Any, calc: Any) -> str:
    """Default key prefix: the registered name, or the calculator's class name, plus '_'."""
    if isinstance(calculator, str):
        return f"{calculator}_"
    if isinstance(calculator, (tuple, list)) and isinstance(calculator[0], str):
        return f"{calculator[0]}_"
    return f"{type(calc).__name__}_"
