"""pytest fixtures for testing wflp plugins and workflows (loaded by pytest automatically).

Fixtures:

``wflp_plugin_manager``
    A fresh plugin manager holding only wflp's builtins (no installed plugins),
    made the process-wide one for the test and replaced by the previous one after.
``register_wflp_plugin``
    ``register_wflp_plugin(plugin, name=None)`` registers a plugin object or module
    with the process-wide manager for the duration of the test; returns its name.
``cu_configs``
    8 rattled 4-atom fcc Cu cells (reproducible).
``molecules``
    H2O, CH4, NH3 and C2H4 from ase.build.molecule.

Helpers:

``require_module(name, how)`` / ``require_program(name, how)``
    Skip the calling test when a Python module / an executable on PATH is missing,
    with a reason that says how to enable it; under CI (CI=true) fail instead, so a
    service or program CI was meant to provide can never be skipped silently.
``timeout_scale()`` / ``scaled(seconds)`` / ``wait_until(check, timeout, what)``
    Every deadline of a test goes through ``scaled``: its generous default (sized for a
    loaded 2-core machine) times WFLP_TEST_TIMEOUT_SCALE (default 1; scripts/stress.sh
    sets it higher). ``wait_until`` polls a condition (a file, a process state, a line on
    a pipe) until such a deadline, so no test sleeps for a guessed time.

This module is imported whenever pytest starts in an environment with wflp, so
it imports nothing but pytest at the top: wflp and ase are imported by the
fixtures when used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable, NoReturn, Optional

import pytest


def _missing(what: str, how: str) -> NoReturn:
    import os

    message = f"{what} is not available; to run this test: {how}"
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


#: The environment variable that stretches every test deadline (a positive number).
TIMEOUT_SCALE_VAR = "WFLP_TEST_TIMEOUT_SCALE"


def timeout_scale() -> float:
    """The factor in WFLP_TEST_TIMEOUT_SCALE (default 1) by which tests stretch their
    deadlines: the one place it is read. Raises ValueError naming the variable if it is
    not a positive number."""
    import math
    import os

    raw = os.environ.get(TIMEOUT_SCALE_VAR, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{TIMEOUT_SCALE_VAR}={raw!r} is not a positive number; set it to "
                         "e.g. 3 to give every test deadline three times as long, or unset it")
    return value


def scaled(seconds: float) -> float:
    """*seconds* (a deadline generous for a loaded 2-core machine) times
    ``timeout_scale()``: how every test writes a deadline."""
    return seconds * timeout_scale()


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "a condition",
               interval: float = 0.05) -> Any:
    """The first true value of ``check()``, polled every *interval* seconds; AssertionError
    naming *what* once ``scaled(timeout)`` seconds have passed (the check is made once
    more at the deadline, so a slow poll never loses a condition that did come true)."""
    import time

    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        late = time.monotonic() > deadline
        value = check()
        if value:
            return value
        if late:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what} "
                                 f"({TIMEOUT_SCALE_VAR}={timeout_scale():g})")
        time.sleep(interval)


def require_module(name: str, how: str) -> Any:
    """Import and return module *name*; skip (fail under CI) with *how* if it is missing."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the Python module {name!r}", how)


def require_program(name: str, how: str) -> str:
    """Path of executable *name*; skip (fail under CI) with *how* if it is not on PATH."""
    import shutil

    path = shutil.which(name)
    if path is None:
        _missing(f"the program {name!r}", how)
    return path


@pytest.fixture
def wflp_plugin_manager() -> Iterator[Any]:
    """A fresh WflpPluginManager with only the builtins, process-wide during the test."""
    from wflp.plugins import WflpPluginManager, use_plugin_manager

    pm = WflpPluginManager(entry_points=(), strict=False, allow=None)
    with use_plugin_manager(pm):
        yield pm


@pytest.fixture
def register_wflp_plugin() -> Iterator[Callable[..., str]]:
    """A function registering a plugin with the process-wide manager until the test ends.

    Combine it with ``wflp_plugin_manager`` to keep installed plugins out.
    """
    from wflp.plugins import get_plugin_manager

    registered: list = []

    def register(plugin: Any, name: Optional[str] = None) -> str:
        pm = get_plugin_manager()
        plugin_name = pm.register_plugin(plugin, name=name)
        registered.append((pm, plugin_name))
        return plugin_name

    yield register
    for pm, plugin_name in reversed(registered):
        pm.unregister_plugin(plugin_name)


@pytest.fixture
def cu_configs() -> list:
    """8 rattled 4-atom fcc Cu cells (a = 3.6 Å, displacements of 0.05 Å rms, seed 0)."""
    import numpy as np
    from ase.build import bulk

    rng = np.random.default_rng(0)
    out = []
    for _ in range(8):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        out.append(atoms)
    return out


def labelled_cu(n: int, seed: int, prefix: str = "ref_") -> list:
    """*n* strained (a = 3.5-3.7 Å) and rattled (0.1 Å rms) 4-atom fcc Cu cells with EMT
    energies, forces and stresses under *prefix*, ``config_type`` "rattled": training and
    test data for fitter plugins, the same for the same *seed*."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from .configset import OutputSpec
    from .ops import calculate

    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(n):
        at = bulk("Cu", "fcc", a=rng.uniform(3.5, 3.7), cubic=True)
        at.positions += rng.normal(scale=0.1, size=at.positions.shape)
        at.info["config_type"] = "rattled"
        cells.append(at)
    return list(calculate(cells, OutputSpec(), calculator=EMT(), prefix=prefix))


def check_engine_contract(op: Any, inputs: Any, folder: Any, kwargs: dict, changed: tuple,
                          forbid: Optional[tuple[object, str]] = None) -> list:
    """The engine's contract for an operation, checked for real in *folder*: serial == 2
    processes (bytes); a rerun reuses (nothing runs: ``forbid=(object, attribute)`` is
    patched to fail); a changed parameter (``changed=(name, value)``) raises
    RecordMismatchError naming it, and recomputes with overwrite. Returns the parallel
    run's configurations."""
    import ase.io

    from wflp import AutoparaInfo, OutputSpec, shutdown_pool
    from wflp.errors import RecordMismatchError
    from wflp.records import record_path

    def must_not_run(*args: Any, **kw: Any) -> Any:
        raise AssertionError("a reused output was computed again")

    serial, par = folder / "serial.xyz", folder / "par.xyz"
    op(inputs, OutputSpec(serial), **kwargs)
    shutdown_pool()
    try:
        op(inputs, OutputSpec(par), **kwargs,
           autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                      num_inputs_per_python_subprocess=1))
    finally:
        shutdown_pool()
    data = serial.read_bytes()
    assert data and data == par.read_bytes()

    record = record_path(serial)
    before = (serial.stat().st_mtime_ns, record.read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        if forbid is not None:
            mp.setattr(forbid[0], forbid[1], must_not_run)
        op(inputs, OutputSpec(serial), **kwargs)
    assert (serial.stat().st_mtime_ns, record.read_bytes()) == before

    key, value = changed
    new_kwargs = {**kwargs, key: value}
    with pytest.raises(RecordMismatchError) as err:
        op(inputs, OutputSpec(serial), **new_kwargs)
    assert any(key in d for d in err.value.differences)
    assert serial.read_bytes() == data
    op(inputs, OutputSpec(serial, overwrite=True), **new_kwargs)
    assert serial.read_bytes() != data
    return list(ase.io.iread(par, ":"))


def calculate_in_two_workers(inputs: Any, output: Any, calculator: Any) -> list:
    """``calculate`` from the file *inputs* to the file *output* in a fresh pool of two
    worker processes, two configurations per chunk, so that both workers build the
    calculator from its spec and share nothing: what a calculator plugin's tests compare
    with a serial run. The plugin manager is reset first and the pool shut down after."""
    from . import AutoparaInfo, ConfigSet, OutputSpec, shutdown_pool
    from .ops import calculate
    from .plugins import reset_plugin_manager

    reset_plugin_manager()
    shutdown_pool()
    try:
        return list(calculate(ConfigSet(inputs), OutputSpec(output), calculator=calculator,
                              autopara_info=AutoparaInfo(num_python_subprocesses=2,
                                                         num_inputs_per_python_subprocess=2)))
    finally:
        shutdown_pool()


@pytest.fixture
def molecules() -> list:
    """Small molecules in their ase.build geometries: H2O, CH4, NH3, C2H4."""
    from ase.build import molecule

    return [molecule(name) for name in ("H2O", "CH4", "NH3", "C2H4")]
