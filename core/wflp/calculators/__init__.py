"""Calculators given as objects, constructor tuples, or registered names.

One place decides, for every operation that takes a calculator (calculate, md,
optimize, plugins):

- how it is built: a (constructor, args, kwargs) tuple or a registered name is
  built once per process (:func:`construct_calculator`);
- how often it is reset (:func:`reset_interval`), so that results never depend on
  which configurations a process evaluated before;
- how records describe it (:func:`describe_calculator`): class or registered
  name, the plugin distribution and version that provides it, parameters, and
  its configuring attributes;
- which parameters, properties and key prefixes are valid, checked before anything
  runs (:func:`check_calculator`, :func:`check_properties`, :func:`check_prefix`);
- which stored keys are a prefix's results, removed before a new outcome is stored
  (:func:`clear_results`);
- committees (:mod:`wflp.calculators.committee`): several calculators given as one,
  whose members are built, reset, checked and described each like a single calculator
  (:func:`committee_members`), and whose spread ``calculate`` stores beside the means
  (:func:`extra_results`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from typing import Any, Optional

from ..errors import ParameterError, WflpError

_built: dict[str, Any] = {}

# The attribute (on a calculator class or instance) that declares how often it must
# be reset; see reset_interval().
RESET_ATTRIBUTE = "wflp_reset_interval"
# ASE's in-process calculators whose only state between calls is a neighbour list:
# reused within a block of configurations it changes the last bits of the results,
# not more, and rebuilding it is most of their cost for small cells.
KNOWN_RESET_INTERVALS = {
    "ase.calculators.emt.EMT": 32,
    "ase.calculators.lj.LennardJones": 32,
    "ase.calculators.morse.MorsePotential": 32,
}


def _is_spec(calculator: Any) -> bool:
    return isinstance(calculator, (tuple, list, str))


def split_spec(spec: Any) -> tuple[Any, tuple, dict]:
    """(constructor, args, kwargs) of a calculator given as a name or a tuple."""
    if isinstance(spec, str):
        return spec, (), {}
    if not 1 <= len(spec) <= 3:
        raise ParameterError(
            f"a calculator tuple is (constructor, args, kwargs); got {len(spec)} elements")
    ctor = spec[0]
    args = tuple(spec[1]) if len(spec) > 1 and spec[1] is not None else ()
    kwargs = dict(spec[2]) if len(spec) > 2 and spec[2] is not None else {}
    if len(spec) == 2 and isinstance(spec[1], dict):
        args, kwargs = (), dict(spec[1])
    return ctor, args, kwargs


def _registered(name: str) -> Any:
    from ..plugins import get_calculator

    return get_calculator(name)


def committee_members(calculator: Any, where: str = "calculate") -> Optional[list]:
    """The members of *calculator* if it is a committee (a ``Committee`` object, or a spec
    whose constructor is that class or a name registered for it), else None.

    A committee spec whose members are not a non-empty list is a ParameterError naming
    *where*."""
    import sys

    module = sys.modules.get("wflp.calculators.committee")
    if not _is_spec(calculator):
        if module is not None and isinstance(calculator, module.Committee):
            return list(calculator.member_specs)
        return None
    try:
        ctor, args, kwargs = split_spec(calculator)
    except ParameterError:
        return None
    if isinstance(ctor, str):
        try:
            if _registered(ctor).factory != COMMITTEE_FACTORY:
                return None
        except WflpError:
            return None  # an unknown name: the caller's own checks say so
    elif not inspect.isclass(ctor) or module is None or not issubclass(ctor, module.Committee):
        return None  # (no Committee class can exist before its module is imported)
    from .committee import members_argument

    return members_argument(args, kwargs, f"{where}: calculator {_shown(calculator)}")


COMMITTEE_FACTORY = "wflp.calculators.committee:Committee"


def _shown(calculator: Any) -> str:
    ctor = calculator[0] if isinstance(calculator, (tuple, list)) else calculator
    return repr(ctor) if isinstance(ctor, str) else getattr(ctor, "__qualname__", repr(ctor))


def construct_calculator(calculator: Any) -> Any:
    """The calculator object for *calculator*, building a spec once per process.

    A (constructor, args, kwargs) tuple is built the first time a process needs it
    and reused afterwards; a string constructor names a registered calculator.
    """
    if not _is_spec(calculator):
        if not hasattr(calculator, "get_property"):
            raise ParameterError(
                f"calculator must be an ASE calculator, a (constructor, args, kwargs) tuple "
                f"or a registered calculator name; got {type(calculator).__name__}")
        return calculator
    from ..records import canonical, parameters_digest

    key = parameters_digest(canonical(calculator))
    calc = _built.get(key)
    if calc is None:
        ctor, args, kwargs = split_spec(calculator)
        if isinstance(ctor, str):
            ctor = _registered(ctor).load()
        if not callable(ctor):
            raise ParameterError(f"calculator constructor {ctor!r} is not callable")
        calc = ctor(*args, **kwargs)
        _built[key] = calc
    return calc


def calculator_prefix(calculator: Any, calc: Any) -> str:
    """Default key prefix: the registered name, or the calculator's class name, plus '_'
    (a committee, given in any form: 'committee_')."""
    if committee_members(calculator) is not None:
        return "committee_"
    if isinstance(calculator, str):
        return f"{calculator}_"
    if isinstance(calculator, (tuple, list)) and isinstance(calculator[0], str):
        return f"{calculator[0]}_"
    return f"{type(calc).__name__}_"


# -- keys under a prefix ----------------------------------------------------------------------

# What a prefix may hold: it starts extended XYZ keys, where whitespace, quotes, '=' and ','
# end or split a key, ':' splits the Properties of per-atom arrays, a line break ends the
# header and brackets read as a list.
_PREFIX_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]*")
PREFIX_RULE = "ASCII letters, digits, '_', '-' and '.'"
# Per-atom arrays ASE itself owns: never results, whatever the prefix ('pos', 'mass').
ASE_ARRAYS = frozenset({"numbers", "positions", "momenta", "masses", "tags",
                        "initial_magmoms", "initial_charges"})
# What calculate stores beside the properties, under the same prefix.
OUTCOME_NAMES = ("calc_failed", "calc_error", "rundir")


def check_prefix(prefix: Any, where: str, name: str = "prefix") -> None:
    """Raise ParameterError unless *prefix* is None or a string that extended XYZ keys can
    start with (see PREFIX_RULE; the empty string stores ASE's own names: energy, forces).

    Checked before anything runs: ``'x y'`` wrote forces that read back as ``yforces``.
    """
    if prefix is None:
        return
    if not isinstance(prefix, str):
        raise ParameterError(f"{where}: {name} must be a string such as 'EMT_', "
                             f"got {prefix!r}")
    if not _PREFIX_CHARACTERS.fullmatch(prefix):
        bad = sorted({c for c in prefix if not _PREFIX_CHARACTERS.fullmatch(c)})
        raise ParameterError(
            f"{where}: {name} {prefix!r} contains {', '.join(repr(c) for c in bad)}; it "
            f"starts the keys of the results in extended XYZ files, so it may hold only "
            f"{PREFIX_RULE} (e.g. 'DFT_')")


def clear_results(atoms: Any, prefix: str) -> None:
    """Remove from atoms every key under *prefix*, before a new outcome is stored there.

    Under a non-empty prefix is every ``info`` and ``arrays`` key that starts with it
    (old results, an old ``calc_failed``, keys written by other tools), except ASE's own
    arrays (``positions``, ``numbers``, ``masses`` ...). Every key starts with the
    empty prefix: under it are only the names calculate writes, ASE's property names
    (energy, forces ...), a committee's spreads (energy_std ...) and calc_failed,
    calc_error, rundir.
    """
    if prefix:
        def under(key: Any) -> bool:
            return isinstance(key, str) and key.startswith(prefix)
    else:
        from .committee import spread_names

        names = set(known_properties()) | set(spread_names()) | set(OUTCOME_NAMES)

        def under(key: Any) -> bool:
            return key in names
    for key in [k for k in atoms.info if under(k)]:
        del atoms.info[key]
    for key in [k for k in atoms.arrays if under(k) and k not in ASE_ARRAYS]:
        del atoms.arrays[key]


def calculate_properties(calc: Any, atoms: Any, names: Sequence[str]) -> dict:
    """{name: value} of every property in *names*, from one calculation.

    ``get_property`` asks for one property at a time, which makes some codes run once
    per property (Quantum ESPRESSO ran three times for energy, forces and stress);
    here the calculator is asked for all of them at once, and answers from its cache
    when it already has them for this configuration.
    """
    from ase.calculators.calculator import PropertyNotImplementedError

    for name in names:
        if name not in getattr(calc, "implemented_properties", names):
            raise PropertyNotImplementedError(f"{name} property not implemented")
    if not (callable(getattr(calc, "check_state", None)) and hasattr(calc, "results")
            and callable(getattr(calc, "calculate", None))):
        return {name: calc.get_property(name, atoms) for name in names}
    changes = calc.check_state(atoms)
    if changes:
        calc.atoms = None
        calc.results = {}
    if any(name not in calc.results for name in names):
        if getattr(calc, "use_cache", True):
            calc.atoms = atoms.copy()
        calc.calculate(atoms, list(names), changes)
    values = {}
    for name in names:
        if name not in calc.results:
            raise PropertyNotImplementedError(f"{name} not present in this calculation")
        value = calc.results[name]
        values[name] = value.copy() if hasattr(value, "copy") else value
    return values


def extra_results(calc: Any, names: Sequence[str]) -> dict:
    """What *calc* computed beside the properties *names* in its last calculation and wants
    stored with them (a committee's spread: energy_std, forces_std ...), by its
    ``wflp_extra_results(names)`` method; {} for a calculator without one."""
    method = getattr(calc, "wflp_extra_results", None)
    return dict(method(list(names))) if callable(method) else {}


# -- resetting ------------------------------------------------------------------------------

def reset_interval(calculator: Any) -> int:
    """How often a calculator is reset between configurations (by calculate).

    1 (the default): before every configuration, so nothing carries over.
    N > 1: before every configuration whose index is a multiple of N (and at the
    start of every chunk; chunks then start only at multiples of N). Between resets
    the calculator keeps its state (a neighbour list), which changes results only in
    the last bits, and those bits are the same in every run, serial or parallel.
    0: never; the calculator declares that its results do not depend on what it
    computed before.

    Declared by a registered calculator's ``CalculatorSpec(reset_interval=...)``, or
    by a ``wflp_reset_interval`` attribute of the calculator class (or instance);
    ASE's EMT, LennardJones and MorsePotential are known to wflp. A committee is reset
    as often as its members need together (the greatest common divisor of their
    intervals, see wflp.calculators.committee.combined_reset_interval).
    """
    members = committee_members(calculator)
    if members is not None:
        from .committee import combined_reset_interval

        return combined_reset_interval([reset_interval(m) for m in members])
    if _is_spec(calculator):
        ctor, _args, _kwargs = split_spec(calculator)
        if isinstance(ctor, str):
            try:
                return int(_registered(ctor).reset_interval)
            except WflpError:
                return 1
        target = ctor
    else:
        target = calculator
    value = getattr(target, RESET_ATTRIBUTE, None)
    if value is None:
        cls = target if inspect.isclass(target) else type(target)
        value = KNOWN_RESET_INTERVALS.get(f"{cls.__module__}.{cls.__qualname__}", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(f"{RESET_ATTRIBUTE} of {target!r} must be a whole number >= 0, "
                             f"got {value!r}")
    return value


# -- describing -----------------------------------------------------------------------------

def describe_calculator(calculator: Any, describer: Any,
                        where: str = "parameters.calculator") -> Any:
    """How records describe a calculator parameter (see the module docstring); a committee
    by each of its members, described the same way."""
    from ..records import provider_of

    if calculator is None:
        return None
    members = committee_members(calculator)
    if members is not None:
        from .committee import RESULT_VERSION, Committee

        return {"committee": describer.callable(Committee, f"{where}.committee",
                                                declared=True),
                "result_version": RESULT_VERSION,
                "members": [describe_calculator(m, describer, f"{where}.members[{i}]")
                            for i, m in enumerate(members)]}
    if not _is_spec(calculator):
        desc = describer.describe(calculator, where)
        cls = type(calculator)
        if isinstance(desc, dict):
            desc = {**desc, "provider": provider_of(cls.__module__)}
        return desc
    ctor, args, kwargs = split_spec(calculator)
    if isinstance(ctor, str):
        from ..plugins import get_plugin_manager

        spec = _registered(ctor)
        owner = get_plugin_manager().provider("calculators", ctor)
        factory = spec.load()
        desc = {"registered": spec.name,
                "provider": {"distribution": owner.distribution, "version": owner.version},
                "factory": describer.callable(factory, f"{where}.factory", declared=True),
                "args": describer.describe(list(args), f"{where}.args"),
                "kwargs": describer.describe(kwargs, f"{where}.kwargs")}
        if str(spec.result_version) != "1":
            desc["result_version"] = str(spec.result_version)
    else:
        factory = ctor
        desc = {"constructor": describer.callable(ctor, f"{where}.constructor"),
                "provider": provider_of(getattr(ctor, "__module__", None) or "?"),
                "args": describer.describe(list(args), f"{where}.args"),
                "kwargs": describer.describe(kwargs, f"{where}.kwargs")}
    return _with_provenance(desc, calculator, factory, describer, where)


def _with_provenance(desc: dict, calculator: Any, factory: Any, describer: Any,
                     where: str) -> dict:
    """A calculator class with the provenance protocol (file-based calculators: program
    version, digests of pseudopotentials) is built (cheaply, by contract) and described
    by what its ``__wflp_provenance__()`` returns, beside its arguments."""
    from ..records.describe import PROTOCOL

    if not inspect.isclass(factory) or not callable(getattr(factory, PROTOCOL, None)):
        return desc
    calc = construct_calculator(calculator)
    return {**desc, "provenance": describer.provenance(getattr(calc, PROTOCOL)(),
                                                       f"{where}.provenance")}


# -- checking -------------------------------------------------------------------------------

def check_calculator(calculator: Any, where: str = "calculate") -> None:
    """Raise a WflpError naming the problem if *calculator* cannot be built as given:
    an unknown registered name, a keyword its factory does not take, or a value of
    the wrong kind for a parameter with a default (``sigma="abc"``). None passes:
    whether an operation needs a calculator is the operation's own check."""
    if calculator is None:
        return
    members = committee_members(calculator, where)
    if members is not None:
        for i, member in enumerate(members):
            _check_member(member, f"{where}: committee member {i}")
        return
    if not _is_spec(calculator):
        if not hasattr(calculator, "get_property"):
            raise ParameterError(
                f"{where}: calculator must be an ASE calculator, a (constructor, args, "
                f"kwargs) tuple or a registered calculator name; got "
                f"{type(calculator).__name__}")
        return
    ctor, args, kwargs = split_spec(calculator)
    if isinstance(ctor, str):
        try:
            spec = _registered(ctor)
            factory = spec.load()
        except WflpError as err:
            raise type(err)(f"{where}: calculator {ctor!r}: {err}") from None
        shown = spec.factory if isinstance(spec.factory, str) else getattr(
            factory, "__qualname__", factory)
        what = f"calculator {spec.name!r} (factory {shown})"
    else:
        factory = ctor
        if not callable(factory):
            raise ParameterError(f"{where}: calculator constructor {ctor!r} is not callable")
        what = f"calculator constructor {getattr(factory, '__qualname__', factory)}"
    check_call(factory, args, kwargs, where, what)


def _check_member(member: Any, where: str) -> None:
    """A committee member is checked as a calculator; a class that is not one (a typo's
    ``dict``) is refused here, before a worker would build it."""
    if member is None:
        raise ParameterError(f"{where}: None is not a calculator; give an ASE calculator, a "
                             "(constructor, args, kwargs) tuple or a registered name")
    try:
        check_calculator(member, where)
    except WflpError as err:
        if isinstance(err, ParameterError):
            raise
        raise ParameterError(str(err)) from None
    if _is_spec(member):
        ctor, _args, _kwargs = split_spec(member)
        if inspect.isclass(ctor) and not hasattr(ctor, "get_property"):
            raise ParameterError(f"{where}: {ctor.__qualname__} is not an ASE calculator "
                                 "class (it has no get_property)")


def check_call(func: Any, args: Sequence, kwargs: dict, where: str, what: str,
               source: str = "its keyword arguments") -> None:
    """Raise ParameterError (starting with *where*, naming *what* is called) if
    func(*args, **kwargs) cannot bind, or a value has the wrong kind for its default."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return  # no signature to check against (builtin); the call itself will tell
    accepted = [n for n, p in sig.parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    defaults = {n: p.default for n, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if open_ended:
        ase_defaults = _ase_defaults(func)
        if ase_defaults is not None:
            accepted = sorted(set(accepted) | set(ase_defaults))
            defaults = {**ase_defaults, **defaults}
            open_ended = False
    for key in kwargs:
        if key not in accepted and not open_ended:
            raise ParameterError(
                f"{where}: unknown parameter {key!r} in {source}; {what} takes "
                f"{', '.join(a for a in accepted if a != 'self') or 'no parameters'}")
    try:
        sig.bind_partial(*args, **kwargs)
    except TypeError as err:
        raise ParameterError(f"{where}: {what}: {err}") from None
    for key, value in kwargs.items():
        _check_kind(key, value, defaults.get(key), f"{where}: {what}")


def _ase_defaults(func: Any) -> Optional[dict]:
    """The keyword arguments (with defaults) of a plain in-process ASE calculator class.

    Such classes take ``**kwargs`` and keep their parameters in ``default_parameters``
    (EMT, LennardJones, Morse ...). Calculators that write input files for external
    codes accept more than that and are not checked.
    """
    if not inspect.isclass(func):
        return None
    try:
        from ase.calculators.calculator import Calculator, FileIOCalculator
    except ImportError:  # pragma: no cover
        return None
    if not issubclass(func, Calculator) or issubclass(func, FileIOCalculator):
        return None
    names = dict(getattr(func, "default_parameters", {}) or {})
    for cls in func.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        for p in params:
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.setdefault(p.name, None if p.default is p.empty else p.default)
        if cls is Calculator:
            break
    return names


def _check_kind(key: str, value: Any, default: Any, what: str) -> None:
    """A value must be of the kind its default is (number, bool, string, list)."""
    import numpy as np

    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, (bool, np.bool_)), "true or false"
    elif isinstance(default, (int, float, np.number)):
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        kind = "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, kind = isinstance(value, (list, tuple, np.ndarray)), "a list"
    elif isinstance(default, dict):
        ok, kind = isinstance(value, dict), "a table (dict)"
    else:
        return
    if not ok:
        raise ParameterError(f"{what}: parameter {key!r} must be {kind} (its default is "
                             f"{default!r}), got {value!r}")


def known_properties() -> list[str]:
    """Every property name ASE's calculators know
    (``ase.calculators.calculator.all_properties``)."""
    from ase.calculators.calculator import all_properties

    return list(all_properties)


def implemented_properties(calculator: Any) -> Optional[list[str]]:
    """The properties *calculator* declares it computes, if that is known before building it
    (a committee: those all its members declare)."""
    members = committee_members(calculator)
    if members is not None:
        from .committee import common_properties

        each = [implemented_properties(m) for m in members]
        return None if any(p is None for p in each) else common_properties(
            [p for p in each if p is not None])
    if _is_spec(calculator):
        ctor, _a, _k = split_spec(calculator)
        if isinstance(ctor, str):
            try:
                spec = _registered(ctor)
                factory = spec.load()
            except WflpError:
                return None
            extra = getattr(factory, "implemented_properties", None) \
                if inspect.isclass(factory) else None
            return sorted(set(spec.properties) | set(extra or ()))
        props = getattr(ctor, "implemented_properties", None)
    else:
        props = getattr(calculator, "implemented_properties", None)
    return list(props) if isinstance(props, (list, tuple)) and props else None


def check_properties(properties: Any, calculator: Any, where: str = "calculate") -> None:
    """Raise ParameterError for a property name ASE does not know, or one the calculator
    says it does not compute."""
    if properties is None:
        return
    if isinstance(properties, str) or not isinstance(properties, (list, tuple)) \
            or not properties or not all(isinstance(p, str) for p in properties):
        raise ParameterError(f"{where}: properties must be a non-empty list of names, e.g. "
                             f"['energy', 'forces'], got {properties!r}")
    known = known_properties()
    unknown = [p for p in properties if p not in known]
    if unknown:
        raise ParameterError(f"{where}: unknown propert{'y' if len(unknown) == 1 else 'ies'} "
                             f"{', '.join(map(repr, unknown))}; ASE knows {', '.join(known)}")
    implemented = implemented_properties(calculator)
    if implemented is not None:
        missing = [p for p in properties if p not in implemented]
        if missing:
            raise ParameterError(
                f"{where}: the calculator does not compute {', '.join(map(repr, missing))}; "
                f"it computes {', '.join(implemented)}")


__all__ = ["ASE_ARRAYS", "COMMITTEE_FACTORY", "KNOWN_RESET_INTERVALS", "OUTCOME_NAMES",
           "PREFIX_RULE", "RESET_ATTRIBUTE", "calculate_properties", "calculator_prefix",
           "check_call", "check_calculator", "check_prefix", "check_properties",
           "clear_results", "committee_members", "construct_calculator",
           "describe_calculator", "extra_results", "implemented_properties",
           "known_properties", "reset_interval", "split_spec"]
