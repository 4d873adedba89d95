"""The wflp command line: version, list-plugins, records show, run KIND NAME, errors."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import wflp
from ase.calculators.emt import EMT
from click.testing import CliRunner
from helpers import rattled_cu
from wflp import OutputSpec, hookimpl, operation
from wflp.cli import cli
from wflp.ops import calculate
from wflp.plugins import GeneratorSpec, WflpPluginManager, use_plugin_manager
from wflp.records import read_record, record_path


def invoke(*args: str, cwd: Path | None = None):
    """Run the CLI in this process; stdout and stderr kept apart."""
    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(
        CliRunner.__init__).parameters else {}
    runner = CliRunner(**kwargs)
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(cli, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)


def run_wflp(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a new process, as a user would."""
    env = dict(os.environ, WFLP_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "wflp.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    path = tmp_path / "configs.xyz"
    ase.io.write(path, rattled_cu(6, seed=3))
    return path


@pytest.fixture
def builtins_only(wflp_plugin_manager):
    """Only wflp's own registrations, whatever else is installed."""
    return wflp_plugin_manager


# -- version and errors -------------------------------------------------------------------

def test_version_in_process_and_as_a_program():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"wflp {wflp.__version__}"
    proc = run_wflp("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wflp {wflp.__version__}"


def test_errors_are_one_line_with_exit_2(tmp_path, configs):
    proc = run_wflp("run", "calculator", "no_such_calc", "-i", str(configs),
                    "-o", str(tmp_path / "out.xyz"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wflp: error:")
    assert "no_such_calc" in lines[0] and "available calculators:" in lines[0]
    assert "emt" in lines[0] and "lj" in lines[0]
    assert not (tmp_path / "out.xyz").exists()


def test_debug_shows_the_traceback(tmp_path, configs):
    proc = run_wflp("--debug", "run", "calculator", "no_such_calc", "-i", str(configs),
                    "-o", str(tmp_path / "out.xyz"))
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert "UnknownNameError" in proc.stderr


def test_no_command_shows_the_help():
    result = invoke()
    assert result.exit_code == 0
    assert "Commands:" in result.stdout
    for command in ("list-plugins", "records", "run", "new-plugin"):
        assert command in result.stdout


def test_verbose_logs_reuse(tmp_path, configs, builtins_only):
    out = str(tmp_path / "o.xyz")
    assert invoke("run", "calculator", "emt", "-i", str(configs), "-o", out).exit_code == 0
    quiet = invoke("run", "calculator", "emt", "-i", str(configs), "-o", out)
    assert "reusing" not in quiet.stderr
    verbose = invoke("-v", "run", "calculator", "emt", "-i", str(configs), "-o", out)
    assert verbose.exit_code == 0
    assert "wflp: INFO: calculate: reusing" in verbose.stderr


def test_usage_errors_are_one_line_with_exit_2(configs):
    result = invoke("run", "calculator", "emt", "-i", str(configs))  # no -o
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "-o/--output" in result.stderr
    result = invoke("list-plugins", "--no-such-option")
    assert result.exit_code == 2
    assert "--no-such-option" in result.stderr and result.stderr.strip().count("\n") == 0
    result = invoke("run", "a", "b", "c")
    assert result.exit_code == 2 and "expected CHAIN.toml or KIND NAME" in result.stderr


# -- list-plugins ---------------------------------------------------------------------------

def test_list_plugins_table_shows_the_builtins(builtins_only):
    result = invoke("list-plugins")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["DISTRIBUTION", "VERSION", "STATUS", "KIND", "NAMES"]
    row = next(ln for ln in lines if ln.startswith("wflp "))
    assert row.split()[:4] == ["wflp", wflp.__version__, "ok", "calculators"]
    assert row.endswith("committee, emt, lj")
    assert any(ln.split()[:1] == ["selectors"] and "select_by_index" in ln for ln in lines)


def test_list_plugins_json(builtins_only):
    result = invoke("list-plugins", "--json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    core = next(r for r in records if r["distribution"] == "wflp")
    assert core["status"] == "ok"
    assert core["version"] == wflp.__version__
    assert {"emt", "lj"} <= set(core["registered"]["calculators"])
    assert {"serial", "pool"} <= set(core["registered"]["executors"])


def test_list_plugins_kind_filter(builtins_only):
    result = invoke("list-plugins", "--kind", "selector", "--json")
    assert result.exit_code == 0, result.stderr
    core = next(r for r in json.loads(result.stdout) if r["distribution"] == "wflp")
    assert set(core["registered"]) == {"selectors"}
    table = invoke("list-plugins", "--kind", "calculators").stdout
    assert "committee, emt, lj" in table
    assert "select_by_index" not in table and "executors" not in table
    bad = invoke("list-plugins", "--kind", "potatoes")
    assert bad.exit_code == 2
    assert "--kind" in bad.stderr and "calculators" in bad.stderr


class _FakeDist:
    def __init__(self, name: str, version: str):
        self.name, self.version = name, version


class _FakeEntryPoint:
    """An installed plugin whose import fails, as wflp would find it."""

    def __init__(self, name: str, dist: str, error: Exception | None = None):
        self.name, self.value, self.dist = name, f"{name}_mod", _FakeDist(dist, "1.2.3")
        self.error = error

    def load(self):
        raise self.error


def test_list_plugins_reports_failed_and_disabled_plugins(monkeypatch):
    eps = [_FakeEntryPoint("broken", "wflp-broken", ImportError("no module named torch")),
           _FakeEntryPoint("other", "wflp-other", ImportError("never imported"))]
    pm = WflpPluginManager(entry_points=eps, strict=False, allow=["broken"])
    with use_plugin_manager(pm):
        table = invoke("list-plugins").stdout
        records = json.loads(invoke("list-plugins", "--json").stdout)
        filtered = invoke("list-plugins", "--kind", "calculators").stdout
    broken = next(ln for ln in table.splitlines() if ln.startswith("wflp-broken"))
    assert broken.split()[:3] == ["wflp-broken", "1.2.3", "failed"]
    assert "no module named torch" in table
    other = next(ln for ln in table.splitlines() if ln.startswith("wflp-other"))
    assert other.split()[2] == "disabled"
    by_dist = {r["distribution"]: r for r in records}
    assert by_dist["wflp-broken"]["status"] == "failed"
    assert "no module named torch" in by_dist["wflp-broken"]["error"]
    assert by_dist["wflp-other"]["status"] == "disabled"
    # a filter by kind keeps the plugins that failed: they may be why a name is missing
    assert "wflp-broken" in filtered and "emt, lj" in filtered


def test_list_plugins_as_a_program_discovers_installed_plugins():
    proc = run_wflp("list-plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert records[0]["distribution"] == "wflp" and records[0]["status"] == "ok"


# -- records show -------------------------------------------------------------------------

def test_records_show(tmp_path, configs):
    out = tmp_path / "evaluated.xyz"
    calculate(str(configs), OutputSpec(out), calculator=("emt", [], {}), prefix="EMT_")
    result = invoke("records", "show", str(out), cwd=tmp_path)  # paths shown from here
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert f"operation:   calculate v{calculate.version}" in text
    assert "  operation: wflp " + wflp.__version__ in text
    assert "  calculator: wflp " + wflp.__version__ in text  # emt is registered by wflp
    assert '"registered": "emt"' in text
    assert 'prefix = "EMT_"' in text
    assert f"  {os.path.relpath(configs, tmp_path)} (sha256 " in text
    assert "evaluated.xyz: 6 configs" in text
    assert "(matches its record)" in text
    record = read_record(record_path(out))
    assert record.inputs["sha256"] in text and record.run["host"] in text

    raw = invoke("records", "show", str(out), "--json")
    assert raw.exit_code == 0
    assert json.loads(raw.stdout) == json.loads(record_path(out).read_text())
    # the record file itself may be given too
    assert invoke("records", "show", str(record_path(out)), cwd=tmp_path).stdout == text

    with open(out, "a") as fd:
        fd.write("\n")
    assert "MODIFIED since wflp wrote it" in invoke("records", "show", str(out)).stdout


def test_records_show_missing_output_or_record(tmp_path):
    missing = invoke("records", "show", str(tmp_path / "nope.xyz"))
    assert missing.exit_code == 2
    assert "nope.xyz" in missing.stderr and "does not exist" in missing.stderr
    plain = tmp_path / "plain.xyz"
    ase.io.write(plain, rattled_cu(1))
    no_record = invoke("records", "show", str(plain))
    assert no_record.exit_code == 2
    assert "plain.xyz" in no_record.stderr and "has no wflp record" in no_record.stderr
    assert no_record.stderr.strip().count("\n") == 0


# -- run KIND NAME ----------------------------------------------------------------------------

def test_run_calculator_matches_emt(tmp_path, configs, builtins_only):
    out = tmp_path / "out.xyz"
    result = invoke("run", "calculator", "emt", "-i", str(configs), "-o", str(out),
                    "--prefix", "EMT_", "--properties", "energy,forces")
    assert result.exit_code == 0, result.stderr
    assert "6 configs" in result.stdout and "done in" in result.stdout
    got = ase.io.read(out, ":")
    assert len(got) == 6
    for atoms, ref in zip(got, ase.io.read(configs, ":")):
        ref.calc = EMT()
        assert atoms.info["EMT_energy"] == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(atoms.arrays["EMT_forces"], ref.get_forces(), atol=1e-7)
        assert "EMT_stress" not in atoms.info  # only the properties asked for
    record = read_record(record_path(out))
    assert record.parameters["calculator"]["registered"] == "emt"
    assert record.parameters["properties"] == ["energy", "forces"]

    # a second run reuses the output: the record is untouched
    before = record_path(out).stat().st_mtime_ns
    again = invoke("run", "calculator", "emt", "-i", str(configs), "-o", str(out),
                   "--prefix", "EMT_", "--properties", "energy,forces")
    assert again.exit_code == 0, again.stderr
    assert "reused" in again.stdout
    assert record_path(out).stat().st_mtime_ns == before


def test_run_calculator_set_goes_to_the_factory(tmp_path, configs, builtins_only):
    out = tmp_path / "lj.xyz"
    result = invoke("run", "calculator", "lj", "-i", str(configs), "-o", str(out),
                    "--set", "sigma=2.3", "--set", "epsilon=0.5", "--set", "rc=6")
    assert result.exit_code == 0, result.stderr
    from ase.calculators.lj import LennardJones

    atoms = ase.io.read(out, 0)
    ref = ase.io.read(configs, 0)
    ref.calc = LennardJones(sigma=2.3, epsilon=0.5, rc=6)
    assert atoms.info["lj_energy"] == pytest.approx(ref.get_potential_energy(), rel=1e-12)
    params = read_record(record_path(out)).parameters["calculator"]
    assert params["registered"] == "lj"
    assert params["kwargs"] == {"epsilon": 0.5, "rc": 6, "sigma": 2.3}


@pytest.mark.parametrize("kind,name,setting,key", [
    ("calculator", "emt", "bogus=1", "bogus"),
    ("selector", "select_by_index", "indixes=[0]", "indixes"),
])
def test_run_bad_set_key_writes_nothing(tmp_path, configs, builtins_only, kind, name, setting,
                                        key):
    out = tmp_path / "sub" / "out.xyz"
    result = invoke("run", kind, name, "-i", str(configs), "-o", str(out), "--set", setting)
    assert result.exit_code == 2
    assert f"'{key}'" in result.stderr and "--set" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "sub").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs.xyz"]


def test_run_set_prefix_points_to_the_option(tmp_path, configs, builtins_only):
    result = invoke("run", "calculator", "emt", "-i", str(configs), "-o",
                    str(tmp_path / "o.xyz"), "--set", "prefix=X_")
    assert result.exit_code == 2 and "--prefix" in result.stderr


def test_run_unknown_name_lists_what_is_available(tmp_path, configs, builtins_only):
    result = invoke("run", "selector", "select_by_magic", "-i", str(configs), "-o",
                    str(tmp_path / "o.xyz"))
    assert result.exit_code == 2
    assert "select_by_magic" in result.stderr
    assert "available selectors: select_by_bool, " in result.stderr
    assert "select_by_index" in result.stderr
    unknown_kind = invoke("run", "executor", "x", "-i", str(configs), "-o",
                          str(tmp_path / "o.xyz"))
    assert unknown_kind.exit_code == 2 and "cannot be run as a step" in unknown_kind.stderr


def test_run_selector_with_parsed_values_and_overwrite(tmp_path, configs, builtins_only):
    out = tmp_path / "sel.xyz"
    result = invoke("run", "selector", "select_by_index", "-i", str(configs), "-o", str(out),
                    "--set", "indices=[1, 4]")
    assert result.exit_code == 0, result.stderr
    originals = ase.io.read(configs, ":")
    got = ase.io.read(out, ":")
    assert [a.positions.tolist() for a in got] == [originals[i].positions.tolist()
                                                    for i in (1, 4)]
    # other parameters for the same output: refused, then replaced with --overwrite
    changed = invoke("run", "selector", "select_by_index", "-i", str(configs), "-o", str(out),
                     "--set", "indices=[2]")
    assert changed.exit_code == 2
    assert "--overwrite" in changed.stderr and "indices" in changed.stderr
    assert len(ase.io.read(out, ":")) == 2
    forced = invoke("run", "selector", "select_by_index", "-i", str(configs), "-o", str(out),
                    "--set", "indices=[2]", "--overwrite")
    assert forced.exit_code == 0, forced.stderr
    got = ase.io.read(out, ":")
    assert [a.positions.tolist() for a in got] == [originals[2].positions.tolist()]


def test_run_missing_input_is_named(tmp_path, builtins_only):
    result = invoke("run", "calculator", "emt", "-i", str(tmp_path / "nope.xyz"), "-o",
                    str(tmp_path / "o.xyz"))
    assert result.exit_code == 2
    assert "-i/--input" in result.stderr and "nope.xyz" in result.stderr


@operation("cli_test_rattle", version="1")
def _rattle(atoms, copies: int = 1, stdev: float = 0.1, calculator=None, rng=None):
    out = []
    for _ in range(copies):
        new = atoms.copy()
        new.positions += rng.normal(scale=stdev, size=new.positions.shape)
        out.append(new)
    return out


class _RattlePlugin:
    @hookimpl
    def wflp_generators(self):
        return [GeneratorSpec(name="cli_test_rattle", summary="test generator",
                              operation=_rattle)]


def test_run_generator_with_seed(tmp_path, configs, builtins_only, register_wflp_plugin):
    register_wflp_plugin(_RattlePlugin())
    out1, out2 = tmp_path / "r1.xyz", tmp_path / "r2.xyz"
    for out in (out1, out2):
        result = invoke("run", "generator", "cli_test_rattle", "-i", str(configs), "-o",
                        str(out), "--set", "copies=2", "--seed", "5")
        assert result.exit_code == 0, result.stderr
    a, b = ase.io.read(out1, ":"), ase.io.read(out2, ":")
    assert len(a) == 12
    assert all(np.array_equal(x.positions, y.positions) for x, y in zip(a, b))
    assert read_record(record_path(out1)).parameters["seed"] == 5
    # a string for a parameter named calculator is a registered calculator name
    bad_calc = invoke("run", "generator", "cli_test_rattle", "-i", str(configs), "-o",
                      str(tmp_path / "r3.xyz"), "--set", "calculator=nope", "--seed", "1")
    assert bad_calc.exit_code == 2
    assert "'calculator'" in bad_calc.stderr and "available calculators" in bad_calc.stderr
    ok_calc = invoke("run", "generator", "cli_test_rattle", "-i", str(configs), "-o",
                     str(tmp_path / "r3.xyz"), "--set", "calculator=emt", "--seed", "1",
                     "--dry-run")
    assert ok_calc.exit_code == 0, ok_calc.stderr
    assert json.loads(ok_calc.stdout)["steps"][0]["params"]["calculator"] == "emt"
    assert not (tmp_path / "r3.xyz").exists()
    # a seed for an operation without random numbers is a mistake
    no_rng = invoke("run", "selector", "select_by_index", "-i", str(configs), "-o",
                    str(tmp_path / "s.xyz"), "--set", "indices=[0]", "--seed", "1")
    assert no_rng.exit_code == 2 and "seed" in no_rng.stderr


def test_run_with_nproc_gives_the_serial_result(tmp_path, configs, builtins_only):
    serial, parallel = tmp_path / "s.xyz", tmp_path / "p.xyz"
    assert invoke("run", "calculator", "emt", "-i", str(configs), "-o", str(serial)
                  ).exit_code == 0
    result = invoke("run", "calculator", "emt", "-i", str(configs), "-o", str(parallel),
                    "--nproc", "2")
    assert result.exit_code == 0, result.stderr
    for a, b in zip(ase.io.read(serial, ":"), ase.io.read(parallel, ":")):
        assert a.info["emt_energy"] == pytest.approx(b.info["emt_energy"], abs=1e-10)


# -- the documentation's walkthrough runs as written ------------------------------------------

def _walkthrough_blocks() -> list[tuple[str, str]]:
    """(language, text) of the code blocks in docs/cli.md's Walkthrough section."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    section = text.split("\n## Walkthrough\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_docs_walkthrough_runs(tmp_path):
    blocks = _walkthrough_blocks()
    assert len(blocks) >= 5
    ran = 0
    for lang, body in blocks:
        if lang == "toml":
            first, _, rest = body.partition("\n")
            assert first.startswith("# "), "a toml block starts with '# FILENAME'"
            (tmp_path / first[2:].strip()).write_text(rest)
            continue
        assert lang == "bash"
        for line in body.splitlines():
            if not line.strip():
                continue
            expected = 2 if re.search(r"#\s*exit 2\s*$", line) else 0
            argv = shlex.split(line, comments=True)
            if argv[0] == "wflp":
                argv = [sys.executable, "-m", "wflp.cli", *argv[1:]]
            elif argv[0] == "python":
                argv = [sys.executable, *argv[1:]]
            env = dict(os.environ, WFLP_PROGRESS="0")
            proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert proc.returncode == expected, f"{line}\n{proc.stdout}\n{proc.stderr}"
            if expected:
                assert proc.stderr.strip().count("\n") == 0, proc.stderr
            ran += 1
    assert ran >= 15
    assert len(ase.io.read(tmp_path / "some.xyz", ":")) == 1
    assert len(ase.io.read(tmp_path / "run" / "selected.xyz", ":")) == 2
    assert (tmp_path / "wflp-my-calc" / "pyproject.toml").exists()
