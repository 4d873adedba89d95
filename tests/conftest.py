import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


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
