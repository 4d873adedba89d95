"""Records: what made an output, so that reuse is decided by content, not by a file existing.

A record is a small JSON document written beside each file-backed output
(``<output>.record.json``). It names the operation and the code that provided
it, the canonical parameters (readable, and hashed), a content fingerprint of
the inputs, and when and where it ran. A rerun whose new record matches the
stored one (on the fields in IDENTITY_FIELDS) reuses the output; any other
difference is an error naming the fields.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import hashlib
import inspect
import json
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from .errors import RecordMismatchError

RECORD_SUFFIX = ".record.json"
RECORD_FORMAT = 1
# The fields that decide whether a stored output may be reused.
IDENTITY_FIELDS = ("operation", "operation_version", "provider", "parameters_sha256",
                   "inputs_sha256", "output_format")
_SMALL_ARRAY = 64


def record_path(output: os.PathLike | str) -> Path:
    """The record sidecar of an output file."""
    p = Path(output)
    return p.with_name(p.name + RECORD_SUFFIX)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: os.PathLike | str, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fd:
        while True:
            chunk = fd.read(block)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of an already-canonical object."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


# -- canonical form of parameters ---------------------------------------------------------

@functools.cache
def _source_digest(func) -> str | None:
    try:
        return sha256_bytes(inspect.getsource(func).encode())[:16]
    except (OSError, TypeError):
        return None


_MAX_DEPTH = 3


def _outside_values(func: Any, depth: int) -> dict | None:
    """The values a function reads from outside its body (closure cells and globals).

    They change what the function computes as much as its source does: a lambda
    using a threshold from the enclosing scope must not be reused after the
    threshold changed. Modules are named, other functions described in turn.
    """
    try:
        found = inspect.getclosurevars(func)
    except (TypeError, ValueError):
        return None
    values = {}
    for kind, mapping in (("nonlocal", found.nonlocals), ("global", found.globals)):
        for name, value in mapping.items():
            if inspect.ismodule(value):
                values[f"{kind}:{name}"] = {"module": value.__name__}
                continue
            if not _value_like(value):
                # live objects (loggers, pools, files) have no stable state worth comparing
                values[f"{kind}:{name}"] = {"object": type(value).__qualname__}
                continue
            try:
                values[f"{kind}:{name}"] = canonical(value, depth + 1)
            except Exception as err:  # an object that cannot be described: say so
                values[f"{kind}:{name}"] = {"undescribed": type(value).__qualname__,
                                            "error": type(err).__name__}
    return values or None


def _value_like(value: Any) -> bool:
    """Plain data, functions and calculators: things whose description is stable."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic,
                                           np.ndarray, Atoms, list, tuple, dict, set,
                                           frozenset, slice, os.PathLike, enum.Enum)):
        return True
    if inspect.isroutine(value) or inspect.isclass(value) or isinstance(value, functools.partial):
        return True
    if dataclasses.is_dataclass(value):
        return True
    try:
        from ase.calculators.calculator import BaseCalculator
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, BaseCalculator)


def describe_callable(func: Any, depth: int = 0) -> dict:
    """Identify a function by where it lives, a digest of its source, and the values
    it reads from closures and globals.

    Editing the function's body, or a value it uses, changes the description, so an
    output made by the old code is not silently reused.
    """
    target = inspect.unwrap(func) if callable(func) else func
    module = getattr(target, "__module__", "?")
    desc: dict[str, Any] = {"callable": f"{module}.{getattr(target, '__qualname__', repr(target))}"}
    digest = None
    if inspect.isroutine(target) or inspect.isclass(target):
        digest = _source_digest(target)
    if digest is None and inspect.isroutine(target):
        code = getattr(target, "__code__", None)
        if code is not None:
            digest = sha256_bytes(code.co_code + repr(code.co_consts).encode())[:16]
    if digest:
        desc["source_sha256"] = digest
    if inspect.isfunction(target) and depth < _MAX_DEPTH:
        outside = _outside_values(target, depth)
        if outside:
            desc["uses"] = outside
    if isinstance(func, functools.partial):
        desc = {"partial": describe_callable(func.func, depth),
                "args": canonical(list(func.args), depth),
                "kwargs": canonical(func.keywords, depth)}
    return desc


def canonical(obj: Any, depth: int = 0) -> Any:
    """A JSON-able, deterministic description of a parameter value.

    ASE calculators are described by class and parameters (never by identity);
    functions by module, name and a source digest; arrays by value when small and
    by digest when large.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else repr(f)
    if isinstance(obj, complex):
        return {"complex": [obj.real, obj.imag]}
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__qualname__}.{obj.name}"
    if isinstance(obj, (os.PathLike,)):
        return os.fspath(obj)
    if isinstance(obj, np.ndarray):
        if obj.size <= _SMALL_ARRAY and obj.dtype.kind in "biuf":
            return {"array": obj.tolist(), "dtype": str(obj.dtype)}
        return {"array_sha256": sha256_bytes(np.ascontiguousarray(obj).tobytes()),
                "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: str(kv[0]))
        return {str(k): canonical(v, depth) for k, v in items}
    if isinstance(obj, (list, tuple)):
        return [canonical(x, depth) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((canonical(x, depth) for x in obj), key=canonical_json)
    if isinstance(obj, Atoms):
        return {"atoms_sha256": atoms_digest(obj)}
    if isinstance(obj, slice):
        return {"slice": [obj.start, obj.stop, obj.step]}
    try:
        from ase.calculators.calculator import BaseCalculator
    except ImportError:  # pragma: no cover
        BaseCalculator = ()  # type: ignore[assignment]
    if isinstance(obj, BaseCalculator):
        cls = type(obj)
        params = getattr(obj, "parameters", {}) or {}
        return {"calculator": f"{cls.__module__}.{cls.__qualname__}",
                "parameters": canonical(dict(params))}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        return {"dataclass": f"{cls.__module__}.{cls.__qualname__}",
                "fields": canonical({f.name: getattr(obj, f.name)
                                     for f in dataclasses.fields(obj)})}
    if callable(obj) and (inspect.isroutine(obj) or inspect.isclass(obj)
                          or isinstance(obj, functools.partial)):
        return describe_callable(obj, depth)
    if hasattr(obj, "todict") and callable(obj.todict):
        cls = type(obj)
        return {"object": f"{cls.__module__}.{cls.__qualname__}", "state": canonical(obj.todict())}
    # last resort: the pickled state; stable for plain objects
    import cloudpickle

    cls = type(obj)
    try:
        state = vars(obj)
        return {"object": f"{cls.__module__}.{cls.__qualname__}", "state": canonical(state)}
    except TypeError:
        return {"object": f"{cls.__module__}.{cls.__qualname__}",
                "pickle_sha256": sha256_bytes(cloudpickle.dumps(obj))}


def parameters_digest(params: Any) -> str:
    return sha256_bytes(canonical_json(params).encode())


# -- content fingerprints of inputs -----------------------------------------------------

def atoms_digest(atoms: Atoms) -> str:
    """A digest of everything that defines a configuration's content."""
    h = hashlib.sha256()
    _update_atoms(h, atoms)
    return h.hexdigest()


def _update_atoms(h, atoms: Atoms) -> None:
    h.update(b"atoms")
    arrays = atoms.arrays
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(arr.dtype.str.encode())  # '<f8': str(dtype) costs 2.7 us
        h.update(arr.tobytes())
    h.update(np.ascontiguousarray(atoms.cell.array).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
    h.update(canonical_json(canonical(atoms.info)).encode() if atoms.info else b"{}")
    if atoms.constraints:
        h.update(canonical_json(canonical([c.todict() for c in atoms.constraints])).encode())
    calc = atoms.calc
    if calc is not None and getattr(calc, "results", None):
        h.update(canonical_json(canonical(calc.results)).encode())


class InputFingerprint:
    """Accumulates a content fingerprint over a ConfigSet without holding it in memory."""

    def __init__(self):
        self._h = hashlib.sha256()
        self.count = 0

    def add_file(self, path: Path, format: str, read_kwargs: dict) -> None:
        self._h.update(b"file")
        self._h.update(sha256_file(path).encode())
        self._h.update(canonical_json([format, canonical(read_kwargs)]).encode())

    def add_item(self, loc: tuple, item: Any) -> None:
        self.count += 1
        self._h.update(repr(loc).encode())
        if isinstance(item, Atoms):
            _update_atoms(self._h, item)
        else:
            self._h.update(canonical_json(canonical(item)).encode())

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def fingerprint_configset(cs) -> tuple[str, int | None]:
    """(sha256, item count or None) of a ConfigSet's content.

    File-backed groups are fingerprinted by their bytes (fast, no parsing);
    in-memory items by their content.
    """
    from .configset import FileGroup

    fp = InputFingerprint()
    count: int | None = 0

    def visit(node, loc):
        nonlocal count
        if isinstance(node, FileGroup):
            if not node.path.is_file():
                from .configset import missing_file_message
                from .errors import InputError

                raise InputError(missing_file_message(node.path))
            fp.add_file(node.path, node.format, {"index": canonical(node.index),
                                                 **node.read_kwargs})
            count = None
        elif isinstance(node, list):
            fp._h.update(b"[")
            for i, child in enumerate(node):
                visit(child, loc + (i,))
            fp._h.update(b"]")
        else:
            fp.add_item(loc, node)
            if count is not None:
                count += 1

    visit(cs._root, ())
    return fp.hexdigest(), count


# -- provenance of the code -----------------------------------------------------------

@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    if sys.version_info >= (3, 10):
        from importlib.metadata import packages_distributions
    else:  # pragma: no cover
        from importlib_metadata import packages_distributions
    return dict(packages_distributions())


def _top_level_names(dist_name: str) -> set[str]:
    """Top-level import names a distribution provides (editable installs included)."""
    if sys.version_info >= (3, 10):
        from importlib.metadata import distribution
    else:  # pragma: no cover
        from importlib_metadata import distribution
    dist = distribution(dist_name)
    names = set((dist.read_text("top_level.txt") or "").split())
    names.add(dist_name.replace("-", "_").lower())
    return names


@functools.cache
def provider_of(module: str) -> dict:
    """The installed distribution (name, version) that provides a module."""
    if sys.version_info >= (3, 10):
        from importlib.metadata import PackageNotFoundError, distribution, version
    else:  # pragma: no cover
        from importlib_metadata import PackageNotFoundError, distribution, version
    top = module.split(".")[0]
    if top == "__main__":
        return {"distribution": None, "module": module}
    try:  # the common case, a package named like its distribution: no full metadata scan
        name = distribution(top).metadata["Name"]
        if name and top in _top_level_names(name):
            return {"distribution": name, "version": version(name)}
    except PackageNotFoundError:
        pass
    dists = _packages_distributions().get(top, [])
    if not dists:
        return {"distribution": None, "module": module}
    name = dists[0]
    try:
        ver = version(name)
    except PackageNotFoundError:  # pragma: no cover
        ver = None
    return {"distribution": name, "version": ver}


def host_info() -> dict:
    return {"host": socket.gethostname(), "python": sys.version.split()[0], "pid": os.getpid()}


# -- reading, writing and comparing -----------------------------------------------------

def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fd:
        json.dump(data, fd, indent=2, sort_keys=True)
        fd.write("\n")
        fd.flush()
        os.fsync(fd.fileno())
    os.replace(tmp, path)


def read_record(path: Path) -> dict | None:
    try:
        with open(path) as fd:
            return json.load(fd)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise RecordMismatchError(
            f"the record {str(path)!r} cannot be read ({err}); delete it together with its "
            "output, or pass overwrite=True to recompute"
        ) from None


def differences(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Identity fields whose values differ, with readable detail for parameters."""
    diff: dict[str, tuple[Any, Any]] = {}
    for field in IDENTITY_FIELDS:
        if old.get(field) != new.get(field):
            if field == "parameters_sha256":
                diff.update(_param_diff(old.get("parameters", {}), new.get("parameters", {})))
                if not any(k.startswith("parameters") for k in diff):
                    diff["parameters"] = ("<hash " + str(old.get(field))[:12] + ">",
                                          "<hash " + str(new.get(field))[:12] + ">")
            else:
                diff[field] = (old.get(field), new.get(field))
    return diff


def _param_diff(old: Any, new: Any, prefix: str = "parameters") -> dict:
    if isinstance(old, dict) and isinstance(new, dict):
        out = {}
        for key in sorted(set(old) | set(new)):
            out.update(_param_diff(old.get(key, "<absent>"), new.get(key, "<absent>"),
                                   f"{prefix}.{key}"))
        return out
    return {} if old == new else {prefix: (old, new)}


def mismatch_error(where: str, diff: dict, outputs: list) -> RecordMismatchError:
    shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, b, a in
                      ((k, v[1], v[0]) for k, v in diff.items()))
    names = ", ".join(str(o) for o in outputs)
    return RecordMismatchError(
        f"{where} {names} was made by a different computation ({shown}); to recompute "
        "and replace it pass overwrite=True (OutputSpec(..., overwrite=True)), or "
        "write to another output name",
        differences=diff,
    )


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
