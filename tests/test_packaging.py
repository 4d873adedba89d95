"""Packaging: one version per distribution, plugins' declared wflp requirement, the
check that refuses a plugin made for another wflp, and the bootstrap's requires-python
skip. (Building and installing the wheels themselves: scripts/check-wheels.sh, in CI.)
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import wflp
import wflp.plugins as plugins
from wflp.errors import PluginError
from wflp.plugins import WflpPluginManager
from wflp.plugins.compat import (
    core_requirement,
    incompatibility,
    parse_version,
    plugin_requirement,
    specifier_contains,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))


# -- versions and specifiers (compat.py reads them without `packaging`) ----------------------

def test_versions_sort_as_pep_440_says():
    # PEP 440's own ordering example, shuffled, plus equal spellings
    ordered = ["1.0.dev456", "1.0a1", "1.0a2.dev456", "1.0a12.dev456", "1.0a12",
               "1.0b1.dev456", "1.0b2", "1.0b2.post345.dev456", "1.0b2.post345", "1.0rc1.dev456",
               "1.0rc1", "1.0", "1.0+abc.5", "1.0+abc.7", "1.0+5", "1.0.post456.dev34",
               "1.0.post456", "1.1.dev1"]
    shuffled = ordered[7:] + ordered[:7]
    assert sorted(shuffled, key=lambda v: parse_version(v).key()) == ordered
    assert parse_version("1.0").key() == parse_version("1.0.0").key()
    assert parse_version("1.0-RC1").key() == parse_version("1.0rc1").key()
    assert parse_version("not a version") is None


@pytest.mark.parametrize("spec, version, expected", [
    (">=0.1,<0.2", "0.1.0", True),
    (">=0.1,<0.2", "0.1.9", True),
    (">=0.1,<0.2", "0.2.0", False),
    (">=0.1,<0.2", "0.2.0.dev0", False),    # <0.2 excludes 0.2's own pre-releases
    (">=0.1,<0.2", "0.0.9", False),
    (">=0.1,<0.2", "0.1.0+local", True),
    ("<0.2", "0.2.0a1", False),
    ("<0.2.0rc1", "0.2.0a1", True),         # ... unless the bound is a pre-release
    (">0.1.0", "0.1.0.post1", False),       # >V excludes V's post-releases
    ("~=0.1.2", "0.1.7", True),
    ("~=0.1.2", "0.2.0", False),
    ("==0.1.*", "0.1.5rc1", True),
    ("!=0.1.*", "0.1.5", False),
    ("", "0.1.0", True),
    ("wflp", "0.1.0", None),                # not a specifier: cannot tell
    (">=0.1", "not-a-version", None),
    (">=0.1,<0.2,>=oops", "0.3", False),    # a readable clause that excludes is enough
    (">=0.1,>=oops", "0.3", None),
])
def test_specifier_contains(spec, version, expected):
    assert specifier_contains(spec, version) is expected


def test_specifier_contains_agrees_with_packaging():
    """A cross-check against the reference implementation, where it is installed (pip's
    own tests use it; wflp does not depend on it)."""
    packaging = pytest.importorskip("packaging.specifiers")
    versions = ["0.1", "0.1.0", "0.1.5", "0.2", "0.2.0.dev0", "0.2.0a1", "0.2.0rc1",
                "0.1.0.post1", "0.1.0+local.7", "1!0.1", "0.0.9", "0.10.0", "1.0",
                "0.2.0.post1", "0.2.0+x", "0.1.0a1.post2.dev3", "0.1.1rc1"]
    specs = [">=0.1,<0.2", "~=0.1.0", "~=0.1", "==0.1.*", "!=0.1.*", "==0.1",
             "==0.1.0+local.7", "!=0.1.0", ">0.1", ">0.1.0", "<0.2", "<0.2.0a1", "<=0.1",
             ">=0.2.0.dev0", "", "===0.1.0", ">=1!0", ">0.1.0.post0", "~=0.1.0a1",
             ">=0.1.0a1,<0.2.0rc1", "==1!0.*", "==0.1.0.*"]
    wrong = [(s, v) for s, v in itertools.product(specs, versions)
             if specifier_contains(s, v)
             is not packaging.SpecifierSet(s).contains(v, prereleases=True)]
    assert wrong == []


@pytest.mark.parametrize("requires, expected", [
    (["ase>=3.23", "wflp<0.2,>=0.1", "pytest>=7; extra == 'test'"], "<0.2,>=0.1"),
    (["wflp (>=0.1,<0.2)"], ">=0.1,<0.2"),
    (["WFLP[progress] >= 0.1"], ">=0.1"),
    (["wflp"], ""),
    (["wflp-xtb>=1", "wflpx<9"], None),           # other distributions
    (["wflp>=9; extra == 'dev'"], None),          # only under an extra
    (["wflp @ file:///src/wflp"], None),          # a URL: nothing to compare
    (None, None),
])
def test_core_requirement_from_requires_dist(requires, expected):
    assert core_requirement(requires) == expected


def test_incompatibility_says_what_to_install():
    why = incompatibility("wflp-old", ["wflp>=0.0.1,<0.1"], "0.1.0")
    assert why == ("it needs wflp>=0.0.1,<0.1 but this is wflp 0.1.0; "
                   "install a wflp it supports (pip install 'wflp>=0.0.1,<0.1') or a "
                   "wflp-old made for this one (pip install wflp-old 'wflp==0.1.0')")
    assert incompatibility("wflp-ok", ["wflp>=0.1,<0.2"], "0.1.3") is None
    assert incompatibility("wflp-any", ["numpy"], "0.1.0") is None
    assert incompatibility("wflp-odd", ["wflp>=0.1,<0.2,>=foo"], "0.1.0") is None


# -- fake installed distributions ---------------------------------------------------------------

def _fake_dist(site: Path, dist: str, module: str, requires: list[str],
               calculator: str) -> None:
    """An installed distribution as pip leaves one: a dist-info folder (METADATA with
    Requires-Dist, entry_points.txt) and its module, which leaves a mark when imported."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {dist}", "Version: 1.0"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "entry_points.txt").write_text(f"[wflp]\n{calculator} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(f"""\
        import os
        from wflp import CalculatorSpec, hookimpl

        open(os.path.join(os.path.dirname(__file__), "{module}.imported"), "w").close()

        @hookimpl
        def wflp_calculators():
            return [CalculatorSpec(name="{calculator}", summary="EMT",
                                   factory="ase.calculators.emt:EMT")]
        """))


NEXT = plugin_requirement(wflp.__version__).split("<")[1]      # the next incompatible core


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path with three plugins: one made for a later wflp, one for this
    one, one that declares no wflp requirement."""
    site = tmp_path / "site"
    _fake_dist(site, "wflp-future", "wflpfut_future", [f"wflp>={NEXT}", "ase>=3.23"],
               "future_calc")
    _fake_dist(site, "wflp-current", "wflpfut_current",
               [plugin_requirement(wflp.__version__), "pytest; extra == 'test'"],
               "current_calc")
    _fake_dist(site, "wflp-unpinned", "wflpfut_unpinned", ["ase"], "unpinned_calc")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("WFLP_STRICT_PLUGINS", raising=False)
    monkeypatch.setenv("WFLP_LOAD_PLUGINS", "wflp-future,wflp-current,wflp-unpinned")
    plugins.reset_plugin_manager()
    yield site
    plugins.reset_plugin_manager()
    for name in ("wflpfut_future", "wflpfut_current", "wflpfut_unpinned"):
        sys.modules.pop(name, None)


def test_a_plugin_made_for_another_wflp_is_listed_incompatible_and_not_imported(
        site, caplog):
    with caplog.at_level(logging.WARNING, logger="wflp"):
        records = {r.distribution: r for r in WflpPluginManager().report()}
    future = records["wflp-future"]
    assert future.status == "incompatible"
    assert f"it needs wflp>={NEXT} but this is wflp {wflp.__version__}" in future.error
    assert future.registered == {}
    assert not (site / "wflpfut_future.imported").exists()      # never imported
    assert [m for m in caplog.messages if "wflp-future" in m and "incompatible" in m]
    for dist, name in (("wflp-current", "current_calc"), ("wflp-unpinned", "unpinned_calc")):
        assert records[dist].status == "ok", records[dist].error
        assert records[dist].registered == {"calculators": [name]}


def test_an_incompatible_plugin_is_named_when_its_calculator_is_missing(site):
    with pytest.raises(Exception, match=r"future_calc.*wflp-future.*needs wflp>="):
        WflpPluginManager().get_spec("calculators", "future_calc")


def test_strict_loading_makes_an_incompatible_plugin_an_error(site, monkeypatch):
    monkeypatch.setenv("WFLP_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"'wflp-future'.* is incompatible: it needs wflp>="):
        WflpPluginManager().load()


def test_list_plugins_shows_an_incompatible_plugin_in_one_line(site):
    env = dict(os.environ, PYTHONPATH=str(site), WFLP_LOAD_PLUGINS="wflp-future")
    done = subprocess.run([sys.executable, "-c", "from wflp.cli import main; main()",
                           "list-plugins"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    row = [ln for ln in done.stdout.splitlines() if ln.startswith("wflp-future ")]
    assert row and row[0].split()[:3] == ["wflp-future", "1.0", "incompatible"]
    problems = [ln for ln in done.stdout.splitlines() if "wflp-future [" in ln]
    assert len(problems) == 1
    assert problems[0].strip().startswith(
        f"wflp-future [future_calc = wflpfut_future]: incompatible: it needs wflp>={NEXT}")
    assert "WARNING" in done.stderr and "is incompatible" in done.stderr


# -- one version per distribution, from one place -----------------------------------------------

def _distributions() -> list[tuple[Path, str, Path]]:
    """(pyproject.toml, import name, __init__.py) of the core and of every plugin."""
    out = [(ROOT / "pyproject.toml", "wflp", ROOT / "core" / "wflp" / "__init__.py")]
    for d in PLUGIN_DIRS:
        [pkg] = [p.parent.name for p in (d / "src").glob("*/__init__.py")]
        out.append((d / "pyproject.toml", pkg, d / "src" / pkg / "__init__.py"))
    return out


@pytest.mark.parametrize("pyproject, package, init", _distributions(),
                         ids=lambda v: v.parent.name if isinstance(v, Path) else None)
def test_each_distribution_reads_its_version_from_its_package(pyproject, package, init):
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    assert "version" not in project, f"{pyproject}: the version belongs in {init}"
    assert "version" in project.get("dynamic", []), pyproject
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": f"{package}.__version__"}, pyproject
    literals = re.findall(r'(?m)^__version__ = "([^"]+)"$', init.read_text())
    assert len(literals) == 1, f"{init}: one literal __version__ = \"X.Y.Z\" line"
    assert parse_version(literals[0]) is not None, literals[0]
    try:
        from importlib.metadata import PackageNotFoundError, version
        installed = version(project["name"])
    except PackageNotFoundError:
        return  # not installed here (e.g. wflp-dask on Python 3.9)
    assert installed == literals[0], (
        f"{project['name']}: installed metadata says {installed}, its package "
        f"{literals[0]}; reinstall (bash scripts/dev-install.sh)")


@pytest.mark.parametrize("plugin", PLUGIN_DIRS, ids=lambda p: p.name)
def test_each_plugin_requires_the_wflp_releases_of_this_core(plugin):
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    spec = core_requirement(project["dependencies"])
    expected = plugin_requirement(wflp.__version__)
    assert f"wflp{spec}" == expected, (f"{plugin.name} depends on wflp{spec}; with wflp "
                                       f"{wflp.__version__} it should be {expected}")
    assert specifier_contains(spec, wflp.__version__) is True


def test_plugin_requirement_follows_the_core_version():
    assert plugin_requirement("0.1.0") == "wflp>=0.1,<0.2"
    assert plugin_requirement("0.12.3.dev1") == "wflp>=0.12,<0.13"
    assert plugin_requirement("1.4.2") == "wflp>=1.4,<2"
    assert plugin_requirement("2") == "wflp>=2.0,<3"
    with pytest.raises(ValueError, match="not a PEP 440 version"):
        plugin_requirement("latest")


def test_changelog_has_unreleased_and_no_release_newer_than_the_code():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"(?m)^## (.*)$", text)
    assert headings[0] == "[Unreleased]", "the newest section collects what is not released"
    released = []
    for heading in headings[1:]:
        m = re.fullmatch(r"\[([^\]]+)\] - \d{4}-\d\d-\d\d", heading)
        assert m and parse_version(m.group(1)), f"CHANGELOG.md: heading {heading!r}"
        released.append(parse_version(m.group(1)).key())
    assert released == sorted(released, reverse=True), "CHANGELOG.md: newest first"
    assert all(v <= parse_version(wflp.__version__).key() for v in released), (
        f"CHANGELOG.md has a release newer than wflp.__version__ = {wflp.__version__}")


# -- scripts/_bootstrap.sh: plugins whose requires-python this Python does not meet ---------

@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bootstrap_skips_plugins_that_need_another_python(tmp_path):
    tree = tmp_path / "repo"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_bootstrap.sh", tree / "scripts")
    (tree / "core" / "wflp" / "plugins").mkdir(parents=True)
    shutil.copy(ROOT / "core" / "wflp" / "plugins" / "compat.py",
                tree / "core" / "wflp" / "plugins")
    here = ".".join(map(str, sys.version_info[:2]))
    for name, need in (("wflp-fits", f">={here}"), ("wflp-future", ">=3.99"),
                       ("wflp-old", f"<{here}"), ("wflp-any", None)):
        (tree / "plugins" / name).mkdir(parents=True)
        line = f'requires-python = "{need}"\n' if need else ""
        (tree / "plugins" / name / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\n{line}')
    (tree / "plugins" / "notes").mkdir()     # not a Python project: never listed
    # as wflp_bootstrap does: decide once (saying why a plugin is skipped), then reuse
    script = ('source scripts/_bootstrap.sh; WFLP_PLUGIN_DIRS="$(wflp_plugin_dirs)";'
              ' echo "-- decided" >&2; wflp_plugin_dirs')
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFLP_")}
    env.update(PYTHON=sys.executable, WFLP_VENV=str(tmp_path / "no-venv"))
    done = subprocess.run(["bash", "-c", script], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [Path(p).name for p in done.stdout.split()] == ["wflp-any", "wflp-fits"]
    deciding, reusing = done.stderr.split("-- decided\n")
    assert reusing == ""
    assert sorted(deciding.splitlines()) == [
        f"[wflp setup] skipping wflp-future: it requires Python >=3.99, and "
        f"{sys.executable} is Python {platform.python_version()}",
        f"[wflp setup] skipping wflp-old: it requires Python <{here}, and "
        f"{sys.executable} is Python {platform.python_version()}",
    ]
