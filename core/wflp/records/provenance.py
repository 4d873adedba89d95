"""Where code comes from: the installed distribution (and version) that provides a module.

Records name the distribution and version of every piece of installed code that
decides an output. Code that is not installed (the user's script, modules beside
it) and code installed in editable mode (whose version does not follow its
edits) is described by its source instead.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
from typing import Optional

if sys.version_info >= (3, 10):
    from importlib import metadata as _metadata
else:  # pragma: no cover
    import importlib_metadata as _metadata


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(_metadata.packages_distributions())


def _top_level_names(dist_name: str) -> set[str]:
    """Top-level import names a distribution provides (editable installs included)."""
    dist = _metadata.distribution(dist_name)
    names = set((dist.read_text("top_level.txt") or "").split())
    names.add(dist_name.replace("-", "_").lower())
    return names


@functools.cache
def is_editable(dist_name: str) -> bool:
    """True if the distribution is installed in editable (development) mode."""
    try:
        text = _metadata.distribution(dist_name).read_text("direct_url.json")
    except _metadata.PackageNotFoundError:
        return False
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except (ValueError, AttributeError):
        return False


def is_stdlib(module: str) -> bool:
    """True for modules of Python's standard library (and builtins)."""
    top = module.split(".")[0]
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return top in names or top in sys.builtin_module_names
    return top in sys.builtin_module_names  # pragma: no cover - Python 3.9


@functools.cache
def provider_of(module: str) -> dict:
    """{"distribution", "version"} of the installed distribution that provides *module*,
    or {"distribution": None, "module": module} for code that is not installed."""
    top = module.split(".")[0]
    if top in ("__main__", "__mp_main__") or not top:
        return {"distribution": None, "module": module}
    try:  # the common case, a package named like its distribution: no full metadata scan
        name = _metadata.distribution(top).metadata["Name"]
        if name and top in _top_level_names(name):
            return {"distribution": name, "version": _metadata.version(name)}
    except _metadata.PackageNotFoundError:
        pass
    dists = _packages_distributions().get(top, [])
    if not dists:
        return {"distribution": None, "module": module}
    name = dists[0]
    try:
        ver: Optional[str] = _metadata.version(name)
    except _metadata.PackageNotFoundError:  # pragma: no cover
        ver = None
    return {"distribution": name, "version": ver}


def installed_code(module: Optional[str]) -> Optional[dict]:
    """How code is described by where it is installed.

    {"distribution", "version"} for a module of an installed distribution (plus
    ``"editable": True`` for an editable install, whose version does not follow its
    edits: callers add a digest of the source), {"stdlib": True} for the standard
    library, and None for code that is not installed (scripts, modules beside them),
    which is described by its source and what it reads.
    """
    if not module:
        return None
    if is_stdlib(module):
        return {"stdlib": True}
    provider = provider_of(module)
    name = provider.get("distribution")
    if name is None:
        return None
    out = {"distribution": name, "version": provider.get("version")}
    if is_editable(name):
        out["editable"] = True
    return out


def host_info() -> dict:
    """Where a computation ran (not part of what decides reuse)."""
    return {"host": socket.gethostname(), "python": sys.version.split()[0], "pid": os.getpid()}


def distribution_version(name: str) -> Optional[str]:
    """The installed version of the distribution *name*; None if it is not installed."""
    try:
        return _metadata.version(name)
    except _metadata.PackageNotFoundError:
        return None


__all__ = ["distribution_version", "host_info", "installed_code", "is_editable", "is_stdlib",
           "provider_of"]
