"""The plugin system: discovery, isolation of broken plugins, settings, lookups, clashes.

Most tests hand the manager fake entry points whose targets are the real plugin
modules in tests/plugin_fixtures/; one test pip-installs a plugin distribution
from a temporary directory and discovers it in a fresh Python process.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import wflp.plugins as plugins
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from wflp import AutoparaInfo, CalculatorSpec, OutputSpec, SelectorSpec, hookimpl
from wflp.errors import PluginError, UnknownNameError, WflpError
from wflp.exec.local import PoolExecutor, SerialExecutor
from wflp.ops import calculate
from wflp.plugins import WflpPluginManager, manager
from wflp.testing import scaled

FIXTURES = Path(__file__).parent / "plugin_fixtures"


class FakeEntryPoint:
    """What the manager needs of an importlib.metadata.EntryPoint."""

    def __init__(self, name: str, value: str, dist: str, version: str = "1.0"):
        self.name = name
        self.value = value
        self.dist = SimpleNamespace(name=dist, version=version)
        self.loads = 0

    def load(self):
        self.loads += 1
        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module)
        return getattr(obj, attr) if attr else obj


def ep(module: str, dist: str | None = None) -> FakeEntryPoint:
    short = module.replace("wflpfix_", "")
    return FakeEntryPoint(short, module, dist or f"wflp-fix-{short.replace('_', '-')}")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Fixture plugins importable; no plugin settings or process-wide manager leak in."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.delenv("WFLP_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("WFLP_LOAD_PLUGINS", raising=False)
    plugins.reset_plugin_manager()
    yield
    plugins.reset_plugin_manager()


def by_plugin(pm: WflpPluginManager) -> dict:
    return {r.plugin: r for r in pm.report()}


# -- builtins ---------------------------------------------------------------------------------

def test_builtins_are_registered_through_the_hooks():
    pm = WflpPluginManager(entry_points=())
    [record] = pm.report()
    assert (record.distribution, record.status, record.entry_point) == ("wflp", "ok", None)
    assert record.registered == {
        "calculators": ["committee", "emt", "lj"],
        "generators": ["atoms_and_dimers", "isolated_atoms", "md", "minima_hopping",
                       "normal_modes", "optimize", "sample_normal_modes", "supercells"],
        "selectors": ["select_by_bool", "select_by_distance", "select_by_index",
                      "select_by_spread", "select_convex_hull", "select_cur",
                      "select_flat_histogram", "select_fps"],
        "executors": ["pool", "queue", "serial"],
        "schedulers": ["local"],
    }
    assert pm.get_spec("calculators", "emt").load() is EMT
    assert pm.get_spec("calculators", "lj").load() is LennardJones
    assert isinstance(pm.get_executor("serial"), SerialExecutor)
    assert isinstance(pm.get_executor("pool"), PoolExecutor)
    from wflp.ops import select_by_index

    assert pm.get_spec("selectors", "select_by_index").load() is select_by_index


def test_kinds_singular_or_plural_and_names_normalized():
    pm = WflpPluginManager(entry_points=())
    spec = pm.get_spec("calculators", "emt")
    assert pm.get_spec("Calculator", "EMT") is spec
    assert pm.get_spec("calculator", " Emt ") is spec
    assert [s.name for s in pm.list_specs("executor")] == ["pool", "queue", "serial"]
    assert [s.name for s in pm.list_specs("scheduler")] == ["local"]
    with pytest.raises(UnknownNameError, match="calculators, generators, selectors, fitters"):
        pm.get_spec("calculater", "emt")


def test_the_engine_finds_executors_through_the_registry(wflp_plugin_manager):
    from wflp.exec import get_executor

    assert isinstance(get_executor(AutoparaInfo().resolved()), SerialExecutor)
    info = AutoparaInfo(num_python_subprocesses=2).resolved()
    assert isinstance(get_executor(info), PoolExecutor)
    with pytest.raises(UnknownNameError, match="available executors: pool, queue, serial"):
        get_executor(AutoparaInfo(executor="slurm").resolved())


# -- failures are isolated ------------------------------------------------------------------

def test_broken_plugin_is_reported_failed_and_the_rest_works():
    broken, good = ep("wflpfix_broken"), ep("wflpfix_good")
    pm = WflpPluginManager(entry_points=[broken, good])
    records = by_plugin(pm)
    assert records["broken"].status == "failed"
    assert records["broken"].distribution == "wflp-fix-broken"
    assert "ModuleNotFoundError" in records["broken"].error
    assert "wflpfix_module_that_is_not_installed" in records["broken"].error
    assert records["broken"].registered == {}
    assert records["good"].status == "ok"
    assert records["good"].registered == {"calculators": ["fix_morse"]}
    assert pm.get_spec("calculator", "fix_morse").load()(epsilon=0.5).parameters.epsilon == 0.5
    assert pm.get_spec("calculator", "emt").load() is EMT


def test_process_wide_lookups_survive_a_broken_plugin(monkeypatch, cu_configs):
    monkeypatch.setattr(manager, "iter_entry_points",
                        lambda: [ep("wflpfix_broken"), ep("wflpfix_good")])
    plugins.reset_plugin_manager()
    statuses = {r.plugin: r.status for r in plugins.plugin_report()}
    assert statuses == {"wflp": "ok", "broken": "failed", "good": "ok"}
    assert plugins.get_calculator("fix_morse").picklable is True
    out = calculate(cu_configs[:2], OutputSpec(), calculator=("emt", [], {}))
    assert all("emt_energy" in at.info for at in out)


def test_strict_mode_raises_on_a_broken_plugin(monkeypatch):
    monkeypatch.setenv("WFLP_STRICT_PLUGINS", "1")
    pm = WflpPluginManager(entry_points=[ep("wflpfix_good"), ep("wflpfix_broken")])
    with pytest.raises(PluginError) as err:
        pm.load()
    message = str(err.value)
    assert "wflp-fix-broken" in message and "ModuleNotFoundError" in message
    assert "WFLP_STRICT_PLUGINS" in message
    # the process-wide manager is not cached half-loaded: it raises every time
    monkeypatch.setattr(manager, "iter_entry_points", lambda: [ep("wflpfix_broken")])
    for _ in range(2):
        with pytest.raises(PluginError, match="wflp-fix-broken"):
            plugins.get_calculator("emt")
    monkeypatch.setenv("WFLP_STRICT_PLUGINS", "0")
    assert plugins.get_calculator("emt").name == "emt"


def test_hook_that_raises_is_isolated_as_failed():
    pm = WflpPluginManager(entry_points=[ep("wflpfix_raises"), ep("wflpfix_good")])
    records = by_plugin(pm)
    assert records["raises"].status == "failed"
    assert "wflp_calculators() raised RuntimeError: license server unreachable" in \
        records["raises"].error
    assert records["good"].status == "ok"
    assert pm.get_spec("calculators", "fix_morse").name == "fix_morse"
    strict = WflpPluginManager(entry_points=[ep("wflpfix_raises")], strict=True)
    strict.load()  # importing works; calling the hook is what fails
    with pytest.raises(PluginError, match="license server unreachable"):
        strict.get_spec("calculators", "emt")


class _ReturnsNone:
    @hookimpl
    def wflp_selectors(self):
        pass


class _ReturnsWrongKind:
    @hookimpl
    def wflp_selectors(self):
        return [CalculatorSpec(name="oops", summary="a calculator", factory=EMT)]


class _RegistersTwice:
    @hookimpl
    def wflp_selectors(self):
        op = "wflp.ops:select_by_bool"
        return [SelectorSpec(name="twice", summary="a", operation=op),
                SelectorSpec(name="Twice", summary="b", operation=op)]


@pytest.mark.parametrize("plugin, reason", [
    (_ReturnsNone(), "returned NoneType; it must return a list of SelectorSpec"),
    (_ReturnsWrongKind(), "returned a CalculatorSpec; it must return SelectorSpec"),
    (_RegistersTwice(), "registers 'twice' more than once"),
])
def test_invalid_registrations_fail_the_plugin(plugin, reason):
    pm = WflpPluginManager(entry_points=())
    name = pm.register_plugin(plugin)
    record = by_plugin(pm)[name]
    assert record.status == "failed"
    assert reason in record.error
    assert [s.name for s in pm.list_specs("selectors")] == [
        s.name for s in WflpPluginManager(entry_points=()).list_specs("selectors")]
    assert "twice" not in [s.name for s in pm.list_specs("selectors")]


def test_misspelled_hook_is_a_load_failure(monkeypatch):
    pm = WflpPluginManager(entry_points=[ep("wflpfix_misspelled"), ep("wflpfix_undecorated"),
                                         ep("wflpfix_good")])
    records = by_plugin(pm)
    for name, hook in (("misspelled", "wflp_calculator"), ("undecorated", "wflp_selector")):
        assert records[name].status == "failed"
        assert f"unknown hook(s) {hook}" in records[name].error
        assert "check the spelling" in records[name].error
    assert records["good"].status == "ok"
    with pytest.raises(UnknownNameError):
        pm.get_spec("calculators", "fix_never")
    monkeypatch.setenv("WFLP_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="unknown hook.*wflp_calculator"):
        WflpPluginManager(entry_points=[ep("wflpfix_misspelled")]).load()
    # registered in code, the same mistake raises at once
    with pytest.raises(PluginError, match="wflp_calculator"):
        WflpPluginManager(entry_points=()).register_plugin(
            importlib.import_module("wflpfix_misspelled"), name="again")


# -- settings ---------------------------------------------------------------------------------

def test_empty_allowlist_loads_no_external_plugin(monkeypatch):
    monkeypatch.setenv("WFLP_LOAD_PLUGINS", "")
    eps = [ep("wflpfix_broken"), ep("wflpfix_good")]
    pm = WflpPluginManager(entry_points=eps)
    records = pm.report()
    assert [(r.plugin, r.status) for r in records] == [
        ("wflp", "ok"), ("broken", "disabled"), ("good", "disabled")]
    assert all("WFLP_LOAD_PLUGINS" in r.error for r in records[1:])
    assert [e.loads for e in eps] == [0, 0]  # never imported
    disabled = "disabled by \\$WFLP_LOAD_PLUGINS: wflp-fix-broken, wflp-fix-good"
    with pytest.raises(UnknownNameError, match=disabled):
        pm.get_spec("calculators", "fix_morse")


@pytest.mark.parametrize("allow", ["WFLP_FIX_GOOD", "good", " wflp-fix-good , other"])
def test_allowlist_by_distribution_or_entry_point_name(monkeypatch, allow):
    monkeypatch.setenv("WFLP_LOAD_PLUGINS", allow)
    eps = [ep("wflpfix_broken"), ep("wflpfix_good")]
    pm = WflpPluginManager(entry_points=eps)
    assert {r.plugin: r.status for r in pm.report()} == {
        "wflp": "ok", "broken": "disabled", "good": "ok"}
    assert pm.get_spec("calculators", "fix_morse").name == "fix_morse"
    assert eps[0].loads == 0


# -- clashes ------------------------------------------------------------------------------------

def test_same_name_from_two_distributions_is_an_error_naming_both():
    pm = WflpPluginManager(entry_points=[ep("wflpfix_dup_a"), ep("wflpfix_dup_b"),
                                         ep("wflpfix_good")])
    with pytest.raises(PluginError) as err:
        pm.get_spec("calculators", "SHARED-CALC")
    assert not isinstance(err.value, UnknownNameError)
    message = str(err.value)
    assert "'shared_calc'" in message
    assert "wflp-fix-dup-a" in message and "wflp-fix-dup-b" in message
    assert "WFLP_LOAD_PLUGINS" in message
    records = by_plugin(pm)
    assert "wflp-fix-dup-b" in records["dup_a"].error
    assert "wflp-fix-dup-a" in records["dup_b"].error
    assert "shared_calc" not in [s.name for s in pm.list_specs("calculators")]
    assert pm.get_spec("calculators", "fix_morse").name == "fix_morse"  # the rest works
    strict = WflpPluginManager(entry_points=[ep("wflpfix_dup_a"), ep("wflpfix_dup_b")],
                               strict=True)
    with pytest.raises(PluginError, match="wflp-fix-dup-a.*wflp-fix-dup-b"):
        strict.get_spec("calculators", "emt")


def test_plugin_reusing_a_builtin_name_clashes(wflp_plugin_manager, register_wflp_plugin):
    class MyEMT:
        @hookimpl
        def wflp_calculators(self):
            return [CalculatorSpec(name="EMT", summary="my EMT", factory=EMT)]

    register_wflp_plugin(MyEMT(), name="my-emt")
    with pytest.raises(PluginError, match="distribution 'wflp'.*plugin 'my-emt'"):
        plugins.get_calculator("emt")


# -- lookups ------------------------------------------------------------------------------------

def test_unknown_name_lists_available_names_failures_and_the_pip_hint():
    pm = WflpPluginManager(entry_points=[ep("wflpfix_broken"), ep("wflpfix_good")])
    with pytest.raises(UnknownNameError) as err:
        pm.get_spec("calculator", "mace_mp")
    assert isinstance(err.value, KeyError) and isinstance(err.value, WflpError)
    message = str(err.value)
    assert "no calculator named 'mace_mp'" in message
    assert "available calculators: committee, emt, fix_morse, lj" in message
    assert "wflp-fix-broken" in message and "wflpfix_module_that_is_not_installed" in message
    assert "pip install wflp-mace-mp" in message


@pytest.mark.parametrize("nproc", [1, 2])
def test_calculate_with_a_registered_name_equals_emt_directly(cu_configs, nproc):
    assert plugins.get_calculator("emt").load() is EMT
    out = calculate([at.copy() for at in cu_configs], OutputSpec(),
                    calculator=("emt", [], {}),
                    autopara_info=AutoparaInfo(num_python_subprocesses=nproc))
    expected = []
    for at in cu_configs:
        at.calc = EMT()
        expected.append(at.get_potential_energy())
    got = [at.info["emt_energy"] for at in out]
    assert len(got) == len(cu_configs)
    assert np.allclose(got, expected, rtol=0, atol=1e-12)
    assert len(set(np.round(got, 8))) > 1  # the configurations really differ


def test_a_plugin_implementing_every_hook(wflp_plugin_manager, register_wflp_plugin,
                                          cu_configs, molecules, tmp_path):
    module = importlib.import_module("wflpfix_all_kinds")
    register_wflp_plugin(module, name="all-kinds")
    registered = by_plugin(wflp_plugin_manager)["all-kinds"].registered
    assert registered == {"calculators": ["fix_lj"], "generators": ["fix_rattle"],
                          "selectors": ["fix_small"], "fitters": ["fix_mean"],
                          "executors": ["fix_counting", "fix_not_an_executor"]}

    # wflp_calculators: by name in calculate, equal to the calculator itself
    out = calculate([m.copy() for m in molecules], OutputSpec(),
                    calculator=("fix_lj", [], {"sigma": 1.2}))
    direct = []
    for m in molecules:
        m.calc = LennardJones(sigma=1.2)
        direct.append(m.get_potential_energy())
    assert np.allclose([at.info["fix_lj_energy"] for at in out], direct, rtol=0, atol=1e-12)

    # wflp_generators: three copies per input, reproducible from the seed
    rattle = plugins.get_generator("fix_rattle").load()
    first = list(rattle(cu_configs[:2], OutputSpec(), n=3, seed=7))
    again = list(rattle(cu_configs[:2], OutputSpec(), n=3, seed=7))
    assert len(first) == 6
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first, again))

    # wflp_selectors (given as an import path)
    small = plugins.get_selector("fix_small").load()
    kept = list(small(molecules, OutputSpec(), max_atoms=4))
    assert [at.get_chemical_formula() for at in kept] == ["H2O", "H3N"]

    # wflp_fitters
    spec = plugins.get_fitter("fix_mean")
    assert spec.calculator == "fix_lj"
    for at, e in zip(molecules, direct):
        at.info["energy"] = e
    path = spec.load()(molecules, tmp_path)
    stored = json.loads(Path(path).read_text())
    assert stored["n"] == 4
    assert np.isclose(stored["e0"], np.mean([e / len(m) for m, e in zip(molecules, direct)]))

    # wflp_executors: the engine runs the operation through the plugin's executor
    module.CHUNKS_RUN.clear()
    res = calculate([at.copy() for at in cu_configs], OutputSpec(),
                    calculator=("fix_lj", [], {}),
                    autopara_info=AutoparaInfo(executor="fix_counting",
                                               num_inputs_per_python_subprocess=3))
    assert module.CHUNKS_RUN == [3, 3, 2]
    serial = calculate([at.copy() for at in cu_configs], OutputSpec(),
                       calculator=("fix_lj", [], {}))
    assert [a.info["fix_lj_energy"] for a in res] == [a.info["fix_lj_energy"] for a in serial]
    with pytest.raises(PluginError, match="plugin 'all-kinds'.*returned NotAnExecutor, which "
                                          "is not a wflp.exec.Executor"):
        plugins.get_executor("fix_not_an_executor")


def test_registrations_are_collected_once_and_recollected_after_a_change(
        wflp_plugin_manager, register_wflp_plugin):
    calls = []

    class Counting:
        @hookimpl
        def wflp_selectors(self):
            calls.append(1)
            return [SelectorSpec(name="counted", summary="s",
                                 operation="wflp.ops:select_by_bool")]

    register_wflp_plugin(Counting(), name="counting")
    for _ in range(3):
        assert plugins.get_selector("counted").name == "counted"
    assert plugins.list_specs("selectors")[0].name == "counted"
    assert len(calls) == 1
    register_wflp_plugin(importlib.import_module("wflpfix_good"), name="good")
    assert plugins.get_calculator("fix_morse").name == "fix_morse"
    assert len(calls) == 2


# -- specs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(name="x", summary="s", factory=None), "factory must be a callable or an import path"),
    (dict(name="x", summary="s", factory="ase.calculators.emt.EMT"), "is not an import path"),
    (dict(name="x", summary="", factory=EMT), "summary must be a non-empty string"),
    (dict(name="9lives", summary="s", factory=EMT), "invalid registered name"),
    (dict(name="x", summary="s", factory=EMT, properties="energy"), "properties must be"),
])
def test_invalid_specs_are_rejected(kwargs, message):
    with pytest.raises(PluginError, match=message):
        CalculatorSpec(**kwargs)


def test_a_spec_without_its_target_names_the_missing_field():
    with pytest.raises(TypeError, match="missing 1 required .*argument: 'factory'"):
        CalculatorSpec(name="x", summary="s")


def test_spec_load_errors_name_the_target():
    spec = CalculatorSpec(name="ghost", summary="s", factory="wflp_no_such_pkg.calc:Ghost")
    with pytest.raises(PluginError, match="cannot load 'wflp_no_such_pkg.calc:Ghost'"):
        spec.load()


# -- the pytest plugin (wflp.testing) ---------------------------------------------------------

def test_fixture_datasets(cu_configs, molecules):
    assert len(cu_configs) == 8
    assert all(at.get_chemical_formula() == "Cu4" and all(at.pbc) for at in cu_configs)
    assert len({at.positions.tobytes() for at in cu_configs}) == 8
    assert [m.get_chemical_formula() for m in molecules] == ["H2O", "CH4", "H3N", "C2H4"]


def test_wflp_plugin_manager_fixture_holds_only_builtins(wflp_plugin_manager):
    assert plugins.get_plugin_manager() is wflp_plugin_manager
    assert [r.plugin for r in plugins.plugin_report()] == ["wflp"]


def test_use_plugin_manager_restores_the_previous_one():
    outer = plugins.get_plugin_manager()
    inner = WflpPluginManager(entry_points=())
    with plugins.use_plugin_manager(inner):
        assert plugins.get_plugin_manager() is inner
    assert plugins.get_plugin_manager() is outer


def test_fixtures_work_from_the_pytest_entry_point(tmp_path):
    """wflp.testing is loaded by pytest itself; registrations end with the test."""
    (tmp_path / "test_uses_fixtures.py").write_text(textwrap.dedent("""
        from wflp import CalculatorSpec, hookimpl
        from wflp.plugins import get_calculator, get_plugin_manager
        from wflp.errors import UnknownNameError
        import pytest

        class P:
            @hookimpl
            def wflp_calculators(self):
                return [CalculatorSpec(name="tmp_calc", summary="s",
                                       factory="ase.calculators.emt:EMT")]

        def test_a(register_wflp_plugin, cu_configs):
            assert register_wflp_plugin(P(), name="p") == "p"
            assert get_calculator("tmp_calc").name == "tmp_calc"
            assert len(cu_configs) == 8

        def test_b():
            with pytest.raises(UnknownNameError):
                get_calculator("tmp_calc")
            assert "p" not in [r.plugin for r in get_plugin_manager().report()]
    """))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_importing_the_pytest_plugin_loads_no_plugins():
    code = ("import sys, wflp.testing, wflp.plugins as p\n"
            "print(p._manager is None, sorted(m for m in sys.modules\n"
            "      if m.split('.')[0] in ('wflp_xtb', 'tblite', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[]"]


# -- a real third-party distribution --------------------------------------------------------------

DEMO_MODULE = '''
"""A third-party wflp plugin, installed with pip by the test."""
from wflp import CalculatorSpec, hookimpl


@hookimpl
def wflp_calculators():
    return [CalculatorSpec(name="tmpdemo_morse", summary="Morse (ASE), from a pip install",
                           factory="ase.calculators.morse:MorsePotential", picklable=True)]
'''


@pytest.fixture
def installed_demo_plugin(tmp_path):
    """wflp-tmpdemo, pip-installed from tmp_path (offline: an in-tree build backend),
    uninstalled afterwards."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(FIXTURES / "tiny_backend.py", pkg / "tiny_backend.py")
    (pkg / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = []
        build-backend = "tiny_backend"
        backend-path = ["."]
    """))
    (pkg / "wheel.json").write_text(json.dumps({
        "name": "wflp-tmpdemo", "version": "0.3.1", "modules": ["wflp_tmpdemo.py"],
        "requires": ["wflp"], "entry_points": {"wflp": {"tmpdemo": "wflp_tmpdemo"}}}))
    (pkg / "wflp_tmpdemo.py").write_text(DEMO_MODULE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    done = subprocess.run(pip + ["install", "--no-deps", "--no-build-isolation", str(pkg)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield "wflp-tmpdemo"
    finally:
        subprocess.run(pip + ["uninstall", "-y", "wflp-tmpdemo"], capture_output=True,
                       timeout=300)


def test_pip_installed_plugin_is_discovered_without_core_change(installed_demo_plugin):
    code = textwrap.dedent("""
        import json
        from ase.build import bulk
        from wflp import OutputSpec
        from wflp.ops import calculate
        from wflp.plugins import plugin_report
        [rec] = [r for r in plugin_report() if r.distribution == "wflp-tmpdemo"]
        cu = bulk("Cu", cubic=True)
        out = calculate([cu], OutputSpec(), calculator=("tmpdemo_morse", [], {}))
        print(json.dumps({"record": rec.to_dict(),
                          "energy": list(out)[0].info["tmpdemo_morse_energy"]}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    record = result["record"]
    assert record["status"] == "ok", record["error"]
    assert (record["version"], record["entry_point"]) == ("0.3.1", "tmpdemo = wflp_tmpdemo")
    assert record["registered"] == {"calculators": ["tmpdemo_morse"]}
    from ase.build import bulk
    from ase.calculators.morse import MorsePotential

    cu = bulk("Cu", cubic=True)
    cu.calc = MorsePotential()
    assert np.isclose(result["energy"], cu.get_potential_energy(), rtol=0, atol=1e-10)
