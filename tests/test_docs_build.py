"""The strict documentation build (mkdocs.yml, scripts/docs.sh) fails on what it must.

Each test builds a small site with the project's own mkdocs.yml settings (theme, strict
validation, the hooks, mkdocstrings and its griffe extension) over a small package and
two pages, with one fault injected: a broken cross-reference, a page left out of the nav,
a docstring griffe warns about, a link to a repository file that is not there, a link to
a missing anchor. The clean site builds, and shows what the hooks and the extension do.
The real site is built by scripts/docs.sh in CI's lint step.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # each build starts mkdocs: a few seconds

PROBE = '''\
"""A probe package for the docs build."""


def double(x: int) -> int:
    """Twice *x*; see :func:`halve` for the way back."""
    return 2 * x


def halve(x: int) -> int:
    """Half of *x*."""
    return x // 2
'''

INDEX = """\
# Probe

The [README](../README.md) and the [API](api.md), and
[a section](api.md#the-api).
"""

API = """\
# The API

::: probe
"""


def _site(tmp_path: Path) -> Path:
    """A project folder with the real mkdocs.yml settings over the probe docs."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    (tmp_path / "src" / "probe").mkdir(parents=True)
    (tmp_path / "src" / "probe" / "__init__.py").write_text(PROBE)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(INDEX)
    (tmp_path / "docs" / "api.md").write_text(API)
    (tmp_path / "README.md").write_text("# probe\n")
    config["nav"] = [{"Home": "index.md"}, {"API": "api.md"}]
    config["hooks"] = [str(ROOT / h) for h in config["hooks"]]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            python = plugin["mkdocstrings"]["handlers"]["python"]
            python["paths"] = [str(tmp_path / "src")]
            python["options"]["extensions"] = [
                str(ROOT / e) for e in python["options"]["extensions"]]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    return tmp_path


def _build(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
         str(project / "site")], cwd=project, capture_output=True, text=True, timeout=300)


def test_the_clean_site_builds_with_links_to_the_api_and_repository_files(tmp_path):
    project = _site(tmp_path)
    result = _build(project)
    assert result.returncode == 0, result.stderr
    api = (project / "site" / "api" / "index.html").read_text()
    assert 'id="probe.double"' in api
    # the :func: role became a link to halve's entry, not ":func:"
    assert 'href="#probe.halve"><code>halve</code></a>' in api
    assert ":func:" not in api
    # the link out of docs/ points at a copy of the repository file, in the site
    index = (project / "site" / "index.html").read_text()
    assert 'href="repository/README.md"' in index
    assert (project / "site" / "repository" / "README.md").read_text() == "# probe\n"


@pytest.mark.parametrize("fault,expected", [
    ("reference", "Could not find cross-reference target 'probe.triple'"),
    ("nav", "not included in the \"nav\""),
    ("docstring", "Parameter 'y' does not appear in the function signature"),
    ("repository", "which is not a file of the repository"),
    ("anchor", "no-such-section"),
])
def test_a_fault_fails_the_strict_build(tmp_path, fault, expected):
    project = _site(tmp_path)
    docs = project / "docs"
    if fault == "reference":
        (docs / "index.md").write_text(INDEX + "\nSee [triple][probe.triple].\n")
    elif fault == "nav":
        (docs / "extra.md").write_text("# Not in the nav\n")
    elif fault == "docstring":
        package = project / "src" / "probe" / "__init__.py"
        package.write_text(PROBE + textwrap.dedent('''

            def shift(x: int) -> int:
                """Shift *x*.

                Args:
                    y: not a parameter of this function.
                """
                return x + 1
            '''))
    elif fault == "repository":
        (docs / "index.md").write_text(INDEX + "\n[gone](../examples/gone.py)\n")
    elif fault == "anchor":
        (docs / "index.md").write_text(INDEX + "\n[a section](api.md#no-such-section)\n")
    result = _build(project)
    assert result.returncode != 0, f"the build passed despite the {fault} fault"
    assert expected in result.stderr, result.stderr
