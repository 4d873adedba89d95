"""wflp new-plugin: what it writes, what it refuses, and that the result installs and passes
its own tests (the slow test installs the scaffolded plugins with pip)."""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from wflp.chain import _toml
from wflp.cli import cli
from wflp.scaffold import SCAFFOLD_KINDS, WFLP_REQUIREMENT, plugin_names, render

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
    assert WFLP_REQUIREMENT in meta["project"]["dependencies"]
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


# -- the real thing: install, discover, run the generated tests ------------------------------

def _pip(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def _can_build_without_isolation() -> bool:
    """setuptools builds wheels by itself from 70.1 on; before that it needs `wheel`."""
    try:
        from importlib.metadata import version

        major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    except Exception:
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture
def installed_plugins(tmp_path):
    """Scaffold one plugin of every kind and pip-install them; uninstall afterwards."""
    roots = []
    for kind in SCAFFOLD_KINDS:
        result = invoke("new-plugin", f"scaffoldtest-{kind}", "--dir", str(tmp_path),
                        "--kind", kind)
        assert result.exit_code == 0, result.stderr
        roots.append(tmp_path / f"wflp-scaffoldtest-{kind}")
    dists = [r.name for r in roots]
    build = ["--no-build-isolation"] if _can_build_without_isolation() else []
    try:
        proc = _pip("install", "--no-deps", *build, *map(str, roots))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield roots
    finally:
        _pip("uninstall", "-y", *dists)


@pytest.mark.slow
def test_scaffolded_plugins_install_and_pass_their_tests(installed_plugins):
    env = {k: v for k, v in os.environ.items() if k != "WFLP_LOAD_PLUGINS"}
    listed = subprocess.run([sys.executable, "-m", "wflp.cli", "list-plugins"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    for root in installed_plugins:
        row = next((ln for ln in listed.stdout.splitlines() if ln.startswith(root.name + " ")),
                   None)
        assert row is not None and row.split()[2] == "ok", listed.stdout
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                              cwd=root, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"{root.name}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        assert "2 passed" in proc.stdout
