"""The typed contracts between the layers: Executor, Scheduler and Transport are abstract
base classes (a missing method is an error when the class is used, not a
NotImplementedError mid-run), the plugins' implementations conform, and what the engine
looks up by name comes through its registration points (wflp._wiring fills them)."""

from __future__ import annotations

import importlib

import pytest
from wflp import AutoparaInfo, ConfigSet, ExecutorSpec, OutputSpec, SchedulerSpec, hookimpl
from wflp.engine import executor as engine_executor
from wflp.engine.executor import Executor, resolve_executor
from wflp.engine.operation import ParameterConvention, operation
from wflp.engine.worker import run_chunk
from wflp.errors import ParameterError, PluginError, WflpError
from wflp.plugins import WflpPluginManager, use_plugin_manager
from wflp.remote.config import SystemConfig
from wflp.remote.jobs import scheduler_for
from wflp.remote.scheduler import LocalScheduler, Scheduler
from wflp.remote.transport import LocalTransport, Transport

# the module (wflp.engine.operation is the decorator, which shadows its module's name)
engine_operation = importlib.import_module("wflp.engine.operation")


class DuckExecutor:
    """Has map_chunks but declares nothing: not an executor."""

    name = "duck"

    def map_chunks(self, tasks, info):
        for task in tasks:
            yield run_chunk(task)


class InProcess(Executor):
    name = "in_process_test"
    in_process = True
    shares_files = True

    def map_chunks(self, tasks, info):
        for task in tasks:
            yield run_chunk(task)


class Plugin:
    @hookimpl
    def wflp_executors(self):
        return [ExecutorSpec(name="duck", summary="not an Executor", factory=DuckExecutor),
                ExecutorSpec(name="declared", summary="an Executor", factory=InProcess)]

    @hookimpl
    def wflp_schedulers(self):
        return [SchedulerSpec(name="not_a_dialect", summary="returns an object",
                              factory=object)]


@pytest.fixture
def plugin_manager():
    pm = WflpPluginManager(entry_points=())
    pm.register_plugin(Plugin(), "contracts")
    with use_plugin_manager(pm):
        yield pm


def _double(atoms):
    atoms.info["doubled"] = 2 * atoms.info["i"]
    return atoms


def _numbered(n):
    from ase import Atoms

    out = []
    for i in range(n):
        at = Atoms("H")
        at.info["i"] = i
        out.append(at)
    return out


# -- executors -------------------------------------------------------------------------------

def test_an_executor_must_subclass_executor():
    with pytest.raises(ParameterError, match="AutoparaInfo.executor must be .*wflp.exec.Executor"):
        AutoparaInfo(executor=DuckExecutor()).resolved()
    with pytest.raises(TypeError, match="abstract"):
        type("NoMap", (Executor,), {})()  # map_chunks is required


def test_a_plugin_executor_that_is_not_an_executor_is_refused(plugin_manager):
    with pytest.raises(PluginError, match="'duck'.*returned DuckExecutor, which is not a "
                                          "wflp.exec.Executor"):
        resolve_executor(AutoparaInfo(executor="duck").resolved())
    declared = resolve_executor(AutoparaInfo(executor="declared").resolved())
    assert isinstance(declared, InProcess)
    got = ConfigSet(_numbered(5))
    op = operation("double_for_contracts")(_double)
    out = op(got, OutputSpec(), autopara_info=AutoparaInfo(executor="declared"))
    assert [a.info["doubled"] for a in out] == [0, 2, 4, 6, 8]


def test_names_resolve_through_the_engines_registration_points(monkeypatch):
    """The engine builds what a name stands for only through what was registered: with
    nothing registered it says so instead of importing a higher layer itself."""
    assert {"serial", "pool", "queue"} <= set(engine_executor.registered_executors())
    monkeypatch.setattr(engine_executor, "_factories", {})
    monkeypatch.setattr(engine_executor, "_lookup", None)
    with pytest.raises(ParameterError, match="no executor of that name is registered"):
        resolve_executor(AutoparaInfo().resolved())
    engine_executor.register_executor("serial", InProcess)
    assert isinstance(resolve_executor(AutoparaInfo().resolved()), InProcess)
    engine_executor.register_executor("serial", DuckExecutor)
    with pytest.raises(ParameterError, match="the executor 'serial' must be .*Executor"):
        resolve_executor(AutoparaInfo().resolved())


def test_the_plugins_executors_conform():
    dask = pytest.importorskip("wflp_dask.executor")
    assert issubclass(dask.DaskExecutor, Executor)
    assert not dask.DaskExecutor.__abstractmethods__


# -- parameter conventions ---------------------------------------------------------------------

def test_a_parameter_convention_checks_and_describes_every_operation_with_it(monkeypatch):
    seen = []

    def check(value, where):
        seen.append(where)
        if value != "good":
            raise ParameterError(f"{where}: {value!r} is not good")

    monkeypatch.setattr(engine_operation, "_conventions",
                        dict(engine_operation.parameter_conventions()))
    engine_operation.register_parameter_convention(
        "widget", ParameterConvention(describe=lambda v, d: {"widget": v}, check=check))

    @operation("with_widget")
    def with_widget(atoms, widget="good"):
        return atoms

    assert with_widget.describe["widget"]("x", None) == {"widget": "x"}
    with pytest.raises(ParameterError, match="with_widget: parameter 'widget': 'bad'"):
        with_widget(_numbered(2), OutputSpec(), widget="bad")
    assert len(with_widget(_numbered(2), OutputSpec())) == 2
    assert seen == ["with_widget: parameter 'widget'"] * 2


def test_the_calculator_convention_comes_from_the_calculators_layer():
    @operation("with_calculator")
    def with_calculator(atoms, calculator=None):
        return atoms

    assert "calculator" in with_calculator.conventions
    with pytest.raises(WflpError, match="with_calculator: parameter 'calculator': calculator "
                                        "'no_such_calculator_here'"):
        with_calculator(_numbered(1), OutputSpec(), calculator="no_such_calculator_here")


# -- schedulers and transports -------------------------------------------------------------

def test_a_scheduler_must_implement_the_dialect():
    with pytest.raises(TypeError, match="cancel_command.*parse_submit.*submit_command"):
        type("Half", (Scheduler,), {})()
    assert isinstance(LocalScheduler(), Scheduler)


@pytest.mark.parametrize("module, names", [
    ("wflp_slurm.scheduler", ["SlurmScheduler"]),
    ("wflp_sge.scheduler", ["SGEScheduler"]),
    ("wflp_pbs.scheduler", ["PBSScheduler", "PBSProScheduler"]),
])
def test_the_plugins_schedulers_conform(module, names):
    mod = pytest.importorskip(module)
    for name in names:
        cls = getattr(mod, name)
        assert issubclass(cls, Scheduler) and not cls.__abstractmethods__
        assert isinstance(cls(), Scheduler)


def test_a_scheduler_factory_must_return_a_scheduler(plugin_manager):
    system = SystemConfig(name="odd", scheduler="not_a_dialect", source="test")
    with pytest.raises(PluginError, match="'not_a_dialect'.*returned object, not a "
                                          "wflp.remote.scheduler.Scheduler"):
        scheduler_for(system)


def test_a_transport_must_implement_every_operation(tmp_path):
    with pytest.raises(TypeError, match="abstract"):
        type("Partial", (Transport,), {"run": lambda self, argv, timeout=None: None})()
    local = LocalTransport()
    local.write_bytes(str(tmp_path / "f"), b"x")
    assert local.read_bytes(str(tmp_path / "f")) == b"x"


def test_the_typed_package_ships_its_marker():
    wflp = importlib.import_module("wflp")
    from pathlib import Path

    assert (Path(wflp.__file__).parent / "py.typed").is_file()
