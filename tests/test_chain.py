"""Declarative chains: validation before running, record-based reuse, overwrite, paths."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT
from click.testing import CliRunner
from helpers import rattled_cu
from wflp import hookimpl, operation
from wflp.chain import load_chain, parse_settings, parse_value, run_chain
from wflp.cli import cli
from wflp.errors import InputError, ParameterError, RecordMismatchError, UnknownNameError
from wflp.plugins import GeneratorSpec
from wflp.records import read_record, record_path

CHAIN = """
[chain]
inputs = "configs.xyz"
workdir = "run"

[[step]]
kind = "calculator"
name = "emt"
output = "evaluated.xyz"
prefix = "EMT_"

[[step]]
kind = "selector"
name = "select_by_index"
output = "selected.xyz"
params = { indices = [0, 2, 4] }
"""


@pytest.fixture(autouse=True)
def builtins_only(wflp_plugin_manager):
    return wflp_plugin_manager


@pytest.fixture
def chain_dir(tmp_path: Path) -> Path:
    d = tmp_path / "project"
    d.mkdir()
    ase.io.write(d / "configs.xyz", rattled_cu(6, seed=1))
    (d / "chain.toml").write_text(CHAIN)
    return d


def invoke(*args: str):
    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(
        CliRunner.__init__).parameters else {}
    return CliRunner(**kwargs).invoke(cli, list(args), catch_exceptions=False)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- values --------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [
    ("0.01", 0.01), ("3", 3), ("true", True), ("[300, 600]", [300, 600]),
    ('"emt"', "emt"), ("emt", "emt"), ("null", None), ("{a = 1}", {"a": 1}),
    ('["lj", [], {sigma = 2.0}]', ["lj", [], {"sigma": 2.0}]), ("2020-01-01", "2020-01-01"),
    ("", ""), ("a b", "a b"),
])
def test_parse_value(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_parse_settings_errors_name_the_argument():
    assert parse_settings(["fmax=0.01", "steps=10"]) == {"fmax": 0.01, "steps": 10}
    with pytest.raises(ParameterError, match="'fmax'.*KEY=VALUE"):
        parse_settings(["fmax"])
    with pytest.raises(ParameterError, match="given twice"):
        parse_settings(["a=1", "a=2"])


# -- running --------------------------------------------------------------------------------

def test_chain_runs_and_the_second_run_reuses(chain_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # paths resolve against the chain file, not the cwd
    result = run_chain(chain_dir / "chain.toml")
    run = chain_dir / "run"
    evaluated, selected = run / "evaluated.xyz", run / "selected.xyz"
    assert [s.output for s in result.steps] == [evaluated, selected]
    assert [s.reused for s in result.steps] == [False, False]
    assert [s.configs for s in result.steps] == [6, 3]
    originals = ase.io.read(chain_dir / "configs.xyz", ":")
    got = ase.io.read(selected, ":")
    for atoms, i in zip(got, (0, 2, 4)):
        ref = originals[i]
        np.testing.assert_allclose(atoms.positions, ref.positions, atol=1e-8)
        ref.calc = EMT()
        assert atoms.info["EMT_energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-9)
    assert len(list(result.outputs)) == 3

    stamps = {p: (p.stat().st_mtime_ns, record_path(p).stat().st_mtime_ns,
                  record_path(p).read_text()) for p in (evaluated, selected)}
    again = run_chain(chain_dir / "chain.toml")
    assert [s.reused for s in again.steps] == [True, True]
    for p, stamp in stamps.items():
        assert (p.stat().st_mtime_ns, record_path(p).stat().st_mtime_ns,
                record_path(p).read_text()) == stamp


def test_changed_params_refused_then_overwritten(chain_dir):
    run_chain(chain_dir / "chain.toml")
    selected = chain_dir / "run" / "selected.xyz"
    (chain_dir / "chain.toml").write_text(CHAIN.replace("[0, 2, 4]", "[1]"))
    with pytest.raises(RecordMismatchError, match=r"step 2 \(selector select_by_index\)"
                       r".*parameters\.indices") as err:
        run_chain(chain_dir / "chain.toml")
    assert "parameters.indices" in err.value.differences
    assert len(ase.io.read(selected, ":")) == 3  # untouched
    result = run_chain(chain_dir / "chain.toml", overwrite=True)
    assert [s.reused for s in result.steps] == [True, False]  # step 1 still matches
    assert len(ase.io.read(selected, ":")) == 1
    assert read_record(record_path(selected)).parameters["indices"] == [1]


def test_changed_first_step_recomputes_the_rest_with_overwrite(chain_dir):
    run_chain(chain_dir / "chain.toml")
    (chain_dir / "chain.toml").write_text(CHAIN.replace('"EMT_"', '"E_"'))
    with pytest.raises(RecordMismatchError, match=r"step 1 \(calculator emt\)"):
        run_chain(chain_dir / "chain.toml")
    result = run_chain(chain_dir / "chain.toml", overwrite=True)
    assert [s.reused for s in result.steps] == [False, False]  # step 2's input changed
    assert "E_energy" in ase.io.read(chain_dir / "run" / "selected.xyz", 0).info


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.replace("indices = [0, 2, 4]", "indexes = [0]"),
     r"step 2 \(selector select_by_index\): unknown parameter 'indexes'"),
    (lambda c: c.replace('name = "select_by_index"', 'name = "select_by_magic"'),
     r"step 2: no selector named 'select_by_magic'.*available selectors: select_by_bool"),
    (lambda c: c.replace('kind = "selector"', 'kind = "potato"'),
     r"step 2: unknown kind 'potato'"),
    (lambda c: c.replace("params = {", "parms = {"), r"step 2: unknown key\(s\) \['parms'\]"),
    (lambda c: c.replace('output = "selected.xyz"', 'output = "evaluated.xyz"'),
     r"step 2: output 'evaluated.xyz' is also the output of step 1"),
    (lambda c: c + '\n[[step]]\nkind = "selector"\nname = "select_by_index"\n'
                   'output = "x.xyz"\nparams = { indices = [0] }\nseed = 3\n',
     r"step 3 \(selector select_by_index\): a seed was given"),
    (lambda c: c.replace('prefix = "EMT_"', 'params = { asap = true }'),
     r"step 1 \(calculator emt\): unknown parameter 'asap'"),
    (lambda c: c.replace('prefix = "EMT_"', 'params = { prefix = "EMT_" }'),
     r"step 1 \(calculator emt\): 'prefix' in params is not a calculator parameter"),
    (lambda c: c.replace('inputs = "configs.xyz"', 'inputs = "missing.xyz"'),
     r"input file 'missing.xyz' does not exist"),
    (lambda c: c.replace("[chain]", "[chain]\nnproc = 0"), r"nproc must be a whole number"),
    (lambda c: c.replace("[[step]]", "[[stp]]", 1), r"unknown top-level key"),
    (lambda c: c.replace("[0, 2, 4] }", "[0, 2, 4 }"), r"not valid TOML"),
])
def test_validation_happens_before_any_step_runs(chain_dir, edit, message):
    (chain_dir / "chain.toml").write_text(edit(CHAIN))
    before = files_under(chain_dir)
    with pytest.raises((ParameterError, InputError, UnknownNameError), match=message):
        run_chain(chain_dir / "chain.toml")
    assert files_under(chain_dir) == before  # not even the workdir was created
    result = invoke("run", str(chain_dir / "chain.toml"))
    assert result.exit_code == 2
    assert "chain.toml" in result.stderr and result.stderr.strip().count("\n") == 0
    assert files_under(chain_dir) == before


def test_unknown_name_error_is_the_registrys(chain_dir):
    (chain_dir / "chain.toml").write_text(CHAIN.replace('name = "emt"', 'name = "emx"'))
    with pytest.raises(UnknownNameError, match="available calculators: committee, emt, lj"):
        load_chain(chain_dir / "chain.toml")


def test_chain_from_a_dict_with_base_dir(chain_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"chain": {"inputs": ["configs.xyz"]},
            "step": [{"kind": "calculators", "name": "lj", "output": "lj.xyz",
                      "params": {"sigma": 2.3, "epsilon": 0.1}, "properties": ["energy"]}]}
    result = run_chain(spec, base_dir=chain_dir)
    assert result.steps[0].output == chain_dir / "lj.xyz"
    atoms = ase.io.read(chain_dir / "lj.xyz", 0)
    assert set(k for k in atoms.info if k.startswith("lj_")) == {"lj_energy"}
    with pytest.raises(InputError, match="configs.xyz"):
        run_chain(spec)  # base_dir defaults to the current directory


def test_cli_chain_reuse_mismatch_overwrite(chain_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = invoke("run", str(chain_dir / "chain.toml"))
    assert first.exit_code == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines[0].startswith("step 1: calculator emt -> ") and "6 configs" in lines[0]
    assert lines[1].startswith("step 2: selector select_by_index") and "3 configs" in lines[1]
    second = invoke("run", str(chain_dir / "chain.toml"))
    assert second.exit_code == 0
    assert second.stdout.count("reused (record matches)") == 2

    (chain_dir / "chain.toml").write_text(CHAIN.replace("[0, 2, 4]", "[5]"))
    refused = invoke("run", str(chain_dir / "chain.toml"))
    assert refused.exit_code == 2
    assert "step 2" in refused.stderr and "--overwrite" in refused.stderr
    forced = invoke("run", str(chain_dir / "chain.toml"), "--overwrite")
    assert forced.exit_code == 0, forced.stderr
    assert "reused" in forced.stdout.splitlines()[0] and "1 config," in forced.stdout

    # KIND NAME options make no sense with a chain file
    mixed = invoke("run", str(chain_dir / "chain.toml"), "-o", "x.xyz")
    assert mixed.exit_code == 2 and "-o/--output" in mixed.stderr


def test_dry_run_validates_and_writes_nothing(chain_dir):
    before = files_under(chain_dir)
    result = invoke("run", str(chain_dir / "chain.toml"), "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert '"select_by_index"' in result.stdout and '"EMT_"' in result.stdout
    assert files_under(chain_dir) == before


@operation("chain_test_rattle", version="1")
def _rattle(atoms, stdev: float = 0.1, rng=None):
    new = atoms.copy()
    new.positions += rng.normal(scale=stdev, size=new.positions.shape)
    return new


class _RattlePlugin:
    @hookimpl
    def wflp_generators(self):
        return [GeneratorSpec(name="chain_test_rattle", summary="test generator",
                              operation=_rattle)]


def test_seeds_and_nproc(chain_dir, register_wflp_plugin):
    register_wflp_plugin(_RattlePlugin())
    text = """
[chain]
inputs = "configs.xyz"
seed = 11
nproc = 2

[[step]]
kind = "generator"
name = "chain_test_rattle"
output = "a.xyz"

[[step]]
kind = "generator"
name = "chain_test_rattle"
output = "b.xyz"
seed = 12
"""
    (chain_dir / "seeded.toml").write_text(text)
    plan = load_chain(chain_dir / "seeded.toml")
    assert [s.seed for s in plan.steps] == [11, 12] and plan.nproc == 2
    run_chain(chain_dir / "seeded.toml")
    assert read_record(record_path(chain_dir / "a.xyz")).parameters["seed"] == 11
    assert read_record(record_path(chain_dir / "b.xyz")).parameters["seed"] == 12
    # same seed, same result, whatever the process count
    single = {"chain": {"inputs": "configs.xyz", "seed": 11},
              "step": [{"kind": "generator", "name": "chain_test_rattle", "output": "c.xyz"}]}
    run_chain(single, base_dir=chain_dir)
    for x, y in zip(ase.io.read(chain_dir / "a.xyz", ":"), ase.io.read(chain_dir / "c.xyz", ":")):
        np.testing.assert_array_equal(x.positions, y.positions)


def test_workdir_is_relative_to_the_chain_file(chain_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old = os.getcwd()
    os.chdir(elsewhere)
    try:
        result = invoke("run", os.path.relpath(chain_dir / "chain.toml"))
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.stderr
    assert (chain_dir / "run" / "selected.xyz").exists()
    assert list(elsewhere.iterdir()) == []
