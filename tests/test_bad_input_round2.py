"""Bad input, round 2 (issue 15, defects 5, 6, 8 and 9).

- output formats the stage cannot assemble (pdb, json, xsf, db) are refused before any work;
- a plugin that calls sys.exit() or raises KeyboardInterrupt at import (or sys.exit() in a
  hook) is isolated like any broken plugin, in Python and on the command line;
- output = input is refused even with overwrite=True; an integer index beyond the end of a
  file is an InputError; a one-file list for several input groups is an OutputError;
- a chunk file deleted from the stage during a run is reported as such.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import ase.io
import click
import numpy as np
import pytest
import wflp.plugins as plugins
from ase.calculators.emt import EMT
from helpers import rattled_cu
from wflp import AutoparaInfo, ConfigSet, OutputSpec, hookimpl, operation
from wflp.engine.stage import Stage
from wflp.errors import InputError, OperationError, OutputError, PluginError
from wflp.ops import calculate, map
from wflp.plugins import WflpPluginManager, manager

FIXTURES = Path(__file__).parent / "plugin_fixtures"


def _listing(folder: Path) -> list[str]:
    """Every name under *folder*, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _positions(configs) -> list:
    return [np.round(at.positions, 8).tolist() for at in configs]


def _emt_energies(configs) -> list[float]:
    out = []
    for at in configs:
        at = at.copy()
        at.calc = EMT()
        out.append(at.get_potential_energy())
    return out


@pytest.fixture
def counted(tmp_path):
    """An operation that logs each call (the item's index), to tell whether work was done."""
    log = tmp_path / "calls.log"

    @operation("scaled_r2", version="1")
    def scaled(at, factor=1.0, index=None):
        with open(log, "a") as fd:
            fd.write(f"{index}\n")
        at.positions *= factor
        return at

    def calls() -> list[int]:
        return [int(x) for x in log.read_text().split()] if log.exists() else []

    return scaled, calls


# -- 5. formats the stage cannot write are refused before any work -------------------------------

@pytest.mark.parametrize("name, format, shown", [
    ("e.pdb", None, "proteindatabank"),
    ("e.json", None, "json"),
    ("e.xsf", None, "xsf"),
    ("e.db", None, "db"),
    ("e.out", "proteindatabank", "proteindatabank"),
])
def test_formats_the_stage_cannot_assemble_are_refused_at_once(tmp_path, counted, name, format,
                                                                 shown):
    scaled, calls = counted
    inputs = tmp_path / "in.xyz"
    ase.io.write(inputs, rattled_cu(3))
    before = _listing(tmp_path)
    with pytest.raises(OutputError) as err:
        scaled(ConfigSet(inputs), OutputSpec(tmp_path / name, format=format), 1.1)
    message = str(err.value)
    assert name in message and repr(shown) in message
    assert "extxyz" in message and "traj" in message  # the formats that do work
    assert calls() == []
    assert _listing(tmp_path) == before  # no output, no stage, no lock, no record


def test_cli_refuses_an_unwritable_format_before_running(tmp_path):
    ase.io.write(tmp_path / "in.xyz", rattled_cu(2))
    before = _listing(tmp_path)
    done = subprocess.run([sys.executable, "-m", "wflp.cli", "run", "calculator", "emt",
                           "-i", "in.xyz", "-o", "e.pdb"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, WFLP_PROGRESS="0"))
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "e.pdb" in line and "'proteindatabank'" in line and "extxyz" in line
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("name, format", [
    ("o.cif", None), ("o.traj", None), ("o.txt", "xyz"), ("o.extxyz", None)])
def test_accepted_formats_are_assembled_and_read_back(tmp_path, name, format):
    ats = rattled_cu(3, seed=4)
    spec = OutputSpec(tmp_path / name, format=format)
    out = calculate(ats, spec, calculator=EMT(),
                    autopara_info=AutoparaInfo(num_inputs_per_python_subprocess=2))
    back = ase.io.read(tmp_path / name, ":", format=spec.format)
    assert len(back) == 3 and len(list(out)) == 3
    for b, a in zip(back, ats):  # the same atoms, up to lattice vectors (cif wraps them)
        shift = np.linalg.solve(a.cell.array.T, (b.positions - a.positions).T)
        assert np.abs(shift - np.round(shift)).max() < 1e-5
    if spec.format in ("traj", "extxyz"):  # formats that keep the results
        got = [b.get_potential_energy() if b.calc is not None else b.info["EMT_energy"]
               for b in back]
        assert np.allclose(got, _emt_energies(ats), rtol=0, atol=1e-10)


# -- 6. plugins that exit or are interrupted at import ---------------------------------------------

class FakeEntryPoint:
    """What the manager needs of an importlib.metadata.EntryPoint."""

    def __init__(self, module: str):
        self.name = module.replace("wflpfix_", "")
        self.value = module
        self.dist = SimpleNamespace(name=f"wflp-fix-{self.name.replace('_', '-')}",
                                    version="1.0")

    def load(self):
        return importlib.import_module(self.value)


@pytest.fixture
def fixture_plugins(monkeypatch):
    """Fixture plugin modules importable; no plugin settings or process-wide manager leak."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.delenv("WFLP_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("WFLP_LOAD_PLUGINS", raising=False)
    plugins.reset_plugin_manager()
    yield
    plugins.reset_plugin_manager()


EXITING = [
    ("wflpfix_exits", "its import called sys.exit(3)"),
    ("wflpfix_interrupts", "its import was interrupted (KeyboardInterrupt)"),
    ("wflpfix_exits_in_hook", "its hook wflp_calculators() called "
                              "sys.exit('no licence for this calculator')"),
]


@pytest.mark.parametrize("module, reason", EXITING)
def test_plugin_exiting_or_interrupted_is_isolated(fixture_plugins, monkeypatch, module, reason):
    eps = [FakeEntryPoint(module), FakeEntryPoint("wflpfix_good")]
    monkeypatch.setattr(manager, "iter_entry_points", lambda: eps)
    plugins.reset_plugin_manager()
    records = {r.plugin: r for r in plugins.plugin_report()}
    bad = records[eps[0].name]
    assert bad.status == "failed", bad
    assert reason in bad.error
    assert bad.registered == {}
    assert records["good"].status == "ok"
    assert "interrupted (finished chunks are kept" not in bad.error  # not the engine's words
    ats = rattled_cu(2)
    out = calculate(ats, OutputSpec(), calculator=("emt", [], {}))
    assert np.allclose([a.info["emt_energy"] for a in out], _emt_energies(ats), rtol=0,
                       atol=1e-12)


@pytest.mark.parametrize("module, reason", EXITING)
def test_strict_mode_makes_an_exiting_plugin_an_error(fixture_plugins, monkeypatch, module,
                                                      reason):
    monkeypatch.setenv("WFLP_STRICT_PLUGINS", "1")
    pm = WflpPluginManager(entry_points=[FakeEntryPoint(module)])
    with pytest.raises(PluginError) as err:
        pm.get_spec("calculators", "emt")
    assert reason in str(err.value) and "WFLP_STRICT_PLUGINS" in str(err.value)


class _ExitsInCommands:
    @hookimpl
    def wflp_commands(self, cli):
        sys.exit(4)


def test_commands_hook_that_exits_leaves_the_other_commands(fixture_plugins, caplog):
    group = click.Group("wflp-test")

    @group.command("kept")
    def kept():
        pass

    pm = WflpPluginManager(entry_points=())
    pm.register_plugin(_ExitsInCommands(), name="exits-in-commands")
    assert pm.add_commands(group) == []
    assert list(group.commands) == ["kept"]
    assert "its hook wflp_commands called sys.exit(4)" in caplog.text
    strict = WflpPluginManager(entry_points=(), strict=True)
    strict.register_plugin(_ExitsInCommands(), name="exits-in-commands")
    with pytest.raises(PluginError, match="plugin 'exits-in-commands'.*sys.exit\\(4\\)"):
        strict.add_commands(click.Group("wflp-test"))


@pytest.fixture
def exiting_distributions(tmp_path):
    """A folder for PYTHONPATH holding two real (uninstalled) distributions whose entry
    points, in group wflp, import a module that calls sys.exit(3) and one that raises
    KeyboardInterrupt: importlib.metadata finds them like any installed plugin."""
    site = tmp_path / "site"
    site.mkdir()
    for module in ("wflpfix_exits", "wflpfix_interrupts"):
        short = module.replace("wflpfix_", "")
        (site / f"{module}.py").write_text((FIXTURES / f"{module}.py").read_text())
        info = site / f"wflp_fix_{short}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: wflp-fix-{short}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[wflp]\n{short} = {module}\n")
    path = os.pathsep.join([str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env = {k: v for k, v in os.environ.items()
           if k not in ("WFLP_STRICT_PLUGINS", "WFLP_LOAD_PLUGINS")}
    return dict(env, PYTHONPATH=path, WFLP_PROGRESS="0")


def test_wflp_commands_survive_exiting_plugins(tmp_path, exiting_distributions):
    env = exiting_distributions
    listed = subprocess.run([sys.executable, "-m", "wflp.cli", "list-plugins", "--json"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    records = {r["distribution"]: r for r in json.loads(listed.stdout)}
    assert records["wflp-fix-exits"]["status"] == "failed"
    assert "sys.exit(3)" in records["wflp-fix-exits"]["error"]
    assert records["wflp-fix-interrupts"]["status"] == "failed"
    assert "import was interrupted" in records["wflp-fix-interrupts"]["error"]
    assert records["wflp"]["status"] == "ok"

    ase.io.write(tmp_path / "in.xyz", rattled_cu(2))
    ran = subprocess.run([sys.executable, "-m", "wflp.cli", "run", "calculator", "emt",
                          "-i", "in.xyz", "-o", "out.xyz"], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "wflp-fix-exits" in ran.stderr  # the warning names the failed plugin
    energies = [at.info["emt_energy"] for at in ase.io.read(tmp_path / "out.xyz", ":")]
    expected = _emt_energies(ase.io.read(tmp_path / "in.xyz", ":"))
    assert np.allclose(energies, expected, rtol=0, atol=1e-10)

    strict = subprocess.run([sys.executable, "-m", "wflp.cli", "list-plugins"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=dict(env, WFLP_STRICT_PLUGINS="1"))
    assert strict.returncode == 2
    assert "wflp-fix-" in strict.stderr and "WFLP_STRICT_PLUGINS" in strict.stderr


# -- 8. output = input, index out of range, one file for several groups ---------------------------

@pytest.mark.parametrize("overwrite", [False, True])
def test_output_that_is_the_input_is_refused(tmp_path, counted, overwrite):
    scaled, calls = counted
    path = tmp_path / "in.xyz"
    ase.io.write(path, rattled_cu(3))
    link = tmp_path / "link.xyz"
    link.symlink_to(path)
    content = path.read_bytes()
    before = _listing(tmp_path)
    for out in (path, link, Path(os.path.relpath(path))):
        with pytest.raises(OutputError) as err:
            scaled(ConfigSet(path), OutputSpec(out, overwrite=overwrite), 1.1)
        message = str(err.value)
        assert str(out) in message and "is the input file" in message
        assert "no wflp record" not in message
    assert calls() == []
    assert path.read_bytes() == content
    assert _listing(tmp_path) == before


def test_index_beyond_the_file_is_an_input_error(tmp_path, counted):
    scaled, calls = counted
    path = tmp_path / "4frames.xyz"
    ats = rattled_cu(4)
    ase.io.write(path, ats)
    ase.io.write(tmp_path / "4frames.traj", ats)
    for name, index in (("4frames.xyz", 99), ("4frames.xyz", "99"), ("4frames.xyz", -5),
                        ("4frames.traj", 4)):
        with pytest.raises(InputError) as err:
            list(ConfigSet(tmp_path / name, index=index))
        message = str(err.value)
        assert name in message and f"index {index!r}" in message and "4 frames" in message
    before = _listing(tmp_path)
    with pytest.raises(InputError, match="4frames.xyz.*index 99.*4 frames"):
        scaled(ConfigSet(path, index=99), OutputSpec(tmp_path / "out.xyz"), 1.1)
    assert calls() == []
    assert _listing(tmp_path) == before  # nothing written: no stage, no lock
    # indices inside the file still work, lazily
    assert _positions(ConfigSet(path, index=3)) == _positions(ats[3:])
    assert _positions(ConfigSet(path, index=-4)) == _positions(ats[:1])
    assert _positions(ConfigSet(tmp_path / "4frames.traj", index="2")) == _positions(ats[2:3])


def test_one_file_list_for_several_input_groups_is_an_output_error(tmp_path, counted):
    scaled, calls = counted
    parts = [tmp_path / "a.xyz", tmp_path / "b.xyz"]
    ase.io.write(parts[0], rattled_cu(2))
    ase.io.write(parts[1], rattled_cu(3, seed=1))
    before = _listing(tmp_path)
    with pytest.raises(OutputError, match="1 files but the input has 2 top-level groups"):
        scaled(ConfigSet(parts), OutputSpec([tmp_path / "u.xyz"]), 1.1)
    with pytest.raises(OutputError, match="1 files but the input has 2"):
        map([rattled_cu(1), rattled_cu(2)], OutputSpec([tmp_path / "u.xyz"]), lambda at: at)
    assert calls() == []
    assert _listing(tmp_path) == before
    # a single file (not a list) gathers every group; a one-file list fits one group
    assert len(list(scaled(ConfigSet(parts), OutputSpec(tmp_path / "all.xyz"), 1.0))) == 5
    assert len(list(scaled(ConfigSet(parts[:1]), OutputSpec([tmp_path / "one.xyz"]), 1.0))) == 2
    assert len(list(map(rattled_cu(3), OutputSpec([tmp_path / "flat.xyz"]), lambda a: a))) == 3


# -- 9. a chunk file deleted during the run ------------------------------------------------------

@operation("faulty_r2", version="1")
def _faulty(at, index=None):
    """Faults switched on by files in the current folder, which the record does not see (so
    every run is the same computation): with r2-fail, item 4 fails; with r2-delete, the
    first finished chunk file of out.xyz's stage is deleted (once)."""
    if index == 4 and os.path.exists("r2-fail"):
        raise ValueError("item four fails")
    if os.path.exists("r2-delete"):
        os.unlink("r2-delete")
        sorted(Path(".out.xyz.wflp-partial").glob("c-*.xyz"))[0].unlink()
    return at


def test_chunk_file_deleted_during_the_run_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.xyz"
    info = AutoparaInfo(num_inputs_per_python_subprocess=2)
    ats = rattled_cu(6)
    (tmp_path / "r2-fail").touch()
    with pytest.raises(OperationError, match="item four fails"):
        _faulty(ats, OutputSpec(out), autopara_info=info)
    stage = Stage.folder_for(out)
    assert len(list(stage.glob("c-*.xyz"))) == 2  # items 0-1 and 2-3 are kept
    (tmp_path / "r2-fail").unlink()
    (tmp_path / "r2-delete").touch()  # the resumed run loses the chunk of items 0-1
    with pytest.raises(OutputError) as err:
        _faulty(ats, OutputSpec(out), autopara_info=info)
    message = str(err.value)
    assert "did the inputs change" not in message
    assert "chunk file" in message and "missing" in message and "items 0 to 1" in message
    assert "rerun" in message.lower()
    assert not out.exists()
    # as the message says, a rerun computes the missing items and writes the output
    done = _faulty(ats, OutputSpec(out), autopara_info=info)
    assert _positions(done) == _positions(ats)
    assert not stage.exists()

