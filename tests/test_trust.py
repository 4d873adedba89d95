"""Outputs you can trust: no stale reuse, clear errors instead of internal ones or late failures.

One test (or a few) per numbered item of the Core III issue; each failed on the
code before it (the item's text says how).
"""

import array
import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import ase.io
import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.mixing import SumCalculator
from helpers import rattled_cu
from wflp import AutoparaInfo, ConfigSet, OutputSpec, operation
from wflp.errors import (
    InputError,
    MalformedFileError,
    OperationError,
    OutputError,
    ParameterError,
    RecordError,
    RecordMismatchError,
    UnknownNameError,
)
from wflp.ops import calculate, map, select_by_index
from wflp.records import read_record, record_path


@pytest.fixture
def counted(tmp_path):
    """An operation that logs each call, to tell reuse from recomputation."""
    log = tmp_path / "calls.log"

    @operation("scaled", version="1")
    def scaled(at, factor=1.0, index=None):
        with open(log, "a") as fd:
            fd.write(f"{index}\n")
        at.positions *= factor
        return at

    def calls():
        return [int(x) for x in log.read_text().split()] if log.exists() else []

    return scaled, calls


def _inputs(tmp_path, n=(3, 2)):
    paths = []
    for i, count in enumerate(n):
        path = tmp_path / f"p{i}.xyz"
        ase.io.write(path, rattled_cu(count, seed=i))
        paths.append(path)
    return paths


# -- 1. the output layout is part of the record ----------------------------------------------

def test_changed_output_layout_is_a_mismatch(tmp_path, counted):
    scaled, calls = counted
    p0, p1 = _inputs(tmp_path)
    a, b = tmp_path / "a.xyz", tmp_path / "b.xyz"
    scaled(ConfigSet([p0, p1]), OutputSpec([a, b]), 1.1)
    assert len(ase.io.read(a, ":")) == 3 and len(ase.io.read(b, ":")) == 2
    with pytest.raises(RecordMismatchError, match=r"layout\.outputs") as err:
        scaled(ConfigSet([p0, p1]), OutputSpec(a), 1.1)
    assert "layout.split" in err.value.differences
    assert len(calls()) == 5
    # asked to overwrite, the single file holds every input's results
    scaled(ConfigSet([p0, p1]), OutputSpec(a, overwrite=True), 1.1)
    assert len(ase.io.read(a, ":")) == 5
    assert read_record(record_path(a)).layout["split"] == "one file"


def test_partial_stage_is_resumed_only_into_the_same_layout(tmp_path):
    p0, p1 = _inputs(tmp_path)
    stop = tmp_path / "stop"

    @operation("stops")
    def stops(at, index):
        if index >= 4 and stop.exists():
            raise RuntimeError("stopped")
        return at

    info = AutoparaInfo(num_inputs_per_python_subprocess=1)
    a, b = tmp_path / "a.xyz", tmp_path / "b.xyz"
    stop.touch()
    with pytest.raises(OperationError):
        stops(ConfigSet([p0, p1]), OutputSpec([a, b]), autopara_info=info)
    stop.unlink()
    with pytest.raises(RecordMismatchError, match=r"partial output.*layout"):
        stops(ConfigSet([p0, p1]), OutputSpec(a), autopara_info=info)
    # the same layout resumes
    stops(ConfigSet([p0, p1]), OutputSpec([a, b]), autopara_info=info)
    assert len(ase.io.read(a, ":")) == 3 and len(ase.io.read(b, ":")) == 2


# -- 2. write options are part of the record -------------------------------------------------

def test_changed_write_options_are_a_mismatch(tmp_path):
    ats = rattled_cu(2)
    out = tmp_path / "o.xyz"
    calculate(ats, OutputSpec(out, write_kwargs={"columns": ["symbols", "positions"]}),
              calculator=EMT(), prefix="E_")
    assert "E_forces" not in ase.io.read(out, 0).arrays
    with pytest.raises(RecordMismatchError, match=r"output\.write_kwargs\.columns"):
        calculate(ats, OutputSpec(out), calculator=EMT(), prefix="E_")


# -- 3. plugin calculators: distribution and version are recorded ------------------------------

PLUGIN_SOURCE = '''
from ase.calculators.lj import LennardJones
from wflp import CalculatorSpec, hookimpl

def make(sigma=1.0):
    return LennardJones(sigma=sigma * SCALE, epsilon=0.1, rc=5.0)

@hookimpl
def wflp_calculators():
    return [CalculatorSpec(name="fakelj", summary="LJ from a plugin", factory=make,
                           properties=("energy", "forces"), picklable=True)]
'''


def _install_fake_plugin(tmp_path, monkeypatch, version, scale):
    """A plugin module on disk, loaded as distribution wflp-fakelj of *version*."""
    from wflp.plugins import WflpPluginManager

    folder = tmp_path / "plugin"
    folder.mkdir(exist_ok=True)
    (folder / "wflpfake_lj.py").write_text(PLUGIN_SOURCE.replace("SCALE", str(scale)))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("wflpfake_lj", None)
    importlib.invalidate_caches()

    class EntryPoint:
        name, value = "fakelj", "wflpfake_lj"
        dist = SimpleNamespace(name="wflp-fakelj", version=version)

        def load(self):
            return importlib.import_module("wflpfake_lj")

    return WflpPluginManager(entry_points=[EntryPoint()])


def test_upgraded_plugin_calculator_is_not_reused(tmp_path, monkeypatch):
    from test_cli import invoke
    from wflp.plugins import use_plugin_manager

    configs = tmp_path / "in.xyz"
    ase.io.write(configs, rattled_cu(3))
    out = tmp_path / "o.xyz"
    args = ("run", "calculator", "fakelj", "-i", str(configs), "-o", str(out))
    with use_plugin_manager(_install_fake_plugin(tmp_path, monkeypatch, "1.0", 2.0)):
        assert invoke(*args).exit_code == 0
        assert "reused" in invoke(*args).stdout
    record = read_record(record_path(out))
    assert record.providers["calculator"] == {"distribution": "wflp-fakelj", "version": "1.0"}
    assert record.parameters["calculator"]["factory"]["callable"] == "wflpfake_lj.make"
    # a new release with the same code: reused (its version is a fact, not identity)
    with use_plugin_manager(_install_fake_plugin(tmp_path, monkeypatch, "1.1", 2.0)):
        same = invoke(*args)
    assert same.exit_code == 0 and "reused" in same.stdout
    # the plugin's code changes (its module is not installed, so its source decides)
    with use_plugin_manager(_install_fake_plugin(tmp_path, monkeypatch, "1.2", 2.5)):
        again = invoke(*args)
    assert again.exit_code == 2
    assert "parameters.calculator.factory.source_sha256" in again.stderr


# -- 4. what a function or calculator reads ----------------------------------------------------

def _user_module(tmp_path, monkeypatch, body):
    folder = tmp_path / "userlib"
    folder.mkdir(exist_ok=True)
    (folder / "wflp_user_helpers.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    if "wflp_user_helpers" in sys.modules:
        return importlib.reload(sys.modules["wflp_user_helpers"])
    return importlib.import_module("wflp_user_helpers")


def test_code_of_called_user_functions_is_described(tmp_path, monkeypatch):
    helpers = _user_module(tmp_path, monkeypatch, """
        def shift(at):
            at.positions += 0.1
            return at
    """)
    out = tmp_path / "o.xyz"

    def step(at):
        return helpers.shift(at)

    map(rattled_cu(2), OutputSpec(out), step)
    map(rattled_cu(2), OutputSpec(out), step)  # same code: reused
    _user_module(tmp_path, monkeypatch, """
        def shift(at):
            at.positions += 0.2
            return at
    """)
    with pytest.raises(RecordMismatchError, match=r"nonlocal:helpers\.shift.*source_sha256"):
        map(rattled_cu(2), OutputSpec(out), step)


def test_values_read_through_module_attributes_are_described(tmp_path, monkeypatch):
    config = _user_module(tmp_path, monkeypatch, "LIMIT = 5\n")
    out = tmp_path / "o.xyz"

    def small(at):
        return at if len(at) < config.LIMIT else None

    map(rattled_cu(2), OutputSpec(out), small)
    config.LIMIT = 3
    with pytest.raises(RecordMismatchError, match=r"nonlocal:config\.LIMIT: 5 -> 3"):
        map(rattled_cu(2), OutputSpec(out), small)


def _with_default(limit):
    def keep(at, limit=limit):
        return at if len(at) < limit else None
    return keep


def test_default_arguments_are_described(tmp_path):
    out = tmp_path / "o.xyz"
    map(rattled_cu(2), OutputSpec(out), _with_default(5))
    with pytest.raises(RecordMismatchError, match=r"defaults"):
        map(rattled_cu(2), OutputSpec(out), _with_default(3))


class ScaledEMT(Calculator):
    """A user calculator that keeps a setting outside .parameters."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self._emt = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self._emt
        self.results = {"energy": self.factor * work.get_potential_energy(),
                        "forces": self.factor * work.get_forces()}


def test_calculator_attributes_outside_parameters_are_described(tmp_path):
    out = tmp_path / "o.xyz"
    ats = rattled_cu(2)
    calculate(ats, OutputSpec(out), calculator=ScaledEMT(1.0))
    calculate(ats, OutputSpec(out), calculator=ScaledEMT(1.0))  # an equal object: reused
    with pytest.raises(RecordMismatchError,
                       match=r"parameters\.calculator\.attributes\.factor: 1\.0 -> 2\.0"):
        calculate(ats, OutputSpec(out), calculator=ScaledEMT(2.0))


def test_composite_calculators_are_described(tmp_path):
    out = tmp_path / "o.xyz"
    ats = rattled_cu(2)
    calculate(ats, OutputSpec(out), calculator=SumCalculator([EMT(), LennardJones(sigma=1.0)]))
    with pytest.raises(RecordMismatchError,
                       match=r"calcs\[1\]\.parameters\.sigma: 1\.0 -> 2\.0"):
        calculate(ats, OutputSpec(out),
                  calculator=SumCalculator([EMT(), LennardJones(sigma=2.0)]))


def _norms(at):
    at.info["norm"] = float(np.linalg.norm(at.positions))
    return at


def test_installed_code_is_described_by_distribution_and_version(tmp_path):
    out = tmp_path / "o.xyz"
    map(rattled_cu(1), OutputSpec(out), _norms)
    record = read_record(record_path(out))
    func = record.parameters["func"]
    assert func["uses"]["global:np"] == {"module": "numpy", "distribution": "numpy"}
    assert record.facts["versions"]["numpy"] == np.__version__  # a fact, not identity


_WEIGHTS = array.array("d", [1.0, 2.0])  # no attributes to describe it by


def _weighted(at):
    at.info["weight"] = _WEIGHTS[0]
    return at


def test_opaque_objects_are_recorded_by_pickle_digest_and_said_once(tmp_path, caplog):
    out = tmp_path / "o.xyz"
    with caplog.at_level(logging.WARNING, logger="wflp"):
        map(rattled_cu(1), OutputSpec(out), _weighted)
        map(rattled_cu(1), OutputSpec(out), _weighted)  # reused: its state did not change
    said = [r for r in caplog.records if "cannot be described by its content" in r.message]
    assert len(said) == 1 and "array.array" in said[0].message
    record = read_record(record_path(out))
    assert record.opaque == [{"where": "parameters.func.uses[global:_WEIGHTS]",
                              "type": "array.array",
                              "how": "by a digest of its pickled state"}]
    assert "pickle_sha256" in record.parameters["func"]["uses"]["global:_WEIGHTS"]
    _WEIGHTS[0] = 3.0  # its content changes: a different computation
    try:
        with pytest.raises(RecordMismatchError, match=r"global:_WEIGHTS.*pickle_sha256"):
            map(rattled_cu(1), OutputSpec(out), _weighted)
    finally:
        _WEIGHTS[0] = 1.0


# -- 5. inputs edited during a run ---------------------------------------------------------------

def test_input_edited_during_the_run_and_restored_is_caught(tmp_path):
    source = tmp_path / "in.xyz"
    ase.io.write(source, rattled_cu(6))
    original = source.read_bytes()

    @operation("edits_its_input")
    def edits(at, index):
        if index == 1:  # someone rewrites the input while the run reads it ...
            ase.io.write(source, rattled_cu(6, seed=9))
        if index == 4:  # ... and puts the original back before it ends
            source.write_bytes(original)
        return at

    out = tmp_path / "o.xyz"
    with pytest.raises(InputError, match=r"in\.xyz.*changed while edits_its_input was running"):
        edits(ConfigSet(source), OutputSpec(out),
              autopara_info=AutoparaInfo(num_inputs_per_python_subprocess=1))
    assert not out.exists() and not record_path(out).exists()
    assert not (tmp_path / ".o.xyz.wflp-partial").exists()


# -- 9. a failure before the first chunk does not block the corrected rerun -------------------

def test_failure_before_any_chunk_does_not_block_the_corrected_rerun(tmp_path, counted):
    scaled, calls = counted
    bad = tmp_path / "in.xyz"
    ase.io.write(bad, rattled_cu(3))
    text = bad.read_text().splitlines()
    text[3] = "Cu not-a-number 0.0 0.0"
    bad.write_text("\n".join(text) + "\n")
    out = tmp_path / "o.xyz"
    with pytest.raises(MalformedFileError):
        scaled(ConfigSet(bad), OutputSpec(out), 1.1)
    ase.io.write(bad, rattled_cu(3))  # fixed
    scaled(ConfigSet(bad), OutputSpec(out), 1.2)  # other parameters too: no mismatch
    assert len(ase.io.read(out, ":")) == 3


def test_leftovers_of_a_killed_assembly_are_removed(tmp_path, counted):
    scaled, _ = counted
    out = tmp_path / "o.xyz"
    leftovers = [tmp_path / ".o.xyz.tmp-99999", tmp_path / ".o.xyz.record.json.tmp-99999"]
    for path in leftovers:
        path.write_text("half written")
    scaled(rattled_cu(2), OutputSpec(out), 1.1)
    assert not any(p.exists() for p in leftovers)


# -- 10. parameter values checked before anything runs ---------------------------------------------

def test_calculator_keywords_and_values_are_checked_from_python(tmp_path):
    out = tmp_path / "o.xyz"
    with pytest.raises(ParameterError, match=r"unknown parameter 'sigmaa'.*sigma"):
        calculate(rattled_cu(1), OutputSpec(out), calculator=("lj", [], {"sigmaa": 2.3}))
    with pytest.raises(ParameterError, match=r"'sigma' must be a number.*'abc'"):
        calculate(rattled_cu(1), OutputSpec(out), calculator=("lj", [], {"sigma": "abc"}))
    with pytest.raises(UnknownNameError, match="no calculator named 'ljj'"):
        calculate(rattled_cu(1), OutputSpec(out), calculator="ljj")
    with pytest.raises(ParameterError, match=r"unknown property 'energi'"):
        calculate(rattled_cu(1), OutputSpec(out), calculator=EMT(), properties=["energi"])
    with pytest.raises(ParameterError, match=r"indices must be a list of item positions"):
        select_by_index(rattled_cu(1), OutputSpec(out), indices="abc")
    assert list(tmp_path.iterdir()) == []


def test_cli_values_and_properties_are_checked_before_running(tmp_path):
    from test_cli import invoke

    configs = tmp_path / "in.xyz"
    ase.io.write(configs, rattled_cu(2))
    out = tmp_path / "o.xyz"
    cases = [
        (("calculator", "lj", "--set", "sigma=abc"), "'sigma' must be a number"),
        (("selector", "select_by_index", "--set", "indices=abc"), "indices must be"),
        (("calculator", "emt", "--properties", "energy,forcez"), "unknown property 'forcez'"),
    ]
    for args, message in cases:
        result = invoke("run", *args, "-i", str(configs), "-o", str(out))
        assert result.exit_code == 2, result.stdout
        assert message in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xyz"]


def test_chain_checks_every_step_value_before_the_first_runs(tmp_path):
    from wflp.chain import run_chain

    configs = tmp_path / "in.xyz"
    ase.io.write(configs, rattled_cu(2))
    chain = {"chain": {"inputs": str(configs)},
             "step": [{"kind": "calculator", "name": "emt", "output": "one.xyz"},
                      {"kind": "selector", "name": "select_by_index", "output": "two.xyz",
                       "params": {"indices": "abc"}}]}
    with pytest.raises(ParameterError, match=r"step 2.*indices must be"):
        run_chain(chain, base_dir=tmp_path)
    assert not (tmp_path / "one.xyz").exists()


# -- 11. OS errors and bad records are wflp errors naming the file ------------------------------

def test_directory_where_an_output_file_is_expected(tmp_path, counted):
    scaled, calls = counted
    (tmp_path / "o.xyz").mkdir()
    with pytest.raises(OutputError, match=r"o\.xyz.*is a directory"):
        scaled(rattled_cu(1), OutputSpec(tmp_path / "o.xyz"), 1.1)
    assert calls() == []


def test_input_that_is_a_directory(tmp_path, counted):
    scaled, _ = counted
    (tmp_path / "in.xyz").mkdir()
    with pytest.raises(InputError, match=r"in\.xyz.*is a directory"):
        scaled(ConfigSet(tmp_path / "in.xyz"), OutputSpec(tmp_path / "o.xyz"), 1.1)


def test_record_of_the_wrong_shape_is_not_a_record(tmp_path, counted):
    scaled, _ = counted
    out = tmp_path / "o.xyz"
    scaled(rattled_cu(1), OutputSpec(out), 1.1)
    for text in ("[1, 2]", '{"record_format": 2, "kind": "operation"}'):
        record_path(out).write_text(text)
        with pytest.raises(RecordError, match=r"o\.xyz\.record\.json.*is not a wflp record"):
            scaled(rattled_cu(1), OutputSpec(out), 1.1)


def test_info_string_with_a_line_break_fails_before_writing(tmp_path):
    def annotate(at):
        at.info["note"] = "first line\nsecond line"
        return at

    out = tmp_path / "o.xyz"
    ats = rattled_cu(3)
    with pytest.raises(OutputError, match=r"item 0 has a line break in info\['note'\]"):
        map(ats, OutputSpec(out), annotate)
    assert not out.exists()
    stage = tmp_path / ".o.xyz.wflp-partial"
    assert not [p for p in stage.iterdir() if p.name.startswith("c-")]


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB file system (tmpfs; needs root), or None where it cannot be mounted."""
    mnt = tmp_path / "small"
    if not (os.geteuid() == 0 and _mount_tmpfs(mnt, "size=64k")):
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_a_clear_error(tmp_path, small_fs, monkeypatch):
    ats = rattled_cu(200)  # about 100 KiB of extended XYZ
    if small_fs is None:  # no tmpfs here: the OS error is injected instead
        import errno

        real_open = open

        def full(path, *args, **kwargs):
            if ".tmp-" in str(path):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", full)
        target = tmp_path / "o.xyz"
    else:
        target = small_fs / "o.xyz"
    with pytest.raises(OutputError, match=r"No space left on device; the disk .* is full"):
        calculate(ats, OutputSpec(target), calculator=EMT())
    assert not target.exists() and not record_path(target).exists()


def test_read_only_folder_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    if os.geteuid() == 0 and _mount_tmpfs(folder, "size=64k"):
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        cleanup = True
    else:
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o500)
        cleanup = False
    try:
        with pytest.raises(OutputError, match=r"ro/\.o\.xyz\.wflp-lock.*(Read-only|Permission)"
                                              r".*choose a folder you can write to"):
            calculate(rattled_cu(1), OutputSpec(folder / "o.xyz"), calculator=EMT())
    finally:
        if cleanup:
            subprocess.run(["umount", "-l", str(folder)], check=False)


# -- 12. formats that cannot hold the output are refused before computing ------------------------

@pytest.mark.parametrize("name,message", [
    ("x.vasp", "holds one configuration per file"),
    ("x.png", "cannot read back the format 'png'"),
    ("x.foo", "cannot tell a file format"),
])
def test_unsuitable_output_formats_are_refused_at_once(tmp_path, counted, name, message):
    scaled, calls = counted
    with pytest.raises(OutputError, match=message):
        scaled(rattled_cu(1), OutputSpec(tmp_path / name), 1.1)
    assert calls() == []


def test_zero_configurations_to_a_format_that_cannot_be_empty(tmp_path):
    out = tmp_path / "o.traj"
    with pytest.raises(OutputError, match="no configurations to write.*cannot be read back"):
        map(rattled_cu(2), OutputSpec(out), lambda at: None)
    assert not out.exists()
    empty = tmp_path / "o.xyz"  # extended XYZ can be empty
    assert list(map(rattled_cu(2), OutputSpec(empty), lambda at: None)) == []


# -- 13. messages that were wrong -----------------------------------------------------------------

@operation("fails_on_three", per="chunk")
def _per_chunk_fails_on_three(items, index):
    if 3 in index:
        raise ValueError("item three is bad")
    return items


def test_per_chunk_failure_names_the_failing_item_and_honours_skip_failed():
    ats = rattled_cu(6)
    with pytest.raises(OperationError, match="failed on item 3: ValueError: item three"):
        _per_chunk_fails_on_three(ats, OutputSpec(),
                                  autopara_info=AutoparaInfo(num_inputs_per_python_subprocess=6))
    kept = list(_per_chunk_fails_on_three(
        ats, OutputSpec(), autopara_info=AutoparaInfo(num_inputs_per_python_subprocess=6,
                                                      skip_failed=True)))
    assert len(kept) == 5
    assert [a.positions.tolist() for a in kept] == \
        [a.positions.tolist() for i, a in enumerate(ats) if i != 3]


def test_spawn_without_a_main_guard_is_named(tmp_path):
    script = tmp_path / "noguard.py"
    script.write_text(textwrap.dedent("""
        from wflp import AutoparaInfo, OutputSpec
        from wflp.ops import map
        from ase.build import bulk

        def tag(at):
            return at

        map([bulk("Cu")] * 4, OutputSpec(), tag,
            autopara_info=AutoparaInfo(num_python_subprocesses=2))
    """))
    env = {**os.environ, "WFLP_MP_START_METHOD": "spawn", "WFLP_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "if __name__ == '__main__':" in proc.stderr
    assert "out of memory" not in proc.stderr.splitlines()[-1]


def test_per_file_outputs_with_one_basename_in_two_folders_are_reused(tmp_path, counted):
    scaled, calls = counted
    p0, p1 = _inputs(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    outs = [tmp_path / "x" / "out.xyz", tmp_path / "y" / "out.xyz"]
    scaled(ConfigSet([p0, p1]), OutputSpec(outs), 1.1)
    scaled(ConfigSet([p0, p1]), OutputSpec(outs), 1.1)
    assert len(calls()) == 5
    record = json.loads(record_path(outs[1]).read_text())
    assert record["layout"]["outputs"] == ["../x/out.xyz", "out.xyz"]
