"""wflp new-plugin: what it writes, what it refuses, and that a plugin of every kind is
discovered and passes its own tests (the slow test puts the scaffolded plugins on the path
with an entry point each, as an installation would, without pip)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import wflp
from click.testing import CliRunner
from wflp.chain import _toml
from wflp.cli import cli
from wflp.plugins.compat import plugin_requirement
from wflp.plugins.kinds import TABLE
from wflp.scaffold import SCAFFOLD_KINDS, plugin_names, render

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(
        CliRunner.__init__).parameters else {}
    return CliRunner(**kwargs).invoke(cli, list(args), catch_exceptions=False)


def test_names_are_normalized_like_the_registry():
    assert plugin_names("My-Calc") == ("my_calc", "wflp-my-calc", "wflp_my_calc")
    assert plugin_names("gap.fit") == ("gap_fit", "wflp-gap-fit", "wflp_gap_fit")


def test_new_plugin_writes_a_distribution(tmp_path):
    result = invoke("new-plugin", "My-Calc", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    root = tmp_path / "wflp-my-calc"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "tests/test_my_calc.py",
        "wflp_my_calc/__init__.py", "wflp_my_calc/calculator.py"]
    meta = _toml().loads((root / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "wflp-my-calc"
    # the versions of this core's plugin interface, and the version read from one place
    assert plugin_requirement(wflp.__version__) in meta["project"]["dependencies"]
    assert meta["project"]["dynamic"] == ["version"] and "version" not in meta["project"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "wflp_my_calc.__version__"}
    assert meta["project"]["entry-points"]["wflp"] == {"my_calc": "wflp_my_calc"}
    init = (root / "wflp_my_calc" / "__init__.py").read_text()
    assert "@hookimpl" in init and 'name="my_calc"' in init
    assert "pip install -e" in result.stdout and "wflp-my-calc" in result.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder


def test_new_plugin_refuses_an_existing_directory(tmp_path):
    root = tmp_path / "wflp-taken"
    root.mkdir()
    (root / "mine.txt").write_text("keep me")
    result = invoke("new-plugin", "taken", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "wflp-taken" in result.stderr
    assert [p.name for p in root.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wflp-taken"]


@pytest.mark.parametrize("name", ["9lives", "bad name!", "", "wflp-x"])
def test_new_plugin_rejects_bad_names(tmp_path, name):
    result = invoke("new-plugin", name, "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert repr(name) in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_every_kind_of_the_table_has_an_example():
    assert SCAFFOLD_KINDS == tuple(k.name for k in TABLE)
    result = invoke("new-plugin", "--help")
    assert all(k.name in " ".join(result.stdout.split()) for k in TABLE)


def test_new_plugin_rejects_an_unknown_kind(tmp_path):
    result = invoke("new-plugin", "x", "--dir", str(tmp_path), "--kind", "potatoes")
    assert result.exit_code == 2 and "--kind" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_every_kind_renders_valid_python(kind):
    files = render("demo", kind)
    assert "tests/test_demo.py" in files
    for rel, text in files.items():
        assert "{{" not in text, f"unfilled placeholder in {rel}"
        if rel.endswith(".py"):
            compile(text, rel, "exec")
    init = files["wflp_demo/__init__.py"]
    assert f"def wflp_{kind}(" in init


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_scaffolded_code_passes_the_projects_lint(tmp_path):
    for kind in SCAFFOLD_KINDS:
        assert invoke("new-plugin", f"lint-{kind}", "--dir", str(tmp_path), "--kind", kind
                      ).exit_code == 0
    proc = subprocess.run(["ruff", "check", "--no-cache", "--config",
                           str(REPO / "pyproject.toml"), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the real thing: discover, run the generated tests ------------------------------------

def _as_if_installed(root: Path, site: Path) -> None:
    """What `pip install` leaves for importlib.metadata: a .dist-info folder with the
    name, version, requirements and entry points of the plugin's pyproject.toml."""
    meta = _toml().loads((root / "pyproject.toml").read_text())["project"]
    version = meta.get("version", "0.1.0")
    info = site / f"{meta['name'].replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    requires = "".join(f"Requires-Dist: {d}\n" for d in meta["dependencies"])
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\n"
                                   f"Version: {version}\n{requires}")
    (info / "entry_points.txt").write_text("[wflp]\n" + "".join(
        f"{name} = {value}\n" for name, value in meta["entry-points"]["wflp"].items()))


@pytest.mark.slow
def test_a_scaffolded_plugin_of_every_kind_is_discovered_and_passes_its_tests(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    roots = []
    for kind in SCAFFOLD_KINDS:
        result = invoke("new-plugin", f"scaffoldtest-{kind}", "--dir", str(tmp_path),
                        "--kind", kind)
        assert result.exit_code == 0, result.stderr
        roots.append(tmp_path / f"wflp-scaffoldtest-{kind}")
        _as_if_installed(roots[-1], site)
    env = {k: v for k, v in os.environ.items() if k not in ("WFLP_LOAD_PLUGINS", "WFLP_HOME")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *map(str, roots)])
    env["WFLP_STRICT_PLUGINS"] = "1"  # any problem of a scaffolded plugin is an error
    listed = subprocess.run([sys.executable, "-m", "wflp.cli", "list-plugins", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    records = {r["distribution"]: r for r in json.loads(listed.stdout)}
    for kind, root in zip(SCAFFOLD_KINDS, roots):
        record = records[root.name]
        assert record["status"] == "ok", record
        assert kind in record["registered"], record
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *[str(r / "tests") for r in roots]],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{2 * len(roots)} passed" in proc.stdout
