"""Discovery, loading and lookup of wflp plugins: one layer over pluggy.

pluggy holds the hookspecs and the registered plugins (``self.pm``) and checks each
hook implementation against its spec. This module adds what pluggy does not do,
and nothing else:

- **Loading each entry point on its own** (group ``wflp``): one that fails to
  import, has a misspelled hook or clashes is recorded as failed with the reason
  (a ``PluginRecord``) while the others keep working; ``WFLP_STRICT_PLUGINS=1``
  makes that an error. ``WFLP_LOAD_PLUGINS`` is an allowlist of entry-point or
  distribution names (set but empty: no external plugins); the others are
  reported as disabled and never imported.
- **Calling hooks one plugin at a time** (``_call``). pluggy's own call,
  ``pm.hook.wflp_calculators()``, runs every implementation in one go: the first
  that raises (or calls sys.exit) aborts the call for all plugins, and the
  merged list of results does not say which plugin returned which spec. wflp needs
  both: a broken plugin must fail alone, and an error or a name clash must name
  the distribution to fix. So the manager takes each implementation from pluggy
  (``get_hookimpls()``) and calls it itself, as pluggy would (arguments by the
  names the implementation declares), catching what it raises.
- **Lazy registration**: the registration hooks run once, the first time
  something is looked up, and their specs are cached (``_registry``) until a
  plugin is registered or unregistered, so importing wflp or listing commands
  costs no plugin code.

What the kinds are (hooks, spec types) comes from ``wflp.plugins.kinds``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any, Optional

import pluggy

from ..engine.executor import Executor
from ..errors import PluginError, UnknownNameError
from . import hookspecs
from .kinds import KINDS, SPEC_TYPES, TABLE, find_kind
from .types import normalize_name

log = logging.getLogger("wflp")

ENTRY_POINT_GROUP = "wflp"
ENV_STRICT = "WFLP_STRICT_PLUGINS"
ENV_ALLOW = "WFLP_LOAD_PLUGINS"
BUILTIN_NAME = "wflp"

OK, FAILED, DISABLED = "ok", "failed", "disabled"
INCOMPATIBLE = "incompatible"  # made for another wflp (its Requires-Dist excludes this one)

_FROM_ENV: Any = object()  # sentinel: read the setting from the environment


# -- entry points ---------------------------------------------------------------------------

def iter_entry_points() -> list:
    """The installed entry points of group ``wflp``, each (name, value) once.

    Tests may replace this function (or pass ``entry_points=`` to the manager) with
    objects that have ``name``, ``value``, ``dist`` (with ``name`` and ``version``)
    and ``load()``.
    """
    if sys.version_info >= (3, 10):
        from importlib.metadata import entry_points
    else:  # pragma: no cover
        from importlib_metadata import entry_points
    seen: set = set()
    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = (ep.name, ep.value)
        if key not in seen:  # the same distribution found twice on sys.path
            seen.add(key)
            out.append(ep)
    return out


def _dist_of(ep: Any) -> tuple[Optional[str], Optional[str]]:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None), getattr(dist, "version", None)


def _canon(name: str) -> str:
    """Distribution/entry-point names compare like PyPI names: case and -_. ignored."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _env_strict() -> bool:
    return os.environ.get(ENV_STRICT, "").strip().lower() in ("1", "true", "yes", "on")


def _env_allowlist() -> Optional[frozenset]:
    value = os.environ.get(ENV_ALLOW)
    if value is None:
        return None
    return frozenset(_canon(v) for v in value.split(",") if v.strip())


def normalize_kind(kind: str, *, named: bool = True) -> str:
    """"calculator" or "calculators" (any case) -> "calculators"; unknown kinds raise.
    named=False also accepts the kinds that register no names (commands, panels)."""
    return find_kind(kind, named=named).name


# -- records --------------------------------------------------------------------------------

@dataclasses.dataclass
class PluginRecord:
    """What one plugin (usually one entry point of one distribution) contributed.

    status: "ok", "failed" (error says why), "incompatible" (made for another wflp: its
        requirement on wflp excludes this one; never imported) or "disabled" (not in
        WFLP_LOAD_PLUGINS).
    registered: {kind: [names]} of what it registered (empty unless ok); a kind that
        registers no names (commands, panels) is listed with [] when the plugin has its hook.
    error: why it failed, or problems of an ok plugin (e.g. a name clash).
    """

    plugin: str                        # its name in the plugin manager
    distribution: Optional[str]
    version: Optional[str]
    entry_point: Optional[str]         # "name = value" for discovered plugins
    status: str = OK
    error: Optional[str] = None
    registered: dict = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        """A short phrase naming the plugin, for messages."""
        if self.distribution and self.entry_point:
            return f"distribution {self.distribution!r} (entry point {self.entry_point!r})"
        if self.distribution:
            return f"distribution {self.distribution!r}"
        return f"plugin {self.plugin!r} (registered in code)"

    def to_dict(self) -> dict:
        """The record as a plain dict (``wflp list-plugins --json``)."""
        return dataclasses.asdict(self)


# -- the manager ----------------------------------------------------------------------------

class _PluggyManager(pluggy.PluginManager):
    """Also treats undecorated routines named ``wflp_*`` as hook implementations, so that
    a misspelled hook is reported even when its @hookimpl was forgotten."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("wflp_") and not inspect.isclass(plugin) \
                and inspect.isroutine(getattr(plugin, name, None)):
            return {}
        return opts


class WflpPluginManager:
    """Finds, loads and looks up wflp plugins.

    entry_points: None to discover installed plugins (group ``wflp``), or an
        iterable of entry-point-like objects (``()`` for none: builtins only).
    builtins: register wflp's own calculators, operations and executors.
    strict: raise PluginError on any plugin failure (default: $WFLP_STRICT_PLUGINS).
    allow: entry-point/distribution names allowed to load; None for all (default:
        $WFLP_LOAD_PLUGINS, unset meaning all).
    """

    def __init__(self, entry_points: Optional[Iterable[Any]] = None, *, builtins: bool = True,
                 strict: Optional[bool] = None, allow: Any = _FROM_ENV):
        self.pm = _PluggyManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._entry_points = entry_points
        self._builtins = builtins
        self._strict = strict
        self._allow = allow
        self._records: dict[str, PluginRecord] = {}
        self._loaded = False
        self._registry: Optional[dict] = None   # kind -> name -> (spec, plugin name)
        self._conflicts: dict = {}               # kind -> name -> [plugin names]
        self._lock = threading.RLock()

    # settings ---------------------------------------------------------------------------
    @property
    def strict(self) -> bool:
        """Whether a failing plugin raises: as given, else $WFLP_STRICT_PLUGINS."""
        return _env_strict() if self._strict is None else bool(self._strict)

    @property
    def allowlist(self) -> Optional[frozenset]:
        """The entry-point or distribution names allowed to load (None: all); as given,
        else $WFLP_LOAD_PLUGINS."""
        if self._allow is _FROM_ENV:
            return _env_allowlist()
        if self._allow is None:
            return None
        return frozenset(_canon(a) for a in self._allow)

    # loading ----------------------------------------------------------------------------
    def load(self) -> WflpPluginManager:
        """Register the builtins and load every allowed entry point (once)."""
        with self._lock:
            if self._loaded:
                return self
            try:
                if self._builtins:
                    from .. import __version__
                    from . import builtin

                    self._register(builtin, BUILTIN_NAME, PluginRecord(
                        BUILTIN_NAME, "wflp", __version__, None))
                eps = iter_entry_points() if self._entry_points is None else self._entry_points
                allow = self.allowlist
                for ep in eps:
                    self._load_entry_point(ep, allow)
            except BaseException:
                # strict mode (or a bug): leave nothing half-loaded, so a retry starts afresh
                for name, _plugin in list(self.pm.list_name_plugin()):
                    self.pm.unregister(name=name)
                self._records.clear()
                raise
            self._loaded = True
            self._registry = None
        return self

    def _load_entry_point(self, ep: Any, allow: Optional[frozenset]) -> None:
        dist, version = _dist_of(ep)
        record = PluginRecord(ep.name, dist, version, f"{ep.name} = {ep.value}")
        if allow is not None and _canon(ep.name) not in allow and not (
                dist and _canon(dist) in allow):
            record.status = DISABLED
            record.error = f"not listed in ${ENV_ALLOW}"
            self._records[f"disabled:{ep.name}:{dist}"] = record
            return
        if self.pm.has_plugin(ep.name) or ep.name in self._records:
            other = self._records.get(ep.name)
            self._fail(record, f"another plugin ({other.describe() if other else ep.name}) "
                       f"already uses the entry-point name {ep.name!r}; entry-point names in "
                       f"group {ENTRY_POINT_GROUP!r} must be unique", key=f"{ep.name}:{dist}")
            return
        problem = _incompatibility(ep, dist)
        if problem:
            self._fail(record, problem, status=INCOMPATIBLE)
            return
        try:
            plugin = ep.load()
            if inspect.isclass(plugin):
                plugin = plugin()
        except (Exception, SystemExit, KeyboardInterrupt) as err:
            # a plugin must not end the process: sys.exit() or an interrupt in its import
            # fails that plugin alone, like any other exception
            reason = (_why(err, "its import") if isinstance(err, (SystemExit, KeyboardInterrupt))
                      else f"{type(err).__name__}: {err}")
            self._fail(record, f"cannot load {ep.value!r}: {reason}", cause=err)
            return
        try:
            self._register(plugin, ep.name, record)
        except PluginError as err:
            self._fail(record, str(err), cause=err)

    def _register(self, plugin: Any, name: str, record: PluginRecord) -> None:
        """Register *plugin* under *name*; PluginError (and nothing registered) if invalid."""
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as err:
            raise PluginError(f"invalid hook implementation: {err}") from err
        except ValueError as err:  # the same object under two names
            raise PluginError(f"cannot register it: {err}") from err
        unknown = [hc.name for hc in self.pm.get_hookcallers(plugin) or []
                   if not hc.has_spec()]
        if unknown:
            self.pm.unregister(plugin)
            raise PluginError(
                f"unknown hook(s) {', '.join(unknown)}; the hooks are "
                f"{', '.join(k.hook for k in TABLE)} (check the spelling)"
            )
        record.status = OK
        self._records[name] = record
        self._registry = None

    def _fail(self, record: PluginRecord, reason: str, cause: Optional[BaseException] = None,
              key: Optional[str] = None, status: str = FAILED) -> None:
        """Record *record* as failed or incompatible (unregistering it), or raise
        PluginError if strict."""
        what = "is incompatible" if status == INCOMPATIBLE else "failed to load"
        message = f"wflp plugin {record.describe()} {what}: {reason}"
        if self.strict:  # raise before changing anything: the next attempt raises again
            raise PluginError(
                f"{message}. Fix or uninstall it (or unset ${ENV_STRICT} to skip failing "
                "plugins)"
            ) from cause
        record.status = status
        record.error = reason
        record.registered = {}
        self._records[key or record.plugin] = record
        if self.pm.has_plugin(record.plugin) and self._records.get(record.plugin) is record:
            self.pm.unregister(name=record.plugin)
        log.warning("%s; it is skipped (set %s=1 to make this an error)", message, ENV_STRICT)

    # explicit registration ----------------------------------------------------------------
    def register_plugin(self, plugin: Any, name: Optional[str] = None, *,
                        distribution: Optional[str] = None,
                        version: Optional[str] = None) -> str:
        """Register a plugin object or module in code; returns its name.

        Unlike a discovered plugin, an invalid one raises PluginError at once.
        """
        with self._lock:
            self.load()
            if name is None:
                name = getattr(plugin, "__name__", None) or type(plugin).__name__
            if self.pm.has_plugin(name) or name in self._records:
                raise PluginError(f"a plugin named {name!r} is already registered; pass "
                                  "another name=")
            self._register(plugin, name, PluginRecord(name, distribution, version, None))
            return name

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin (registered or failed) by name."""
        with self._lock:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._records.pop(name, None)
            self._registry = None

    # collecting registrations ---------------------------------------------------------------
    def _collect_plugin(self, plugin: Any) -> dict:
        """Call each registration hook of one plugin: {kind: [specs]}, with an empty list
        for each kind it only contributes to (commands, panels: called when needed);
        PluginError if anything is wrong."""
        found: dict = {}
        for kind in TABLE:
            for impl in getattr(self.pm.hook, kind.hook).get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if kind.named:
                    found.setdefault(kind.name, []).extend(
                        _check_result(kind.name, _call(impl, kind.hook)))
                else:
                    _refuse_wrapper(impl, kind.hook)
                    found.setdefault(kind.name, [])
        for kind, specs in found.items():
            names = [s.name for s in specs]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise PluginError(f"its hook wflp_{kind}() registers {dup[0]!r} more than once")
        return found

    def _get_registry(self) -> dict:
        with self._lock:
            self.load()
            if self._registry is not None:
                return self._registry
            owners: dict = {kind: {} for kind in KINDS}
            for name, plugin in list(self.pm.list_name_plugin()):
                record = self._records.get(name)
                if record is None or record.status != OK:
                    continue
                record.error = None
                try:
                    found = self._collect_plugin(plugin)
                except PluginError as err:
                    self._fail(record, str(err), cause=err.__cause__ or err)
                    continue
                record.registered = {k: sorted(s.name for s in v) for k, v in found.items()}
                for kind, specs in found.items():
                    for spec in specs:
                        owners[kind].setdefault(spec.name, []).append((spec, name))
            registry: dict = {kind: {} for kind in KINDS}
            conflicts: dict = {kind: {} for kind in KINDS}
            for kind, by_name in owners.items():
                for spec_name, entries in by_name.items():
                    if len(entries) == 1:
                        registry[kind][spec_name] = entries[0]
                        continue
                    plugins = [p for _s, p in entries]
                    conflicts[kind][spec_name] = plugins
                    message = self._conflict_message(kind, spec_name, plugins)
                    for p in plugins:
                        rec = self._records[p]
                        rec.error = f"{rec.error}; {message}" if rec.error else message
                    if self.strict:
                        raise PluginError(message)
                    log.warning("%s", message)
            self._registry = registry
            self._conflicts = conflicts
            return registry

    def _conflict_message(self, kind: str, name: str, plugins: list) -> str:
        who = " and ".join(self._records[p].describe() for p in plugins)
        return (f"{kind[:-1]} {name!r} is registered by more than one plugin: {who}; "
                f"uninstall one of them, or leave one out with ${ENV_ALLOW}")

    # lookups ----------------------------------------------------------------------------
    def get_spec(self, kind: str, name: str) -> Any:
        """The spec registered as *name* for *kind* ("calculator(s)", "executor(s)" ...)."""
        kind = normalize_kind(kind)
        registry = self._get_registry()
        try:
            norm = normalize_name(name)
        except PluginError:  # not a valid name: not registered either
            raise UnknownNameError(self._unknown_message(kind, name)) from None
        if norm in self._conflicts.get(kind, {}):
            raise PluginError(self._conflict_message(kind, norm, self._conflicts[kind][norm]))
        entry = registry[kind].get(norm)
        if entry is None:
            raise UnknownNameError(self._unknown_message(kind, name))
        return entry[0]

    def provider(self, kind: str, name: str) -> PluginRecord:
        """The record of the plugin that registered *name* for *kind*."""
        kind = normalize_kind(kind)
        self.get_spec(kind, name)
        return self._records[self._get_registry()[kind][normalize_name(name)][1]]

    def list_specs(self, kind: str) -> list:
        """Every spec of *kind*, sorted by name (names claimed by two plugins left out)."""
        kind = normalize_kind(kind)
        registry = self._get_registry()
        return [registry[kind][n][0] for n in sorted(registry[kind])]

    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every plugin's implementation of a hook that registers no names
        (``wflp_panels(output=..., record=...)``, ``wflp_commands(cli=...)``) on its own:
        [(plugin name, what it returned)], in pluggy's order. A plugin whose hook raises is
        logged and left out (PluginError naming it in strict mode); the others still run.
        """
        kind = find_kind(hook[len("wflp_"):] if hook.startswith("wflp_") else hook,
                         named=False)
        if kind.named:
            raise PluginError(f"{kind.hook} registers names: look them up with "
                              f"get_spec({kind.name!r}, name) or list_specs({kind.name!r})")
        with self._lock:
            self.load()
            impls = getattr(self.pm.hook, kind.hook).get_hookimpls()
        out = []
        for impl in reversed(impls):  # pluggy calls the last registered first
            name = str(self.pm.get_name(impl.plugin))
            try:
                out.append((name, _call(impl, kind.hook, f"its hook {kind.hook}", **kwargs)))
            except PluginError as err:
                record = self._records.get(name)
                who = record.describe() if record else f"plugin {name!r}"
                if self.strict:
                    raise PluginError(f"{who}: {err}") from err.__cause__
                log.warning("%s: %s; what it adds is left out", who, err)
        return out

    def add_commands(self, cli: Any) -> list[str]:
        """Let every plugin add commands to the click group *cli* (the wflp_commands hook);
        returns the names added. A plugin whose hook raises is reported, the rest work."""
        with self._lock:
            before = set(getattr(cli, "commands", {}))
            self.call_each("wflp_commands", cli=cli)
            return sorted(set(getattr(cli, "commands", {})) - before)

    def get_executor(self, name: str, **options: Any) -> Executor:
        """A new executor instance: the registered factory called with *options*."""
        spec = self.get_spec("executors", name)
        executor = spec.load()(**options)
        if not isinstance(executor, Executor):
            raise PluginError(
                f"executor {spec.name!r} from {self.provider('executors', name).describe()} "
                f"returned {type(executor).__name__}, which is not a wflp.exec.Executor (a "
                "subclass that implements map_chunks(tasks, autopara_info)); fix the "
                "plugin's factory"
            )
        return executor

    def report(self) -> list[PluginRecord]:
        """One record per plugin (builtins first): status, error and what it registered."""
        with self._lock:
            self._get_registry()
            return [dataclasses.replace(r, registered={k: list(v) for k, v in
                                                       r.registered.items()})
                    for r in self._records.values()]

    def _unknown_message(self, kind: str, name: Any) -> str:
        label = kind[:-1]
        available = sorted(self._registry[kind]) if self._registry else []
        parts = [f"no {label} named {name!r} is registered",
                 f"available {kind}: {', '.join(available) if available else '(none)'}"]
        failed = [r for r in self._records.values() if r.status in (FAILED, INCOMPATIBLE)]
        if failed:
            parts.append("plugins that failed to load: " + "; ".join(
                f"{r.describe()}: {r.error}" for r in failed))
        disabled = [r for r in self._records.values() if r.status == DISABLED]
        if disabled:
            parts.append(f"plugins disabled by ${ENV_ALLOW}: " + ", ".join(
                r.distribution or r.plugin for r in disabled))
        hint = re.sub(r"[_\s]+", "-", str(name).strip().lower()) or "NAME"
        parts.append(f"if a plugin provides it, install it (e.g. `pip install wflp-{hint}`) "
                     "and check `wflp list-plugins`")
        return "; ".join(parts)


def _refuse_wrapper(impl: Any, hook: str) -> None:
    """wflp calls each implementation on its own, so a hook wrapper has nothing to wrap."""
    if impl.hookwrapper or getattr(impl, "wrapper", False):
        raise PluginError(f"{hook} is a hook wrapper; wflp's hooks must be plain @hookimpl "
                          "functions")


def _call(impl: Any, hook: str, what: Optional[str] = None, **kwargs: Any) -> Any:
    """Call one plugin's implementation of *hook* as pluggy would (its declared arguments
    by name), turning whatever it raises, sys.exit() and KeyboardInterrupt included, into
    PluginError saying why (*what* names the call, default "its hook HOOK()")."""
    _refuse_wrapper(impl, hook)
    try:
        return impl.function(*(kwargs[name] for name in impl.argnames))
    except (Exception, SystemExit, KeyboardInterrupt) as err:
        raise PluginError(_why(err, what or f"its hook {hook}()")) from err


def _incompatibility(ep: Any, dist: Optional[str]) -> Optional[str]:
    """Why the distribution of *ep* is not for this wflp (see compat.py), or None."""
    from .. import __version__
    from .compat import incompatibility, requires_of

    return incompatibility(dist or ep.name, requires_of(getattr(ep, "dist", None)),
                           __version__)


def _why(err: BaseException, what: str) -> str:
    """Why *what* (a plugin's import or hook) failed, in words; an exit or an interrupt
    is named as such, so that it is not taken for the engine's own interruption."""
    if isinstance(err, SystemExit):
        return (f"{what} called sys.exit({err.code!r}); a plugin must not exit the process: "
                "fix or uninstall it")
    if isinstance(err, KeyboardInterrupt):
        return (f"{what} was interrupted (KeyboardInterrupt): if you pressed Ctrl-C while "
                "plugins were loading, run the command again; otherwise the plugin raises "
                "KeyboardInterrupt itself: fix or uninstall it")
    return f"{what} raised {type(err).__name__}: {err}"


def _check_result(kind: str, result: Any) -> list:
    """The specs a hook returned, checked to be of the right type."""
    cls = SPEC_TYPES[kind]
    if result is None or isinstance(result, (str, bytes, dict)) or not isinstance(
            result, Iterable):
        raise PluginError(
            f"its hook wflp_{kind}() returned {type(result).__name__}; it must return a "
            f"list of {cls.__name__} (an empty list to register nothing)"
        )
    specs = list(result)
    for spec in specs:
        if not isinstance(spec, cls):
            raise PluginError(
                f"its hook wflp_{kind}() returned a {type(spec).__name__}; it must return "
                f"{cls.__name__} objects"
            )
    return specs
