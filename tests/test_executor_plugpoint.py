"""The executor plug point: AutoparaInfo(executor=name | instance, executor_options=...), the
executor decides its chunking, results may come in any order, and the built-ins resolve
without the plugin registry."""

from __future__ import annotations

import logging

import ase.io
import pytest
import wflp.plugins as plugins
from ase.calculators.emt import EMT
from helpers import rattled_cu
from test_plugins import FIXTURES, ep
from wflp import AutoparaInfo, ConfigSet, ExecutorSpec, OutputSpec, hookimpl
from wflp.engine.executor import Executor, resolve_executor
from wflp.engine.worker import run_chunk
from wflp.errors import ParameterError, PluginError
from wflp.exec.local import PoolExecutor, SerialExecutor
from wflp.ops import calculate, map
from wflp.plugins import WflpPluginManager, manager, use_plugin_manager


class Backwards(Executor):
    """A third party's executor: runs every chunk, then hands the results back last first
    (the contract allows any order)."""

    name = "backwards"
    in_process = True
    shares_files = True

    def __init__(self, window: int = 2, size: int | None = None):
        self.window, self.size, self.sizes = window, size, []

    def chunk_size(self, info):
        return self.size

    def map_chunks(self, tasks, info):
        results = [run_chunk(task) for task in tasks]
        for res in sorted(results, key=lambda r: -r.start):
            self.sizes.append(len(res.locs))
            yield res


class BackwardsPlugin:
    @hookimpl
    def wflp_executors(self):
        return [ExecutorSpec(name="backwards", summary="test executor",
                             factory=Backwards)]


def _emt(tmp_path, name, info):
    out = tmp_path / name
    calculate(ConfigSet(tmp_path / "in.xyz"), OutputSpec(out), calculator=EMT(),
              prefix="E_", autopara_info=info)
    return out.read_bytes()


def test_an_executor_instance_runs_an_operation_with_results_in_any_order(tmp_path):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(70))
    serial = _emt(tmp_path, "serial.xyz", AutoparaInfo())
    mine = Backwards(size=32)
    assert _emt(tmp_path, "mine.xyz", AutoparaInfo(executor=mine)) == serial
    assert sorted(mine.sizes) == [6, 32, 32]  # its chunking, not the engine's
    # in memory too: results put back in input order
    got = calculate(rattled_cu(70), OutputSpec(), calculator=EMT(), prefix="E_",
                    autopara_info=AutoparaInfo(executor=Backwards(size=32)))
    want = calculate(rattled_cu(70), OutputSpec(), calculator=EMT(), prefix="E_")
    assert [a.info["E_energy"] for a in got] == [a.info["E_energy"] for a in want]


def test_a_plugin_executor_is_built_with_executor_options(tmp_path):
    pm = WflpPluginManager(entry_points=())
    pm.register_plugin(BackwardsPlugin(), "backwards-plugin")
    with use_plugin_manager(pm):
        info = AutoparaInfo(executor="backwards",
                            executor_options={"window": 3, "size": 5}).resolved()
        executor = resolve_executor(info)
        assert isinstance(executor, Backwards)
        assert (executor.window, executor.size) == (3, 5)
        out = tmp_path / "o.xyz"
        map(_numbered(12), OutputSpec(out), _tag, autopara_info=info)
    assert [a.info["tag"] for a in ase.io.read(out, ":")] == [2 * i for i in range(12)]
    assert sorted(executor.sizes) == []  # the instance built for the check did not run


def _numbered(n):
    ats = rattled_cu(n)
    for i, at in enumerate(ats):
        at.info["i"] = i
    return ats


def _tag(at):
    at.info["tag"] = 2 * at.info["i"]
    return at


def test_builtins_resolve_without_the_registry(tmp_path, monkeypatch):
    """One broken, unrelated plugin under WFLP_STRICT_PLUGINS=1 does not stop a plain
    calculate: its executor is never looked up in the registry."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("WFLP_STRICT_PLUGINS", "1")
    monkeypatch.setattr(manager, "iter_entry_points", lambda: [ep("wflpfix_broken")])
    plugins.reset_plugin_manager()  # the process-wide one, loaded afresh from the above
    try:
        with pytest.raises(PluginError, match="wflp-fix-broken"):  # the registry is broken
            plugins.get_calculator("emt")
        assert isinstance(resolve_executor(AutoparaInfo().resolved()), SerialExecutor)
        assert isinstance(resolve_executor(AutoparaInfo(num_python_subprocesses=2)
                                           .resolved()), PoolExecutor)
        got = calculate(rattled_cu(3), OutputSpec(), calculator=EMT())  # a plain calculate
        assert len(got) == 3 and all("EMT_energy" in a.info for a in got)
    finally:
        monkeypatch.undo()
        plugins.reset_plugin_manager()


def test_a_task_size_that_is_not_a_whole_block_is_said(tmp_path, caplog):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(40))
    mine = Backwards(size=5)
    with caplog.at_level(logging.WARNING, logger="wflp"):
        _emt(tmp_path, "o.xyz", AutoparaInfo(executor=mine))
    assert any("tasks of 5 inputs are made 32" in r.message for r in caplog.records)
    assert sorted(mine.sizes) == [8, 32]


def test_bad_executors_are_refused_before_anything_runs():
    with pytest.raises(ParameterError, match="map_chunks"):
        AutoparaInfo(executor=object()).resolved()
    with pytest.raises(ParameterError, match="executor_options must be a dict"):
        AutoparaInfo(executor="pool", executor_options=["x"]).resolved()
