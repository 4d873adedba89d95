"""Canonical descriptions: what a parameter value, a function or a calculator *is*, as JSON.

A record compares descriptions, never object identities, so a description must
capture everything that decides what the described thing computes, and nothing
that changes without changing the results:

- plain values, containers and arrays by value (large arrays by digest);
- ``Atoms`` by a digest of their content;
- installed code (functions, classes, modules of a distribution installed
  normally) by distribution name; the distribution's *version* is a fact (see
  :attr:`Describer.facts`), kept in the record but not deciding reuse, since an
  upgrade of ASE or wflp does not change what a computation means; the standard
  library by name;
- code whose author declares a version (an operation's ``version``, a registered
  calculator's or fitter's ``result_version``) by its name and that declaration;
  its source, when installed in editable mode, is a fact;
- the user's own code (the script, modules beside it, editable installs) by a
  digest of its source, its default arguments, and a description of every value
  it reads from outside its body: closure cells, globals, attributes reached
  through modules and classes (``config.THRESHOLD``, ``mylib.helper``), and
  modules it imports; functions it reads are described in turn;
- ASE calculators by class, parameters, and the attributes that configure them
  outside ``.parameters`` (composites such as SumCalculator included);
- anything with a ``__wflp_provenance__()`` method by what that method returns
  (the provenance protocol: file-based calculators use it to add digests of
  pseudopotentials); a ``"facts"`` entry of what it returns (a program's version
  found at run time) is kept as a fact;
- the environment variables a user's function reads by name (``os.environ["X"]``,
  ``os.environ.get("X")``, ``os.getenv("X")``) by a digest of their values;
- objects wflp cannot describe (opaque objects) by a digest of their pickled
  state, noted in :attr:`Describer.opaque` so that records and logs say so.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import dis
import enum
import functools
import hashlib
import importlib
import inspect
import json
import logging
import math
import os
import re
import sys
import textwrap
import types
from typing import Any, Optional

import numpy as np

from .provenance import installed_code

log = logging.getLogger("wflp")

SMALL_ARRAY = 64        # arrays up to this size are described by value
MAX_DEPTH = 24          # how deep descriptions of nested functions and values go
PROTOCOL = "__wflp_provenance__"

# attributes every ASE calculator has that say nothing about what it computes
CALCULATOR_BOOKKEEPING = frozenset({
    "atoms", "results", "parameters", "directory", "_directory", "prefix", "label",
    "_label", "name", "use_cache", "state", "calc", "implemented_properties",
    "discard_results_on_any_change", "default_parameters", "ignored_changes",
})
# attributes of ASE's own calculators that configure them outside .parameters
ASE_CALCULATOR_ATTRIBUTES = ("mixer", "calcs", "weights", "calc1", "calc2", "weight1",
                             "weight2", "command", "profile")

# attributes of objects that are derived from others (ASE's Mixer builds its
# implemented_properties from a set, so their order follows hash randomisation)
DERIVED_ATTRIBUTES = frozenset({"implemented_properties"})
# a calculator class (or instance) attribute declaring the version of what it computes;
# bump it when a change to the code changes the results (default "1")
RESULT_VERSION = "wflp_result_version"

_logged_opaque: set = set()


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 hex digest of *data*."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of an already-canonical object."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class Describer:
    """Builds descriptions; remembers what it could describe only by a pickle digest.

    ``opaque`` lists ``{"where", "type", "how"}`` for each such object, so that the
    record and the log can say what was not described by its content.
    """

    def __init__(self) -> None:
        self.opaque: list[dict] = []
        # what was found but does not decide reuse (unless reuse="strict"): versions of
        # installed distributions, editable sources of declared code, program versions
        self.facts: dict[str, dict] = {"versions": {}, "sources": {}, "programs": {}}
        self._active: set[int] = set()  # ids on the current path: cycles end there

    def _installed(self, code: dict) -> dict:
        """An installed-code description without its version, which becomes a fact."""
        out = dict(code)
        version = out.pop("version", None)
        name = out.get("distribution")
        if name:
            self.facts["versions"][name] = version
        return out

    # -- entry point ------------------------------------------------------------------------
    def describe(self, obj: Any, where: str = "", depth: int = 0) -> Any:
        """A canonical, JSON-ready description of *obj*: plain values as they are,
        containers item by item, functions, calculators and modules by their code; what
        cannot be described by content is noted (``opaque``) with *where* it was found."""
        kind = type(obj)
        if obj is None or kind is bool or kind is str or kind is int:
            return obj
        if kind is float or isinstance(obj, np.floating):
            value = float(obj)
            return value if math.isfinite(value) else repr(value)
        if isinstance(obj, (bool, np.bool_)):
            return bool(obj)
        if isinstance(obj, (int, np.integer)):
            return int(obj)
        if isinstance(obj, (str, np.str_)):
            return str(obj)
        if isinstance(obj, complex):
            return {"complex": [obj.real, obj.imag]}
        if isinstance(obj, np.ndarray):
            return _describe_array(obj)
        if isinstance(obj, enum.Enum):
            return f"{type(obj).__qualname__}.{obj.name}"
        if isinstance(obj, os.PathLike) and not hasattr(obj, PROTOCOL):
            return os.fspath(obj)
        if isinstance(obj, (bytes, bytearray)):
            return {"bytes_sha256": sha256_bytes(bytes(obj))}
        if isinstance(obj, slice):
            return {"slice": [self.describe(obj.start), self.describe(obj.stop),
                              self.describe(obj.step)]}
        if depth > MAX_DEPTH:
            return self._opaque(obj, where, "too deeply nested to describe")
        key = id(obj)
        if key in self._active:
            return {"cycle": _qualname(obj)}
        self._active.add(key)
        try:
            return self._describe_composite(obj, where, depth)
        finally:
            self._active.discard(key)

    def _describe_composite(self, obj: Any, where: str, depth: int) -> Any:
        from ase import Atoms

        if isinstance(obj, dict):
            items = sorted(obj.items(), key=lambda kv: str(kv[0]))
            return {str(k): self.describe(v, f"{where}.{k}", depth + 1) for k, v in items}
        if isinstance(obj, (list, tuple)):
            return [self.describe(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(obj)]
        if isinstance(obj, (set, frozenset)):
            return sorted((self.describe(x, where, depth + 1) for x in obj), key=canonical_json)
        if isinstance(obj, Atoms):
            from .fingerprint import atoms_digest

            return {"atoms_sha256": atoms_digest(obj)}
        if not isinstance(obj, type) and callable(getattr(obj, PROTOCOL, None)):
            return {"object": _qualname(obj),
                    "provenance": self.provenance(getattr(obj, PROTOCOL)(), where, depth + 1)}
        if _is_calculator(obj):
            return self.calculator(obj, where, depth)
        if isinstance(obj, types.ModuleType):
            return self.module(obj)
        if inspect.isroutine(obj) or inspect.isclass(obj) or isinstance(obj, functools.partial):
            return self.callable(obj, where, depth)
        if dataclasses.is_dataclass(obj):
            return {"dataclass": _qualname(obj),
                    "fields": self.describe({f.name: getattr(obj, f.name)
                                             for f in dataclasses.fields(obj)}, where, depth + 1)}
        todict = getattr(obj, "todict", None)
        if callable(todict):
            try:
                state = todict()
            except Exception:
                state = None
            if isinstance(state, dict):
                return {"object": _qualname(obj), "state": self.describe(state, where, depth + 1)}
        return self._object(obj, where, depth)

    def provenance(self, value: Any, where: str = "", depth: int = 0) -> Any:
        """What a ``__wflp_provenance__()`` returned: its ``"facts"`` entry (a program's
        version found at run time) is kept as a fact, the rest is described."""
        if isinstance(value, dict) and "facts" in value:
            value = dict(value)
            facts = value.pop("facts")
            if facts:
                self.facts["programs"][where.lstrip(".") or "provenance"] = self.describe(
                    facts, where, depth + 1)
        return self.describe(value, where, depth)

    # -- objects ----------------------------------------------------------------------------
    def _object(self, obj: Any, where: str, depth: int) -> Any:
        """Objects by their attributes when those are all there is to them (plain Python
        objects: the user's own, or installed ones holding plain data and calculators);
        anything else (state kept in C, custom pickling) by a digest of its pickled state."""
        state = getattr(obj, "__dict__", None)
        cls = type(obj)
        user_code = installed_code(cls.__module__) is None
        if isinstance(state, dict) and not _custom_pickling(cls) and (
                user_code or _plain_data(state)):
            desc: dict[str, Any] = {"object": _qualname(obj)}
            if user_code:
                desc["class"] = self.callable(cls, where, depth + 1)
            desc["state"] = self.describe(
                {k: v for k, v in state.items() if k not in DERIVED_ATTRIBUTES}, where, depth + 1)
            return desc
        return self._opaque(obj, where)

    def _opaque(self, obj: Any, where: str, why: str = "") -> dict:
        import cloudpickle

        name = _qualname(obj)
        quiet = _quiet_description(obj, name)
        if quiet is not None:
            return quiet
        try:
            digest = sha256_bytes(cloudpickle.dumps(obj))
        except Exception as err:  # cannot even be pickled: its type is all there is
            how = f"by its type only (it cannot be pickled: {type(err).__name__})"
            self._note(where, name, how)
            return {"opaque": name, "unpicklable": True}
        self._note(where, name, "by a digest of its pickled state" + (f" ({why})" if why else ""))
        return {"opaque": name, "pickle_sha256": digest}

    def _note(self, where: str, name: str, how: str) -> None:
        self.opaque.append({"where": where.lstrip("."), "type": name, "how": how})

    # -- modules and code -------------------------------------------------------------------
    def module(self, mod: types.ModuleType) -> dict:
        """A module by its installed distribution and version; the digest of its source
        too when it is not installed from a wheel (editable, or a script's own module)."""
        name = mod.__name__
        code = installed_code(name)
        desc: dict[str, Any] = {"module": name, **self._installed(code or {})}
        if code is not None and not code.get("editable"):
            return desc
        path = getattr(mod, "__file__", None)
        if path and os.path.isfile(path):
            with open(path, "rb") as fd:
                desc["source_sha256"] = sha256_bytes(fd.read())[:16]
        return desc

    def callable(self, func: Any, where: str = "", depth: int = 0,
                 declared: bool = False) -> dict:
        """Describe a function, method, class or partial (see the module docstring).

        declared: its author declares a version for what it computes (an operation, a
        registered calculator or fitter); installed in editable mode, its source is then a
        fact instead of deciding reuse.
        """
        if isinstance(func, functools.partial):
            return {"partial": self.callable(func.func, where, depth + 1),
                    "args": self.describe(list(func.args), f"{where}.args", depth + 1),
                    "kwargs": self.describe(dict(func.keywords), f"{where}.kwargs", depth + 1)}
        if inspect.ismethod(func):
            return {"method": self.callable(func.__func__, where, depth + 1),
                    "self": self.describe(func.__self__, f"{where}.__self__", depth + 1)}
        target: Any = inspect.unwrap(func) if not inspect.isclass(func) else func
        module = getattr(target, "__module__", None)
        qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
        desc: dict[str, Any] = {"callable": f"{module}.{qualname}"}
        code = installed_code(module) if module else {"builtin": True}
        if code is not None:
            desc.update(self._installed(code))
            if code.get("editable"):  # its version does not follow edits: add its source
                digest = _source_digest(target)
                if declared:
                    desc.pop("editable")
                    if digest:
                        self.facts["sources"][desc["callable"]] = digest
                elif digest:
                    desc["source_sha256"] = digest
            return desc
        digest = _source_digest(target)
        if digest:
            desc["source_sha256"] = digest
        if inspect.isclass(target):
            functions = _class_functions(target)
        elif inspect.isfunction(target):
            functions = [target]
            if target.__defaults__:
                desc["defaults"] = self.describe(list(target.__defaults__),
                                                 f"{where}.defaults", depth + 1)
            if target.__kwdefaults__:
                desc["kwdefaults"] = self.describe(dict(target.__kwdefaults__),
                                                   f"{where}.kwdefaults", depth + 1)
        else:
            functions = []
        uses: dict[str, Any] = {}
        for function in functions:
            for key, value in self._reads(function, where, depth).items():
                uses.setdefault(key, value)
        if uses:
            desc["uses"] = uses
        return desc

    def _reads(self, func: types.FunctionType, where: str, depth: int) -> dict:
        """Descriptions of the values *func* reads from outside its body."""
        code = func.__code__
        closure = {}
        for name, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                closure[name] = cell.cell_contents
            except ValueError:  # an empty cell (a name bound later)
                closure[name] = _UNBOUND
        out: dict[str, Any] = {}
        for kind, root, attrs in sorted(_references(code, frozenset(code.co_freevars))):
            if kind == "env":
                if root == "*":
                    self._note(f"{where}.uses[env]", f"{func.__module__}.{func.__qualname__}",
                               "reads environment variables by names wflp cannot see; "
                               "their values are not part of the record (pass them as "
                               "parameters, or read them by literal names)")
                    out["env:*"] = "<names not known>"
                else:
                    out[f"env:{root}"] = _environment_value(root)
                continue
            if kind == "nonlocal":
                obj = closure.get(root, _UNBOUND)
            elif kind == "import":
                obj = _import(root)
            elif root in func.__globals__:
                obj = func.__globals__[root]
            elif hasattr(builtins, root):
                continue  # builtins: part of the Python version
            else:
                obj = _UNBOUND
            obj, used = _follow(obj, attrs)
            key = f"{kind}:{root}" + "".join(f".{a}" for a in used)
            if obj is _UNBOUND:
                out[key] = "<unbound>"
            else:
                out[key] = self.describe(obj, f"{where}.uses[{key}]", depth + 1)
        return out

    # -- calculators --------------------------------------------------------------------------
    def calculator(self, calc: Any, where: str = "", depth: int = 0) -> dict:
        """An ASE calculator by class, parameters and configuring attributes."""
        cls = type(calc)
        desc: dict[str, Any] = {"calculator": f"{cls.__module__}.{cls.__qualname__}"}
        code = installed_code(cls.__module__)
        if code is not None and not code.get("editable"):
            desc.update(self._installed(code))
        else:
            desc["class"] = self.callable(cls, f"{where}.class", depth + 1)
        params = getattr(calc, "parameters", None) or {}
        desc["parameters"] = self.describe(dict(params), f"{where}.parameters", depth + 1)
        declared = getattr(calc, RESULT_VERSION, None)
        if declared is not None and str(declared) != "1":
            desc["result_version"] = str(declared)
        attributes = calculator_attributes(calc)
        if attributes:
            desc["attributes"] = {k: self.describe(v, f"{where}.{k}", depth + 1)
                                  for k, v in sorted(attributes.items())}
        return desc


class _Unbound:
    def __repr__(self) -> str:
        return "<unbound>"


_UNBOUND = _Unbound()


# objects that hold no state deciding what a computation gives: described without a note
_STATELESS = frozenset({"_thread.lock", "_thread.RLock", "threading.Event", "threading.Condition",
                        "threading.Semaphore", "threading.BoundedSemaphore", "_io.TextIOWrapper",
                        "_io.BufferedWriter", "_io.BufferedReader", "_io.FileIO",
                        "_thread._local", "threading.local"})


def _quiet_description(obj: Any, name: str) -> Optional[dict]:
    if obj is os.environ:  # the variables read are described by name (see _reads)
        return {"object": "os.environ"}
    if isinstance(obj, logging.Logger):
        return {"logger": obj.name}
    if isinstance(obj, re.Pattern):
        return {"regex": obj.pattern, "flags": obj.flags}
    if name in _STATELESS:
        return {"object": name}
    return None


def _describe_array(arr: np.ndarray) -> dict:
    if arr.size <= SMALL_ARRAY and arr.dtype.kind in "biuf":
        return {"array": arr.tolist(), "dtype": arr.dtype.str}
    return {"array_sha256": sha256_bytes(np.ascontiguousarray(arr).tobytes()),
            "shape": list(arr.shape), "dtype": arr.dtype.str}


def _is_calculator(obj: Any) -> bool:
    try:
        from ase.calculators.calculator import BaseCalculator
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, BaseCalculator)


def _custom_pickling(cls: type) -> bool:
    """True if the class pickles through its own __reduce__/__getstate__: its state is
    then not (only) its attributes (random.Random keeps it in C)."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        if any(name in vars(klass) for name in ("__reduce__", "__reduce_ex__", "__getstate__")):
            return True
    return False


def _plain_data(value: Any, depth: int = 0) -> bool:
    """True for numbers, strings, paths, arrays, calculators and containers of them."""
    if depth > 6:
        return False
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic,
                                           np.ndarray, os.PathLike, enum.Enum)):
        return True
    if _is_calculator(value):
        return True
    if isinstance(value, dict):
        return all(_plain_data(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_plain_data(v, depth + 1) for v in value)
    return False


@functools.lru_cache(maxsize=4096)
def _source_digest(target: Any) -> Optional[str]:
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        return _code_digest(code) if code is not None else None
    return sha256_bytes(source.encode())[:16]


def _code_digest(code: types.CodeType) -> str:
    """A digest of compiled code that is stable between runs (no object addresses)."""
    h = hashlib.sha256()

    def visit(c: types.CodeType) -> None:
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                visit(const)
            else:
                h.update(repr(const).encode())

    visit(code)
    return h.hexdigest()[:16]


def _class_functions(cls: type) -> list:
    out = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
        if inspect.isfunction(value):
            out.append(value)
    return out


_LOADS = {"LOAD_GLOBAL": "global", "LOAD_NAME": "global", "LOAD_DEREF": "nonlocal",
          "LOAD_CLASSDEREF": "nonlocal"}
_ATTRS = ("LOAD_ATTR", "LOAD_METHOD")


@functools.lru_cache(maxsize=4096)
def _references(code: types.CodeType, outside: frozenset) -> frozenset:
    """(kind, name, attribute chain) for every name the code (and code nested in it)
    reads from outside: globals, closure cells in *outside*, and imported modules."""
    found: set = set()

    def visit(c: types.CodeType) -> None:
        chain: Optional[list] = None

        def flush() -> None:
            nonlocal chain
            if chain is not None:
                found.add((chain[0], chain[1], tuple(chain[2:])))
                chain = None

        environ: Optional[bool] = None  # after os.environ / os.getenv: the name read next
        for ins in dis.get_instructions(c):
            name = ins.opname
            if name in _ATTRS and chain is not None and isinstance(ins.argval, str):
                chain.append(ins.argval)
                continue
            if chain is not None and _reads_environment(chain):
                environ = True
            flush()
            if environ is not None:
                if name in ("PUSH_NULL", "PRECALL", "CACHE", "NOP"):
                    continue
                if name == "LOAD_CONST" and isinstance(ins.argval, str):
                    found.add(("env", ins.argval, ()))
                else:
                    found.add(("env", "*", ()))
                environ = None
            kind = _LOADS.get(name)
            if kind == "nonlocal" and ins.argval not in outside:
                continue  # a cell of an enclosing function in this code: a local
            if kind is not None and isinstance(ins.argval, str):
                chain = [kind, ins.argval]
            elif name == "IMPORT_NAME" and isinstance(ins.argval, str):
                chain = ["import", ins.argval]  # the whole module (user modules: by digest)
        flush()
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                visit(const)

    visit(code)
    return frozenset(found)


def _reads_environment(chain: list) -> bool:
    """True for os.environ, os.environ.get, os.getenv (and the names imported from os)."""
    kind, root, attrs = chain[0], chain[1], chain[2:]
    if kind not in ("global", "import"):
        return False
    path = [root, *attrs]
    if path[0] in ("environ", "getenv") and kind == "global":
        path = ["os", *path]
    return path[:2] in (["os", "environ"], ["os", "getenv"]) and \
        (len(path) == 2 or path[2:] in (["get"], ["__getitem__"]))


def _environment_value(name: str) -> Any:
    """A digest of an environment variable's value (values may be secrets)."""
    value = os.environ.get(name)
    return None if value is None else {"env_sha256": sha256_bytes(value.encode())[:16]}


def _import(name: str) -> Any:
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return importlib.import_module(name)
    except Exception:
        return _UNBOUND


def _follow(obj: Any, attrs: tuple) -> tuple[Any, list]:
    """Follow an attribute chain through the user's modules and classes; stop at installed
    code (described by its version) or at a value."""
    used: list = []
    for attr in attrs:
        if isinstance(obj, types.ModuleType):
            if installed_code(obj.__name__) is not None:
                break
        elif inspect.isclass(obj):
            if installed_code(obj.__module__) is not None or attr not in vars(obj):
                break
        else:
            break
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            break
        used.append(attr)
    return obj, used


@functools.lru_cache(maxsize=1024)
def _assigned(cls: type) -> Optional[tuple[frozenset, frozenset]]:
    """(attributes ``cls.__init__`` and the methods it calls assign to self, attributes
    its other methods assign: state computed while it runs); None if the source cannot
    be read."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return None
    body = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if body is None:
        return None
    methods = {n.name: n for n in body.body if isinstance(n, (ast.FunctionDef,
                                                             ast.AsyncFunctionDef))}

    def stores(method: ast.AST) -> tuple[set, set]:
        names, calls = set(), set()
        for node in ast.walk(method):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "self":
                if isinstance(node.ctx, ast.Store):
                    names.add(node.attr)
                elif node.attr in methods:
                    calls.add(node.attr)
        return names, calls

    init: set = set()
    todo, seen = ["__init__"], set()
    while todo:
        method = methods.get(todo.pop())
        if method is None or method.name in seen:
            continue
        seen.add(method.name)
        names, calls = stores(method)
        init |= names
        todo.extend(calls)
    other: set = set()
    for name, method in methods.items():
        if name not in seen:
            other |= stores(method)[0]
    return frozenset(init), frozenset(other)


def calculator_attributes(calc: Any) -> dict:
    """The attributes that configure *calc* beside its ``.parameters``.

    Every instance attribute counts (one set after construction, ``calc.shift = 2.0``,
    too) except ASE's bookkeeping and the state a calculator computes while it runs:
    attributes that only methods other than ``__init__`` assign, and those ASE's own
    classes assign (they keep their settings in ``parameters``, except composites
    ``calcs``/``weights``, mixers, and file-based ``command``/``profile``). A class whose
    source cannot be read counts all its attributes.
    """
    state = getattr(calc, "__dict__", {})
    names: set = {n for n in ASE_CALCULATOR_ATTRIBUTES if n in state}
    computed: set = set()
    configured: set = set()
    for klass in type(calc).__mro__:
        if klass is object:
            continue
        assigned = _assigned(klass)
        if assigned is None:
            if klass.__module__.split(".")[0] != "ase":
                configured.update(state)
            continue
        init, other = assigned
        if klass.__module__.split(".")[0] == "ase":
            computed |= init | other
        else:
            configured |= init
            computed |= other - init
    names |= configured | (set(state) - computed)
    return {n: state[n] for n in names if n in state and n not in CALCULATOR_BOOKKEEPING}


def canonical(obj: Any) -> Any:
    """The description of *obj* (see :class:`Describer`); opaque objects are not reported."""
    return Describer().describe(obj)


def describe_callable(func: Any) -> dict:
    """The description of a function, method, class or partial."""
    return Describer().callable(func)


def log_opaque(label: str, opaque: list[dict]) -> None:
    """Say once per process, for each opaque object, that it was not described by content."""
    for note in opaque:
        key = (label, note["where"], note["type"])
        if key in _logged_opaque:
            continue
        _logged_opaque.add(key)
        log.warning("%s: %s (a %s) cannot be described by its content; it is recorded %s, so "
                    "any change to it counts as a different computation (give it a "
                    "__wflp_provenance__() method, or pass plain values, to describe it "
                    "readably)", label, note["where"] or "a parameter", note["type"], note["how"])


__all__ = ["Describer", "calculator_attributes", "canonical", "canonical_json",
           "describe_callable", "log_opaque", "sha256_bytes"]
