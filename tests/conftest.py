import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    """Files with a test marked slow run first (in their usual order, the rest after).

    scripts/test.sh hands whole files to two pytest-xdist workers in collection order; a
    long file handed out last keeps one worker busy while the other idles (the run's
    tail). Sorting is stable and the same in every worker, as xdist requires.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, tmp_path):
    """Tests decide parallelism and progress bars themselves, and never touch the user's
    job store."""
    monkeypatch.delenv("WFLP_NUM_PYTHON_SUBPROCESSES", raising=False)
    monkeypatch.setenv("WFLP_PROGRESS", "0")
    monkeypatch.setenv("WFLP_HOME", str(tmp_path / "wflp-home"))


@pytest.fixture
def remote_env(tmp_path, monkeypatch):
    """A project folder with a systems file, a private job store, and clean caches."""
    from wflp.remote.transport import close_transports

    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("WFLP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WFLP_SYSTEMS", raising=False)
    close_transports()
    yield project
    close_transports()
