"""Packaging: the check that refuses a plugin made for another wflp."""

from __future__ import annotations

import itertools
import logging
import os
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
